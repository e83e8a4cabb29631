// pgbk drill: restore into a scratch target, prove it reached the target, check it, measure RTO and RPO, store the
// report in the repository — and always clean up.

import {join} from 'node:path';
import {createHash} from 'node:crypto';
import {readFile} from 'node:fs/promises';
import type {Client} from 'pg';
import {PgbkError, TargetError} from '../errors.js';
import {readCatalog, catalogScopeOf, type BackupManifest} from '../backup/manifest.js';
import type {Policy} from '../policy/types.js';
import {redactUrl, splitPassword, withDatabase} from '../pg/conninfo.js';
import {planRestore, type RestorePlan} from '../restore/plan.js';
import {describeTarget, type Target} from '../restore/target.js';
import type {RecoverableWindow} from '../restore/window.js';
import {drillReportKey, walFilePrefix} from '../storage/layout.js';
import type {Repository} from '../storage/repository.js';
import {runAmcheck, runUserChecks} from './checks.js';
import {checkHeartbeat, writeHeartbeat} from './heartbeat.js';
import {findExpectedPoint, readServerPoint, restoredSegments, type ExpectedPoint, type ServerPoint} from './proof.js';
import {drillIdFor, evaluateObjectives, isPassing, type DrillCheckResult, type DrillReport} from './report.js';
import {freeLoopbackPort, logTail, makeScratchDirs, onInterrupt, removeDir, startScratchServer, stopScratchServer, type ScratchDirs} from './scratch.js';
import {postmasterStatus} from '../pg/postmaster.js';
import {controlState} from '../pg/controldata.js';
import {formatMicros, parsePgTimestamp, randomTargetIn, targetMicros} from './target.js';

export interface DrillOptions {
  policy: Policy;
  repo: Repository;
  /** undefined: a random moment in the recoverable window (physical) or since the oldest dump (dump). */
  target?: Target & {kind: 'time' | 'latest'};
  keep: boolean;
  now: () => Date;
  /** Progress lines (stderr). */
  progress: (line: string) => void;
  random?: () => number;
}

class Drill {
  readonly startedAt: Date;
  readonly id: string;
  private readonly t0 = performance.now();
  readonly report: DrillReport;

  constructor(readonly options: DrillOptions) {
    this.startedAt = options.now();
    this.id = drillIdFor(this.startedAt);
    const {policy} = options;
    this.report = {
      formatVersion: 1, id: this.id, policy: policy.name, strategy: policy.strategy,
      startedAt: this.startedAt.toISOString(), finishedAt: '', ok: false,
      target: {kind: options.target?.kind === 'latest' ? 'latest' : 'time', time: null, chosen: options.target ? (options.target.kind === 'latest' ? 'latest' : 'given') : 'random'},
      backupId: null, lastReplayedCommit: null, stoppedBefore: null,
      phases: {planMs: 0, fetchMs: 0, startMs: 0, replayMs: 0},
      rtoSeconds: null, rpoSeconds: null,
      objectives: evaluateObjectives(null, null, policy.objectives),
      checks: [], errors: [],
    };
  }

  elapsedMs(): number {
    return performance.now() - this.t0;
  }

  check(result: DrillCheckResult): void {
    this.report.checks.push(result);
    this.options.progress(`${result.ok ? 'ok' : 'FAILED'}: ${result.name}: ${result.detail}`);
  }

  fail(error: unknown): void {
    const message = error instanceof PgbkError || error instanceof Error ? error.message : String(error);
    this.report.errors.push(message);
    this.options.progress(`error: ${message}`);
  }
}

