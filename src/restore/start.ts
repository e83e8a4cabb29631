// restore --start: start the restored data directory, wait until recovery reaches its target and the server does
// what --target-action says (promote, pause, shut down), and report the point reached.
//
// Locale-proof: the state comes from postmaster.pid's status line, pg_control (pg_controldata with LC_ALL=C) and
// SQL; the server is started with lc_messages=C, so the lines read from its log (where it stopped) are PostgreSQL's
// English whatever the data directory's postgresql.conf says.

import {readFile, rm} from 'node:fs/promises';
import {SPOOL_DIR} from '../wal/prefetch.js';
import {join} from 'node:path';
import {execa} from 'execa';
import {RestoreError} from '../errors.js';
import {pgBinary} from '../pg/bin.js';
import {asOwnerOf} from '../pg/owner.js';
import {postmasterStatus} from '../pg/postmaster.js';
import {controlData, controlState} from '../pg/controldata.js';
import {splitPassword} from '../pg/conninfo.js';
import type {TargetAction} from './target.js';

export interface StartResult {
  port: number;
  logFile: string;
  /** What the server did at the target. */
  state: 'promoted' | 'paused' | 'shut down';
  /** "recovery stopping before commit of transaction 745, time ..." as PostgreSQL logged it (lc_messages=C). */
  stoppedAt?: string;
  /** The last replayed commit's time (pg_last_xact_replay_timestamp(), else the log). */
  lastTransactionAt?: string;
  /** Where replay ended: pg_last_wal_replay_lsn(), or pg_control's minimum recovery ending location after a shutdown. */
  replayedTo?: string;
  newTimeline?: number;
  redoDoneAt?: string;
  replayMs: number;
}

export interface StartOptions {
  dataDir: string;
  port: number;
  binDir?: string;
  timeoutMs: number;
  /** recovery_target_action written into the data directory (default promote). */
  action?: TargetAction;
  /** The policy's postgres.url: its user, password and database are used to ask the restored server on 127.0.0.1:port. */
  url?: string;
}

