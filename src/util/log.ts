// pgbk's own diagnostics on stderr: PGBK_LOG_LEVEL (error | warn | info | debug), one `pgbk:` prefix on every line
// (archive_command's stderr lands in PostgreSQL's log, where a bare "HINT:" would pass for the server's), and under
// `pgbk schedule` JSON lines, with the syslog priority prefix `<N>` when stderr is systemd's journal.

import {fstatSync} from 'node:fs';
import {Writable} from 'node:stream';

export type LogLevel = 'error' | 'warn' | 'info' | 'debug';
export const LOG_LEVELS: readonly LogLevel[] = ['error', 'warn', 'info', 'debug'];

/** PGBK_LOG_LEVEL, or undefined when it is set to something else (the caller says so); info when unset. */
export function logLevelOf(env: NodeJS.ProcessEnv): LogLevel | undefined {
  const value = env.PGBK_LOG_LEVEL?.trim().toLowerCase();
  if (!value) return 'info';
  return (LOG_LEVELS as readonly string[]).includes(value) ? value as LogLevel : undefined;
}

export function levelEnabled(level: LogLevel, threshold: LogLevel): boolean {
  return LOG_LEVELS.indexOf(level) <= LOG_LEVELS.indexOf(threshold);
}

/** The level of one diagnostic as pgbk writes it (its first line decides) (pure). */
export function levelOfText(text: string): LogLevel {
  if (/^(pgbk: )?(error|hint)\b/i.test(text)) return 'error';
  if (/^(pgbk: )?warning\b/i.test(text)) return 'warn';
  if (/^\s+caused by: /.test(text)) return 'debug';
  return 'info';
}

/** syslog priorities journald reads from a `<N>` line prefix. */
const PRIORITY: Record<LogLevel, number> = {error: 3, warn: 4, info: 6, debug: 7};

export function journalPrefix(level: LogLevel): string {
  return `<${PRIORITY[level]}>`;
}

/** True when file descriptor `fd` is the stream systemd connected to the journal (JOURNAL_STREAM=<dev>:<inode>). */
export function isJournalStream(env: NodeJS.ProcessEnv, fd: number): boolean {
  const stream = env.JOURNAL_STREAM;
  if (!stream) return false;
  try {
    const info = fstatSync(fd);
    return stream === `${info.dev}:${info.ino}`;
  } catch {
    return false;
  }
}

export interface DiagnosticsOptions {
  level: LogLevel;
  /** schedule: every line a JSON object ({time, level, event, message}). */
  json?: boolean;
  /** Prefix each line with its syslog priority (stderr is the journal). */
  journal?: boolean;
  now?: () => Date;
}

/** One diagnostic as JSON lines for the scheduler's log (pure). */
export function diagnosticAsJson(text: string, level: LogLevel, time: Date): string {
  const message = text.trimEnd().split('\n').map((line) => line.replace(/^pgbk: /, '')).join('\n')
    .replace(/^(error|warning|hint): /i, '');
  return `${JSON.stringify({time: time.toISOString(), level, event: level === 'warn' ? 'warning' : level === 'error' ? 'error' : 'message', message})}\n`;
}

/** A stderr that drops what PGBK_LOG_LEVEL hides and, under schedule, writes JSON lines. */
export function diagnosticsStream(out: NodeJS.WritableStream, options: DiagnosticsOptions): Writable {
  const now = options.now ?? (() => new Date());
  return new Writable({
    write(chunk: Buffer | string, _encoding, done) {
      const text = String(chunk);
      const level = levelOfText(text);
      if (!levelEnabled(level, options.level)) return done();
      let line = options.json ? diagnosticAsJson(text, level, now()) : text;
      if (options.journal) line = line.split('\n').map((part) => (part ? `${journalPrefix(level)}${part}` : part)).join('\n');
      out.write(line);
      done();
    },
  });
}
