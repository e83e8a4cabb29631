// Where the detached helpers of archive_command and restore_command (the look-ahead pusher, the prefetcher) put
// their failures: their stdio goes nowhere (PostgreSQL must not wait for them), so each failure is appended to
// pg_wal/pgbk-background.log of the data directory (never copied by pg_basebackup, never removed by PostgreSQL), and
// the next archive-push or archive-get that pgbk runs there says so on stderr — into PostgreSQL's log — once.

import {existsSync} from 'node:fs';
import {appendFile, readFile, rename, stat, unlink} from 'node:fs/promises';
import {join} from 'node:path';

export const BACKGROUND_LOG = join('pg_wal', 'pgbk-background.log');
const UNREPORTED = join('pg_wal', 'pgbk-background.unreported');
const MAX_LOG_BYTES = 1024 * 1024;

export type BackgroundHelper = 'archive-push-ahead' | 'archive-prefetch';

function isDataDir(dataDir: string): boolean {
  return existsSync(join(dataDir, 'PG_VERSION')) && existsSync(join(dataDir, 'pg_wal'));
}

/** One line, `pgbk:` first, no newline inside (a message may span lines). */
export function backgroundLine(time: Date, who: BackgroundHelper, message: string): string {
  return `${time.toISOString()} pgbk: ${who}: ${message.replace(/\s*\n\s*/g, ' | ')}\n`;
}

/** Appends a failure to the data directory's background log (kept under 1 MiB: one older file, .1). Never throws. */
export async function recordBackgroundFailure(dataDir: string, who: BackgroundHelper, message: string, now = new Date()): Promise<void> {
  if (!isDataDir(dataDir)) return;
  try {
    const log = join(dataDir, BACKGROUND_LOG);
    const size = await stat(log).then((info) => info.size, () => 0);
    if (size > MAX_LOG_BYTES) await rename(log, `${log}.1`).catch(() => undefined);
    const line = backgroundLine(now, who, message);
    await appendFile(log, line, {mode: 0o600});
    await appendFile(join(dataDir, UNREPORTED), line, {mode: 0o600});
  } catch {
    // Nowhere else to say it.
  }
}

/**
 * Called by archive-push and archive-get in the foreground: failures of the background helpers since the last
 * report, as one `pgbk: warning:` line (their stderr goes to PostgreSQL's log). Never throws.
 */
export async function reportBackgroundFailures(dataDir: string, write: (text: string) => void): Promise<void> {
  const marker = join(dataDir, UNREPORTED);
  if (!existsSync(marker)) return;
  try {
    const lines = (await readFile(marker, 'utf8')).split('\n').filter(Boolean);
    await unlink(marker);
    if (lines.length === 0) return;
    const last = lines[lines.length - 1]!.replace(/^\S+ pgbk: /, '');
    write(`pgbk: warning: ${lines.length === 1 ? 'a background helper failed' : `background helpers failed ${lines.length} times`} since the last report; ` +
      `last: ${last} (all of them in ${join(dataDir, BACKGROUND_LOG)})\n`);
  } catch {
    // Reported by another call meanwhile.
  }
}