export async function startRestored(options: StartOptions): Promise<StartResult> {
  const logFile = join(options.dataDir, 'pgbk-start.log');
  const action = options.action ?? 'promote';
  const started = Date.now();
  // -W: pgbk waits itself (pg_ctl's wait gives up after 60 s, and reports a shutdown at the target as a failure).
  const [file, args] = asOwnerOf(options.dataDir, pgBinary(options.binDir, 'pg_ctl'), [
    '-D', options.dataDir, '-l', logFile, '-W', '-o', `-p ${options.port} -c listen_addresses=127.0.0.1 -c lc_messages=C`, 'start',
  ]);
  try {
    await execa(file, args, {env: {LC_ALL: 'C'}, stdin: 'ignore', stdout: 'ignore', stderr: 'pipe', timeout: 60_000});
  } catch (error) {
    throw new RestoreError(`cannot start the restored server: ${(error as {shortMessage?: string}).shortMessage}\n${await logTail(logFile)}`);
  }
  const deadline = started + options.timeoutMs;
  let seen = false;
  let state: StartResult['state'];
  for (;;) {
    const postmaster = await postmasterStatus(options.dataDir);
    if (postmaster) seen = true;
    // "ready": accepting connections, promoted or in hot standby; pg_control tells them apart.
    if (postmaster?.status === 'ready' && (await clusterState(options)) === 'in production') {
      state = 'promoted';
      break;
    }
    if (postmaster?.status === 'ready' && action === 'pause' && await replayPaused(options, logFile)) {
      state = 'paused';
      break;
    }
    if (!postmaster && (seen || Date.now() - started > 15_000 || /FATAL|PANIC/.test(await readFile(logFile, 'utf8').catch(() => '')))) {
      if (action === 'shutdown' && (await clusterState(options)) === 'shut down in recovery') {
        state = 'shut down';
        break;
      }
      throw new RestoreError(`the restored server stopped during recovery:\n${await logTail(logFile)}`,
        'the target may lie beyond the archived WAL, or a WAL file is missing or corrupt (pgbk verify checks the archive)');
    }
    if (Date.now() > deadline) {
      throw new RestoreError(`recovery did not reach its target within ${Math.round(options.timeoutMs / 1000)}s; the server is still running on port ${options.port}`,
        `follow ${logFile}; stop it with pg_ctl -D ${options.dataDir} stop`);
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  if (state === 'promoted') {
    // What the look-ahead fetched beyond the target is of no use now.
    await rm(join(options.dataDir, SPOOL_DIR), {recursive: true, force: true}).catch(() => undefined);
  }
  const log = await readFile(logFile, 'utf8').catch(() => '');
  const point = {...readPoint(log)};
  if (state === 'shut down') {
    const field = await controlData(options.dataDir, options.binDir).catch(() => undefined);
    point.replayedTo = field?.('Minimum recovery ending location');
  } else {
    let asked = await askRestored(options).catch(() => undefined);
    // Promoted: pg_control says so a moment before SQL does.
    for (let tries = 0; state === 'promoted' && asked?.inRecovery && tries < 25; tries++) {
      await new Promise((resolve) => setTimeout(resolve, 200));
      asked = await askRestored(options).catch(() => undefined);
    }
    if (asked) {
      point.replayedTo = asked.replayLsn ?? point.replayedTo;
      point.lastTransactionAt = asked.lastTransaction ?? point.lastTransactionAt;
      if (asked.timeline !== null) point.newTimeline = Number(asked.timeline);
    }
  }
  return {...point, state, port: options.port, logFile, replayMs: Date.now() - started};
}

/** Lines of a log written with lc_messages=C (pure). */
export function readPoint(log: string): Omit<StartResult, 'port' | 'logFile' | 'replayMs' | 'state'> {
  const stop = /recovery stopping [^\n]*/.exec(log)?.[0];
  const last = /last completed transaction was at log time ([^\n]*)/.exec(log)?.[1];
  const timeline = /selected new timeline ID: (\d+)/.exec(log)?.[1];
  const redo = /redo done at ([0-9A-F]+\/[0-9A-F]+)/.exec(log)?.[1];
  return {stoppedAt: stop, lastTransactionAt: last, newTimeline: timeline ? Number(timeline) : undefined, redoDoneAt: redo};
}

/** Paused at the target: asked over SQL (pg_is_wal_replay_paused()); without a connection, the lc_messages=C log. */
async function replayPaused(options: StartOptions, logFile: string): Promise<boolean> {
  const asked = await askRestored(options).catch(() => undefined);
  if (asked) return asked.inRecovery && asked.paused;
  return /pausing at the end of recovery|recovery has paused/.test(await readFile(logFile, 'utf8').catch(() => ''));
}

interface RestoredState {
  inRecovery: boolean;
  paused: boolean;
  replayLsn?: string;
  lastTransaction?: string;
  timeline: number | null;
}

/** The restored server, asked on 127.0.0.1:<port> as the policy's user (undefined: no URL to ask with). */
async function askRestored(options: StartOptions): Promise<RestoredState | undefined> {
  if (!options.url) return undefined;
  const {url, password} = splitPassword(options.url);
  const parsed = new URL(url);
  const pg = (await import('pg')).default;
  const client = new pg.Client({
    host: '127.0.0.1', port: options.port, user: decodeURIComponent(parsed.username) || 'postgres', password,
    database: decodeURIComponent(parsed.pathname.slice(1)) || 'postgres', application_name: 'pgbk', connectionTimeoutMillis: 3000,
  });
  await client.connect();
  try {
    const {rows} = await client.query<{in_recovery: boolean; paused: boolean | null; replay_lsn: string | null; last_xact: string | null; timeline: number | null}>(`
      select pg_is_in_recovery() as in_recovery,
             case when pg_is_in_recovery() then pg_is_wal_replay_paused() end as paused,
             pg_last_wal_replay_lsn()::text as replay_lsn,
             to_char(pg_last_xact_replay_timestamp() at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || ' UTC' as last_xact,
             case when pg_is_in_recovery() then null
                  else ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int end as timeline`);
    const row = rows[0]!;
    return {inRecovery: row.in_recovery, paused: Boolean(row.paused), replayLsn: row.replay_lsn ?? undefined, lastTransaction: row.last_xact ?? undefined, timeline: row.timeline};
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** "Database cluster state" from pg_control (pg_controldata with LC_ALL=C). */
function clusterState(options: StartOptions): Promise<string | undefined> {
  return controlState(options.dataDir, options.binDir);
}

async function logTail(logFile: string): Promise<string> {
  return lastLines(await readFile(logFile, 'utf8').catch(() => ''), 8);
}

function lastLines(text: string, count: number): string {
  return text.trim().split('\n').slice(-count).join('\n');
}
