// Progress of long operations (bytes, rate) on a terminal; silent under cron, CI and pipes.

export interface Progress {
  update(bytes: number): void;
  done(): void;
}

export function createProgress(label: string, stream: NodeJS.WriteStream = process.stderr, totalBytes?: number): Progress {
  if (!stream.isTTY) return {update: () => undefined, done: () => undefined};
  const started = Date.now();
  let last = 0;
  let lastBytes = 0;
  const render = (bytes: number) => {
    const seconds = Math.max((Date.now() - started) / 1000, 0.001);
    const rate = bytes / seconds;
    const total = totalBytes ? ` of ${formatBytes(totalBytes)} (${Math.floor((bytes / totalBytes) * 100)}%)` : '';
    stream.write(`\r${label}: ${formatBytes(bytes)}${total} at ${formatBytes(rate)}/s   `);
  };
  return {
    update(bytes: number) {
      lastBytes = bytes;
      const now = Date.now();
      if (now - last >= 250) {
        last = now;
        render(bytes);
      }
    },
    done() {
      render(lastBytes);
      stream.write('\n');
    },
  };
}

export function formatBytes(bytes: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(unit === 0 ? 0 : 1)} ${units[unit]}`;
}