/** Runs one drill and stores its report; resolves with the report (ok or not). Bad input rejects (exit 2). */
export async function runDrill(options: DrillOptions): Promise<DrillReport> {
  const drill = new Drill(options);
  try {
    if (options.policy.strategy === 'dump') await drillDump(drill);
    else await drillPhysical(drill);
  } catch (error) {
    // Bad input (a target outside the window, nothing to restore) is the caller's, not a failed drill.
    if (error instanceof PgbkError && error.exitCode === 2) throw error;
    drill.fail(error);
  }
  const {report} = drill;
  report.objectives = evaluateObjectives(report.rtoSeconds, report.rpoSeconds, options.policy.objectives);
  report.ok = isPassing(report);
  report.finishedAt = options.now().toISOString();
  try {
    await options.repo.put(drillReportKey(report.id), Buffer.from(`${JSON.stringify(report, null, 2)}\n`));
  } catch (error) {
    report.errors.push(`cannot store the report at ${drillReportKey(report.id)}: ${(error as Error).message}`);
    report.ok = false;
  }
  return report;
}

// ---------------------------------------------------------------------------------------------------------------
// Physical strategies (pitr, replica, patroni)

async function drillPhysical(drill: Drill): Promise<void> {
  const {policy, repo, progress} = drill.options;
  const {report} = drill;
  let heartbeatAt: string | undefined;
  if (policy.drill.heartbeat) {
    heartbeatAt = await writeHeartbeat(policy, {archived: true, timeoutMs: 120_000});
    progress(`heartbeat written on the source at ${heartbeatAt} and archived`);
  }
  const catalog = await readCatalog(repo, (key, error) => drill.fail(`backup ${key} is unreadable: ${error.message}`));
  const {chooseBranchAndWindow} = await import('../restore/prepare.js');
  const {choice, window} = await chooseBranchAndWindow(repo, policy, catalog, {commitTimes: true});
  progress(`timeline ${choice.timeline} (${choice.reason})`);
  checkContinuity(drill, window, catalog);

  const target = chooseTarget(drill, window);
  // latest: the moment the drill looked at the archive (after the heartbeat, if any) — what an incident then would get.
  const micros = target.kind === 'time' ? targetMicros(target) : BigInt(drill.options.now().getTime()) * 1000n;
  report.target.time = formatMicros(micros);
  const plan = await makePlan(drill, catalog, target, window);
  report.backupId = plan.backup.id;
  report.phases.planMs = Math.round(drill.elapsedMs());
  progress(`drill ${drill.id}: restoring backup ${plan.backup.id} to ${describeTarget(target)}`);

  const dirs = await makeScratchDirs(drill.id);
  const cleanup = async () => {
    await stopScratchServer(dirs.dataDir, policy.postgres.binDir);
    if (!drill.options.keep) await removeDir(dirs.baseDir);
  };
  const release = onInterrupt(cleanup);
  try {
    await restoreAndCheck(drill, plan, dirs, micros, heartbeatAt);
  } finally {
    await cleanup();
    release();
    if (drill.options.keep) report.keptDir = dirs.baseDir;
  }
}

function checkContinuity(drill: Drill, window: RecoverableWindow, catalog: BackupManifest[]): void {
  const base = catalog.filter((backup) => backup.kind === 'base');
  if (base.length === 0) return; // planRestore says so (exit 2)
  if (window.gap) {
    drill.check({name: 'WAL archive continuity', ok: false,
      detail: `WAL segment ${window.gap.missing} is missing from the archive (expected an object ${walFilePrefix(window.gap.missing)}*), after ${window.gap.after}: ` +
        'nothing after it can be recovered'});
    return;
  }
  drill.check({name: 'WAL archive continuity', ok: true,
    detail: `${base[base.length - 1]!.walStart} to ${window.lastSegment ?? '(none)'} archived without a gap (${window.archivedSegments} segments stored)`});
}

function chooseTarget(drill: Drill, window: RecoverableWindow): Target & {kind: 'time' | 'latest'} {
  const given = drill.options.target;
  if (given) return given;
  return randomTargetIn(window, drill.options.random);
}

async function makePlan(drill: Drill, catalog: BackupManifest[], target: Target, window: RecoverableWindow): Promise<RestorePlan> {
  // A target past a gap is refused (exit 2) like a restore: PostgreSQL would stop at the gap, not at the target.
  const plan = planRestore(catalog, target, {window});
  if (plan.backup.id === window.fromBackup) return plan;
  const {policy, repo} = drill.options;
  const {computeWindow} = await import('../restore/window.js');
  const own = await computeWindow(repo, [plan.backup], {binDir: policy.postgres.binDir, commitTimes: true, branch: window.branch});
  return planRestore(catalog, target, {backupId: plan.backup.id, window: own});
}

