// --start: start the restored server, wait until recovery reaches its target and the server is promoted, and
// report the point reached from the server's own log.

import {readFile, rm} from 'node:fs/promises';
import {SPOOL_DIR} from '../wal/prefetch.js';
import {join} from 'node:path';
import {execa} from 'execa';
import {RestoreError} from '../errors.js';
import {pgBinary} from '../pg/bin.js';
import {asOwnerOf} from '../pg/owner.js';
import {SCRATCH_LOGICAL_SETTINGS} from './logical.js';

export interface StartResult {
  port: number;
  logFile: string;
  /** "recovery stopping before commit of transaction 745, time ..." as PostgreSQL logged it. */
  stoppedAt?: string;
  lastTransactionAt?: string;
  newTimeline?: number;
  redoDoneAt?: string;
  replayMs: number;
}

export interface StartOptions {
  dataDir: string;
  port: number;
  binDir?: string;
  timeoutMs: number;
}

export async function startRestored(options: StartOptions): Promise<StartResult> {
  const logFile = join(options.dataDir, 'pgbk-start.log');
  const started = Date.now();
  // Only on this command line, not in postgresql.conf: no apply worker until pgbk has disabled the subscriptions.
  const logicalOptions = Object.entries(SCRATCH_LOGICAL_SETTINGS).map(([name, value]) => ` -c ${name}=${value}`).join('');
  const [file, args] = asOwnerOf(options.dataDir, pgBinary(options.binDir, 'pg_ctl'), [
    '-D', options.dataDir, '-l', logFile, '-o', `-p ${options.port} -c listen_addresses=127.0.0.1${logicalOptions}`, 'start',
  ]);
  try {
    await execa(file, args, {env: {LC_ALL: 'C'}, stdin: 'ignore', stdout: 'ignore', stderr: 'pipe', timeout: 60_000});
  } catch (error) {
    throw new RestoreError(`cannot start the restored server: ${(error as {shortMessage?: string}).shortMessage}\n${await logTail(logFile)}`);
  }
  const deadline = Date.now() + options.timeoutMs;
  for (;;) {
    const log = await readFile(logFile, 'utf8').catch(() => '');
    const promoted = /archive recovery complete|selected new timeline ID/.test(log) && /database system is ready to accept connections/.test(log.slice(log.search(/archive recovery complete|selected new timeline ID/)));
    if (promoted) {
      // What the look-ahead fetched beyond the target is of no use now.
      await rm(join(options.dataDir, SPOOL_DIR), {recursive: true, force: true}).catch(() => undefined);
      return {...readPoint(log), port: options.port, logFile, replayMs: Date.now() - started};
    }
    if (/FATAL|PANIC/.test(log) && !(await isRunning(options))) {
      throw new RestoreError(`the restored server stopped during recovery:\n${lastLines(log, 8)}`,
        'the target may lie beyond the archived WAL, or a WAL file is missing or corrupt (pgbk verify checks the archive)');
    }
    if (Date.now() > deadline) {
      throw new RestoreError(`recovery did not reach its target within ${Math.round(options.timeoutMs / 1000)}s; the server is still running on port ${options.port}`,
        `follow ${logFile}; stop it with pg_ctl -D ${options.dataDir} stop`);
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

function readPoint(log: string): Omit<StartResult, 'port' | 'logFile' | 'replayMs'> {
  const stop = /recovery stopping [^\n]*/.exec(log)?.[0];
  const last = /last completed transaction was at log time ([^\n]*)/.exec(log)?.[1];
  const timeline = /selected new timeline ID: (\d+)/.exec(log)?.[1];
  const redo = /redo done at ([0-9A-F]+\/[0-9A-F]+)/.exec(log)?.[1];
  return {stoppedAt: stop, lastTransactionAt: last, newTimeline: timeline ? Number(timeline) : undefined, redoDoneAt: redo};
}

async function isRunning(options: StartOptions): Promise<boolean> {
  const [file, args] = asOwnerOf(options.dataDir, pgBinary(options.binDir, 'pg_ctl'), ['-D', options.dataDir, 'status']);
  const result = await execa(file, args, {reject: false, stdin: 'ignore'});
  return result.exitCode === 0;
}

async function logTail(logFile: string): Promise<string> {
  return lastLines(await readFile(logFile, 'utf8').catch(() => ''), 8);
}

function lastLines(text: string, count: number): string {
  return text.trim().split('\n').slice(-count).join('\n');
}
