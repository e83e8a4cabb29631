// The scheduler's log: one JSON object per line on stdout (log shippers read it as is), nothing else there.

export type LogEvent =
  | 'started' | 'scheduled' | 'unscheduled' | 'start' | 'success' | 'failure' | 'skipped' | 'reload'
  | 'lease-lost' | 'timeout' | 'cleanup' | 'listen' | 'stopping' | 'terminating' | 'stopped' | 'cron' | 'warning' | 'metrics';

export interface LogEntry {
  event: LogEvent;
  level?: 'info' | 'warn' | 'error';
  policy?: string;
  job?: string;
  /** The cron slot a job run belongs to (ISO 8601, whole seconds). */
  tick?: string;
  durationMs?: number;
  error?: string;
  [key: string]: unknown;
}

export type Log = (entry: LogEntry) => void;

/** One line of JSON: time first, then event, level, policy, job, the rest; undefined fields are left out. */
export function formatLogLine(entry: LogEntry, time: Date): string {
  const {event, level, policy, job, ...rest} = entry;
  const ordered: Record<string, unknown> = {
    time: time.toISOString(),
    level: level ?? (event === 'failure' ? 'error' : 'info'),
    event,
    policy,
    job,
    ...rest,
  };
  // JSON.stringify drops undefined values; newlines inside strings are escaped, so a line is one entry.
  return `${JSON.stringify(ordered, (_key, value) => (typeof value === 'bigint' ? value.toString() : value))}\n`;
}

export interface LogOptions {
  /** PGBK_LOG_LEVEL: entries below it are left out (default info: all of them). */
  level?: 'error' | 'warn' | 'info' | 'debug';
  /** stdout is systemd's journal: each line starts with its syslog priority (`<3>` error, `<4>` warn, `<6>` info). */
  journal?: boolean;
}

const RANK = {error: 0, warn: 1, info: 2, debug: 3} as const;
const PRIORITY = {error: 3, warn: 4, info: 6, debug: 7} as const;

export function createLog(out: NodeJS.WritableStream, now: () => Date = () => new Date(), options: LogOptions = {}): Log {
  const threshold = RANK[options.level ?? 'info'];
  return (entry) => {
    const level = entry.level ?? (entry.event === 'failure' ? 'error' : 'info');
    if (RANK[level] > threshold) return;
    const line = formatLogLine(entry, now());
    out.write(options.journal ? `<${PRIORITY[level]}>${line}` : line);
  };
}

/** The last lines of a program's stderr, for the `error` field (bounded). */
export function lastLines(text: string, lines = 5, maxChars = 2000): string {
  const kept = text.split('\n').map((line) => line.trimEnd()).filter(Boolean).slice(-lines).join('\n');
  return kept.length > maxChars ? `…${kept.slice(-maxChars)}` : kept;
}