async function restoreAndCheck(drill: Drill, plan: RestorePlan, dirs: ScratchDirs, micros: bigint, heartbeatAt: string | undefined): Promise<void> {
  const {policy, repo, progress} = drill.options;
  const {report} = drill;
  const {layOutDataDirectory} = await import('../restore/layout.js');
  let layout;
  try {
    // Every tablespace into the scratch directory too: never the production cluster's locations.
    const tablespaces = new Map((plan.backup.tablespaces ?? []).map((space) => [space.oid, join(dirs.baseDir, 'tablespaces', space.oid)]));
    layout = await layOutDataDirectory(repo, policy, plan, dirs.dataDir, 'absent', {targetTimeline: String(plan.timeline ?? 'latest'), archiveMode: 'off', tablespaces});
  } catch (error) {
    throw new Error(`${(error as Error).message}${await diagnoseBackupObjects(repo, plan.backup)}`, {cause: error});
  }
  report.phases.fetchMs = layout.fetchMs;
  progress(`fetched and unpacked ${plan.backup.objects.map((object) => object.key).join(', ')} (${layout.fetchedBytes} bytes) in ${(layout.fetchMs / 1000).toFixed(1)}s`);

  let port = await freeLoopbackPort();
  const startAt = performance.now();
  try {
    await startScratchServer({dirs, binDir: policy.postgres.binDir, port});
  } catch {
    // The port was taken between the probe and the start: one more try on another one.
    await stopScratchServer(dirs.dataDir, policy.postgres.binDir);
    port = await freeLoopbackPort();
    await startScratchServer({dirs, binDir: policy.postgres.binDir, port});
  }
  progress(`scratch server starting on 127.0.0.1:${port} (socket ${dirs.socketDir}), archive_mode off`);

  // Wait until recovery reached the target and the server was promoted: postmaster.pid says "ready" and pg_control
  // "in production" (pg_controldata with LC_ALL=C; no log text).
  const deadline = Date.now() + policy.drill.timeoutSeconds * 1000;
  let redoAt: number | undefined;
  let log = '';
  let seen = false;
  for (;;) {
    log = await readFile(dirs.logFile, 'utf8').catch(() => '');
    if (redoAt === undefined && /redo starts at|starting archive recovery|restored log file/.test(log)) redoAt = performance.now();
    const postmaster = await postmasterStatus(dirs.dataDir);
    if (postmaster?.status === 'ready' && (await controlState(dirs.dataDir, policy.postgres.binDir)) === 'in production') {
      log = await readFile(dirs.logFile, 'utf8').catch(() => log);
      break;
    }
    if (postmaster) seen = true;
    // pg_ctl -W returns before the postmaster writes postmaster.pid: absent at first is no failure.
    if (postmaster === undefined && (seen || performance.now() - startAt > 15_000 || /FATAL|PANIC/.test(log))) {
      throw new Error(`recovery failed: the scratch server stopped:\n${recoveryFailure(log)}`);
    }
    if (Date.now() > deadline) {
      throw new Error(`recovery did not reach the target within drill.timeout (${policy.drill.timeoutSeconds}s)\n${await logTail(dirs.logFile, 6)}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  redoAt ??= startAt;
  report.phases.startMs = Math.round(redoAt - startAt);

  const user = new URL(splitPassword(policy.postgres.url).url).username || 'postgres';
  const database = decodeURIComponent(new URL(splitPassword(policy.postgres.url).url).pathname.slice(1)) || 'postgres';
  const pg = (await import('pg')).default;
  const client = new pg.Client({host: dirs.socketDir, port, user, database, application_name: 'pgbk-drill', connectionTimeoutMillis: 30_000});
  await client.connect();
  try {
    // RTO ends when the restored server accepts a write (txid_current() assigns a transaction id and commits).
    const [{next}] = (await client.query<{next: string}>('select txid_snapshot_xmax(txid_current_snapshot())::text as next')).rows as [{next: string}];
    await client.query('select txid_current()');
    const writableMs = drill.elapsedMs();
    report.phases.replayMs = Math.round(performance.now() - redoAt);
    report.rtoSeconds = round(writableMs / 1000);
    progress(`restored server accepts writes after ${report.rtoSeconds}s`);
    await neutraliseInDrill(drill, client, (name) => new pg.Client({host: dirs.socketDir, port, user, database: name, application_name: 'pgbk-drill'}));

    // The last replayed commit from SQL; where recovery stopped from the log (lc_messages=C).
    const serverPoint = readServerPoint(log);
    const replayed = (await client.query<{last: string | null}>(
      `select to_char(pg_last_xact_replay_timestamp() at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || ' UTC' as last`)).rows[0]?.last;
    if (replayed) {
      serverPoint.lastText = replayed;
      serverPoint.lastMicros = parsePgTimestamp(replayed);
    } else {
      serverPoint.lastText = undefined;
      serverPoint.lastMicros = undefined;
    }
    const expected = await findExpectedPoint(repo, restoredSegments(log), report.target.kind === 'time' ? micros : undefined, policy.postgres.binDir);
    await proveTarget(drill, client, serverPoint, expected, BigInt(next), micros, BigInt(new Date(plan.backup.startTime).getTime()) * 1000n);
    if (policy.drill.heartbeat) drill.check(await checkHeartbeat(policy, client, micros, heartbeatAt));

    drill.check(await runAmcheck({host: dirs.socketDir, port, user, binDir: policy.postgres.binDir, timeoutMs: policy.drill.timeoutSeconds * 1000}));
    for (const result of await runUserChecks(client, policy.drill.checks)) drill.check(result);
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** Subscriptions of the copy disabled and detached, its slots dropped (restore/logical.ts); a check when there were any. */
async function neutraliseInDrill(drill: Drill, client: Client, open: (database: string) => Client): Promise<void> {
  const {neutraliseLogicalReplication, describeNeutralised} = await import('../restore/logical.js');
  try {
    const result = await neutraliseLogicalReplication(client, async (database) => {
      const db = open(database);
      await db.connect();
      return db;
    });
    if (result.subscriptions.length > 0 || result.droppedSlots.length > 0) {
      drill.check({name: 'logical replication kept off', ok: true, detail: describeNeutralised(result)});
    }
  } catch (error) {
    drill.check({name: 'logical replication kept off', ok: false, detail: `cannot disable the copy's subscriptions or drop its slots: ${(error as Error).message}`});
  }
}

/** After a failed fetch: which backup object does not match the manifest (read again, hashed, compared). */
async function diagnoseBackupObjects(repo: Repository, backup: BackupManifest): Promise<string> {
  const found: string[] = [];
  for (const object of backup.objects) {
    try {
      const hash = createHash('sha256');
      let bytes = 0;
      for await (const chunk of await repo.get(object.key)) {
        hash.update(chunk as Buffer);
        bytes += (chunk as Buffer).length;
      }
      const sha256 = hash.digest('hex');
      if (sha256 !== object.sha256 || bytes !== object.sizeBytes) {
        found.push(`backup object ${object.key} does not match its manifest (sha256 ${sha256.slice(0, 16)}…, ${bytes} bytes; expected ${object.sha256.slice(0, 16)}…, ${object.sizeBytes} bytes)`);
      }
    } catch (error) {
      found.push(`backup object ${object.key} cannot be read: ${(error as Error).message}`);
    }
  }
  return found.length > 0 ? `\n${found.join('\n')}` : '';
}

/** The server log lines that explain a failed recovery: pgbk's own errors (they name the object) and FATAL/PANIC. */
export function recoveryFailure(log: string): string {
  const lines = log.split('\n').filter((line) => /pgbk: error|HINT:|FATAL|PANIC|could not restore file|recovery ended before/.test(line));
  return (lines.length > 0 ? lines.slice(-10) : log.trim().split('\n').slice(-8)).join('\n');
}

async function proveTarget(drill: Drill, client: Client, server: ServerPoint, expected: ExpectedPoint, nextXid: bigint, micros: bigint,
  backupStartMicros: bigint): Promise<void> {
  const {report} = drill;
  const problems: string[] = [];
  const last = expected.last;
  report.lastReplayedCommit = server.lastMicros !== undefined ? formatMicros(server.lastMicros) : null;
  report.stoppedBefore = server.stopMicros !== undefined ? `${server.stopKind} of transaction ${server.stopXid} at ${formatMicros(server.stopMicros)}` : null;
  if (last) {
    if (server.lastMicros !== last.micros) {
      problems.push(`the archived WAL says the last transaction to replay is ${last.xid} at ${last.text}, the server replayed up to ${server.lastText ?? 'no transaction'}`);
    }
    const status = await xactStatus(client, last.xid, nextXid);
    const want = last.kind === 'commit' ? 'committed' : 'aborted';
    if (status !== want) problems.push(`transaction ${last.xid} is ${status} in the restored cluster, expected ${want}`);
  } else if (server.lastMicros !== undefined) {
    problems.push(`the server replayed a transaction at ${server.lastText} but the archived WAL holds none before the target`);
  }
  if (report.target.kind === 'time') {
    const stop = expected.stop;
    if (!stop) {
      problems.push(`no transaction in the archived WAL after ${formatMicros(micros)}: PostgreSQL cannot stop at that time`);
    } else {
      if (server.stopXid !== stop.xid || server.stopMicros !== stop.micros) {
        problems.push(`the archived WAL says recovery must stop before ${stop.kind} of transaction ${stop.xid} at ${stop.text}, ` +
          `the server stopped ${server.stopXid ? `before ${server.stopKind} of ${server.stopXid} at ${server.stopText}` : 'elsewhere (no stop logged)'}`);
      }
      const status = await xactStatus(client, stop.xid, nextXid);
      if (status === 'committed') problems.push(`transaction ${stop.xid}, committed after the target, is committed in the restored cluster`);
    }
  }
  // No transaction between the backup and the target: the newest commit restored is older than the backup's
  // start, so target minus backup start bounds the RPO from above.
  const lastMicros = server.lastMicros ?? last?.micros ?? backupStartMicros;
  report.rpoSeconds = round(Math.max(0, Number(micros - lastMicros) / 1e6));
  const detail = problems.length > 0 ? problems.join('; ')
    : `${last ? `last replayed ${last.kind} of transaction ${last.xid} at ${last.text}` : 'no transaction committed between the backup\'s start and the target'}` +
      `${expected.stop ? `, stopped before ${expected.stop.kind} of ${expected.stop.xid} at ${expected.stop.text}` : ''}` +
      `, as the archived WAL says (${expected.segments.join(', ') || 'no segment'} read with pg_waldump)`;
  drill.check({name: 'recovery reached the target', ok: problems.length === 0, detail});
}

/** txid_status of a 32-bit xid seen in the WAL, widened with the restored cluster's epoch. */
async function xactStatus(client: Client, xid: string, nextXid: bigint): Promise<string> {
  const low = BigInt(xid);
  let epoch = nextXid >> 32n;
  if (low >= (nextXid & 0xffffffffn)) {
    if (epoch === 0n) return 'not replayed';
    epoch -= 1n;
  }
  const full = (epoch << 32n) | low;
  if (full >= nextXid) return 'not replayed';
  const {rows} = await client.query<{status: string | null}>('select txid_status($1::bigint) as status', [full.toString()]);
  return rows[0]?.status ?? 'unknown (too old)';
}

function round(value: number): number {
  return Math.round(value * 1000) / 1000;
}

// ---------------------------------------------------------------------------------------------------------------
// dump strategy: restore into a scratch database on the policy's server

async function drillDump(drill: Drill): Promise<void> {
  const {policy, repo, progress} = drill.options;
  const {report} = drill;
  const dumps = (await readCatalog(repo, undefined, catalogScopeOf(policy))).filter((backup) => backup.kind === 'dump');
  if (dumps.length === 0) {
    const {NothingToRestoreError} = await import('../errors.js');
    throw new NothingToRestoreError('the repository holds no dump', 'take one with "pgbk backup"');
  }
  let micros: bigint;
  const given = drill.options.target;
  if (given?.kind === 'time') micros = targetMicros(given);
  else if (given?.kind === 'latest') micros = BigInt(drill.startedAt.getTime()) * 1000n;
  else {
    const from = BigInt(new Date(dumps[0]!.startTime).getTime()) * 1000n;
    const to = BigInt(drill.startedAt.getTime()) * 1000n;
    micros = from + BigInt(Math.floor(Number(to - from) * (drill.options.random ?? Math.random)()));
  }
  report.target.time = formatMicros(micros);
  const chosen = [...dumps].reverse().find((dump) => BigInt(new Date(dump.startTime).getTime()) * 1000n <= micros);
  if (!chosen) throw new TargetError(`no dump at or before ${formatMicros(micros)}: the oldest is from ${dumps[0]!.startTime}`);
  report.backupId = chosen.id;
  report.lastReplayedCommit = formatMicros(BigInt(new Date(chosen.startTime).getTime()) * 1000n);
  report.rpoSeconds = round(Math.max(0, Number(micros - BigInt(new Date(chosen.startTime).getTime()) * 1000n) / 1e6));
  report.phases.planMs = Math.round(drill.elapsedMs());

  const database = `pgbk_drill_${drill.id.replace(/[^0-9A-Za-z]/g, '').toLowerCase()}`;
  const {withClient} = await import('../pg/client.js');
  await withClient(policy.postgres.url, (client) => client.query(`create database ${database}`));
  progress(`drill ${drill.id}: restoring dump ${chosen.id} into the scratch database ${database} on ${redactUrl(policy.postgres.url)}`);
  const {detachDatabaseSubscriptions} = await import('../restore/logical.js');
  const drop = async () => {
    if (drill.options.keep) return;
    // A restored subscriber's subscriptions: DROP DATABASE refuses them, and they name the publisher's slot.
    await withClient(withDatabase(policy.postgres.url, database), (client) => detachDatabaseSubscriptions(client, {drop: true})).catch(() => undefined);
    await withClient(policy.postgres.url, (client) => client.query(`drop database if exists ${database} with (force)`)).catch(async () =>
      withClient(policy.postgres.url, (client) => client.query(`drop database if exists ${database}`)));
  };
  const release = onInterrupt(drop);
  try {
    const scratchUrl = withDatabase(policy.postgres.url, database);
    const fetchStart = performance.now();
    const {restoreDump} = await import('../backup/dump.js');
    await restoreDump({policy, repo, backup: chosen, toDb: scratchUrl});
    report.phases.fetchMs = Math.round(performance.now() - fetchStart);
    const detached = await withClient(scratchUrl, (client) => detachDatabaseSubscriptions(client, {drop: false}));
    if (detached.length > 0) {
      drill.check({name: 'logical replication kept off', ok: true,
        detail: detached.map((name) => `subscription ${name} (database ${database}) disabled and detached from the publisher's slot`).join('; ')});
    }
    await withClient(scratchUrl, async (client) => {
      await client.query('select txid_current()');
      report.rtoSeconds = round(drill.elapsedMs() / 1000);
      drill.check({name: 'dump restored', ok: true, detail: `${chosen.objects[0]!.key} restored into ${database} (database as of ${chosen.startTime})`});
      const conn = splitPassword(policy.postgres.url);
      drill.check(await runAmcheck({url: conn.url, database, env: conn.env, binDir: policy.postgres.binDir, timeoutMs: policy.drill.timeoutSeconds * 1000}));
      for (const result of await runUserChecks(client, policy.drill.checks)) drill.check(result);
    });
  } finally {
    await drop();
    release();
    if (drill.options.keep) report.keptDir = `database ${database}`;
  }
}
