// pgbk check: does the server suit the policy's strategy, is the repository reachable and writable, does an
// archive round trip work? One result per check; each failure says exactly what to change.
//
// settingChecks() is pure (settings in, verdicts and fixes out); runChecks() connects, probes and waits.

import {formatVersionNum, MIN_SERVER_VERSION_NUM} from '../pg/version.js';
import {hostname} from 'node:os';
import {PgbkError} from '../errors.js';
import {findBinDir} from '../pg/bin.js';
import {withClient} from '../pg/client.js';
import {redactUrl} from '../pg/conninfo.js';
import {archiverStats, replicationStats, serverSettings, switchWalFile, type ServerSettings, type StandbyReplication} from '../pg/status-queries.js';
import type {Policy, Strategy} from '../policy/types.js';
import type {Repository} from '../storage/repository.js';
import {findArchived, readArchivedHead} from '../wal/archive.js';
import {parseLongPageHeader} from '../wal/page-header.js';
import {readIdentity} from '../identity/identity.js';
import {runPg} from '../pg/run.js';
import {currentRuntime, pgbkCommand, VERSION, type Runtime} from '../version.js';
import {realpath} from 'node:fs/promises';
import {resolve} from 'node:path';
import {recommendedArchiveCommand} from '../wal/push-fast.js';

/** `pgbk check` found something to fix: exit 1. */
export class CheckFailedError extends PgbkError {
  readonly code = 'check.failed';
}

/** warn: worth fixing, not a failure (exit 0). */
export type CheckStatus = 'ok' | 'fail' | 'skip' | 'warn';

export interface CheckResult {
  name: string;
  status: CheckStatus;
  /** What was found. */
  detail: string;
  /** For a failure: exactly what to change (the postgresql.conf line, the SQL). */
  fix?: string;
}

export const CHECK_PREFIX = 'check/';

const ok = (name: string, detail: string): CheckResult => ({name, status: 'ok', detail});
const fail = (name: string, detail: string, fix: string): CheckResult => ({name, status: 'fail', detail, fix});
const skip = (name: string, detail: string): CheckResult => ({name, status: 'skip', detail});

/** How archive_command should name the policy: by name when that resolves from anywhere, else by its file. */
export function policyArgument(policy: Pick<Policy, 'name' | 'file'>): string {
  return policy.file === `/etc/pgbk/policies/${policy.name}.yaml` || policy.file === `/etc/pgbk/policies/${policy.name}.yml` ? policy.name : policy.file;
}

/**
 * The archive_command check recommends: pgbk (and Node.js, when it is not in a standard PATH directory) by absolute
 * path, since the server's PATH is not the administrator's.
 */
/** What `pgbk archive-command` prints: archive-push by absolute paths behind the shell fast path (wal/push-fast.ts). */
export function expectedArchiveCommand(policy: Pick<Policy, 'name' | 'file'>, runtime: Runtime = currentRuntime()): string {
  return recommendedArchiveCommand({node: runtime.nodePath, script: runtime.pgbkBin, policyFile: resolve(policy.file)});
}

/** The restore_command a standby or a hand-made recovery should use (pgbk restore writes its own). */
export function expectedRestoreCommand(policy: Pick<Policy, 'name' | 'file'>, runtime: Runtime = currentRuntime()): string {
  return `${pgbkCommand(runtime)} archive-get --policy ${policyArgument(policy)} %f %p`;
}

const escapeRe = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** archive_command runs pgbk archive-push for this policy (by name or by file) and passes %p. */
export function archiveCommandProblem(command: string, policy: Pick<Policy, 'name' | 'file'>): string | undefined {
  if (!command.trim() || command.trim() === '(disabled)') return 'archive_command is empty';
  if (!/\barchive-push\b/.test(command)) return `archive_command does not call pgbk archive-push: '${command}'`;
  const name = escapeRe(policy.name);
  const forPolicy = command.includes(policy.file)
    || new RegExp(`(--policy[= ]+|PGBK_POLICY=)["']?(${name}|\\S*/${name}\\.ya?ml)["']?(\\s|$)`).test(command);
  if (!forPolicy) return `archive_command does not name the policy ${policy.name} (or ${policy.file}): '${command}'`;
  if (!command.includes('%p')) return `archive_command does not pass the WAL file (%p): '${command}'`;
  return undefined;
}

const sqlString = (text: string) => `'${text.replace(/'/g, "''")}'`;

/** The checks decided by the server's settings alone. */
export function settingChecks(strategy: Strategy, settings: ServerSettings, policy: Pick<Policy, 'name' | 'file' | 'postgres'>, standbys: StandbyReplication[], runtime: Runtime = currentRuntime()): CheckResult[] {
  const results: CheckResult[] = [];
  const restart = 'then restart PostgreSQL';
  if (settings.versionNum < MIN_SERVER_VERSION_NUM) {
    results.push(fail('server version', `PostgreSQL ${versionText(settings.versionNum)} is older than pgbk supports (${versionText(MIN_SERVER_VERSION_NUM)} or later)`,
      'upgrade the server (pg_upgrade); pgbk backup refuses it'));
  }
  if (strategy === 'dump') return results;

  results.push(['replica', 'logical'].includes(settings.walLevel)
    ? ok('wal_level', `wal_level = ${settings.walLevel}`)
    : fail('wal_level', `wal_level = ${settings.walLevel}: WAL cannot be archived or backed up for recovery`,
      `in postgresql.conf: wal_level = replica (or ALTER SYSTEM SET wal_level = 'replica'), ${restart}`));

  const command = expectedArchiveCommand(policy, runtime);
  if (settings.inRecovery) {
    results.push(settings.archiveMode === 'always'
      ? ok('archive_mode', 'archive_mode = always (this standby archives)')
      : skip('archive_mode', `archive_mode = ${settings.archiveMode} on a standby: the primary archives; run pgbk check against the primary`));
  } else {
    results.push(['on', 'always'].includes(settings.archiveMode)
      ? ok('archive_mode', `archive_mode = ${settings.archiveMode}`)
      : fail('archive_mode', `archive_mode = ${settings.archiveMode}: the server archives no WAL`,
        `in postgresql.conf: archive_mode = on (or ALTER SYSTEM SET archive_mode = 'on'), ${restart}`));
  }
  if (settings.archiveLibrary) {
    results.push(fail('archive_command', `archive_library = '${settings.archiveLibrary}' replaces archive_command`,
      `in postgresql.conf: archive_library = '' and archive_command = '${command}' (or ALTER SYSTEM SET archive_library = ''; ` +
      `ALTER SYSTEM SET archive_command = ${sqlString(command)}; SELECT pg_reload_conf();)`));
  } else {
    const problem = archiveCommandProblem(settings.archiveCommand, policy);
    results.push(problem === undefined
      ? ok('archive_command', `archive_command = '${settings.archiveCommand}'`)
      : fail('archive_command', problem,
        `in postgresql.conf: archive_command = '${command}' then reload (or ALTER SYSTEM SET archive_command = ${sqlString(command)}; SELECT pg_reload_conf();)`));
  }

  results.push(settings.maxWalSenders > 0
    ? ok('max_wal_senders', `max_wal_senders = ${settings.maxWalSenders}`)
    : fail('max_wal_senders', 'max_wal_senders = 0: pg_basebackup needs a WAL sender',
      `in postgresql.conf: max_wal_senders = 10 (or ALTER SYSTEM SET max_wal_senders = 10), ${restart}`));

  const user = settings.currentUser;
  results.push(settings.superuser || settings.replication
    ? ok('backup role', `role ${user} has ${settings.superuser ? 'SUPERUSER' : 'REPLICATION'} (pg_basebackup)`)
    : fail('backup role', `role ${user} has neither REPLICATION nor SUPERUSER: pg_basebackup cannot connect`,
      `SQL: ALTER ROLE ${quoteIdent(user)} REPLICATION; and in pg_hba.conf: host replication ${user} <address> scram-sha-256`));

  if (strategy === 'replica') {
    results.push(settings.replicationRoles.length > 0
      ? ok('replication role', `roles with LOGIN REPLICATION: ${settings.replicationRoles.join(', ')}`)
      : fail('replication role', 'no role can log in with REPLICATION for a standby',
        "SQL: CREATE ROLE replicator LOGIN REPLICATION PASSWORD '...'; and in pg_hba.conf: host replication replicator <standby address> scram-sha-256"));
    if (settings.inRecovery) {
      results.push(skip('standby', 'this server is a standby: run pgbk check against the primary to see its standbys'));
    } else {
      const streaming = standbys.filter((standby) => standby.state === 'streaming');
      results.push(streaming.length > 0
        ? ok('standby', `streaming: ${streaming.map((standby) => standby.applicationName || standby.clientAddr || '?').join(', ')}`)
        : fail('standby', standbys.length ? `no standby is streaming (${standbys.map((s) => `${s.applicationName} ${s.state}`).join(', ')})` : 'no standby in pg_stat_replication',
          'set up a standby: pg_basebackup -h <primary> -U replicator -D <standby data dir> -R, then start it (primary_conninfo points at this server)'));
    }
  }
  return results;
}

const versionText = formatVersionNum;

function quoteIdent(name: string): string {
  return /^[a-z_][a-z0-9_]*$/.test(name) ? name : `"${name.replace(/"/g, '""')}"`;
}

export interface RunChecksOptions {
  /** Seconds to wait for the switched segment to arrive in the repository. */
  waitSeconds: number;
  /** Called as each check completes (human output streams). */
  onResult?: (result: CheckResult) => void;
}

export async function runChecks(policy: Policy, repo: Repository, options: RunChecksOptions): Promise<CheckResult[]> {
  const results: CheckResult[] = [];
  const record = (result: CheckResult) => {
    results.push(result);
    options.onResult?.(result);
  };
  const physical = policy.strategy !== 'dump';
  record(ok('policy', `${policy.file} is valid (strategy ${policy.strategy})`));

  const runtime = currentRuntime();
  record(ok('pgbk', `pgbk ${VERSION} (${runtime.pgbkBin}) on Node.js ${runtime.nodeVersion} (${runtime.nodePath}); PostgreSQL runs it as: ${pgbkCommand(runtime)}`));
  const program = physical ? 'pg_basebackup' : 'pg_dump';
  try {
    const dir = findBinDir(policy.postgres.binDir, program);
    const version = await runPg(program, ['--version'], {binDir: dir}).then((result) => result.stdout.trim(), () => 'version unknown');
    record(ok(program, `${dir}/${program} (${version})`));
  } catch (error) {
    record(fail(program, (error as Error).message, (error as PgbkError).hint ?? 'install the PostgreSQL client programs or set postgres.bin_dir in the policy'));
  }

  // The repository before the server: the round trip needs it.
  const repoResult = await probeRepository(repo);
  const lockResult = policy.repository.objectLock ? await objectLockCheck(repo, policy) : undefined;
  let settings: ServerSettings | undefined;
  try {
    await withClient(policy.postgres.url, async (client) => {
      settings = await serverSettings(client);
      record(ok('connection', `${redactUrl(policy.postgres.url)} (PostgreSQL ${versionText(settings.versionNum)}, ${settings.inRecovery ? 'standby' : 'primary'}, as ${settings.currentUser})`));
      const standbys = physical && !settings.inRecovery ? await replicationStats(client) : [];
      const settingResults = settingChecks(policy.strategy, settings, policy, standbys.filter((s) => !s.applicationName.startsWith('pg_basebackup')));
      for (const result of settingResults) record(result);
      if (policy.postgres.dataDir) record(await dataDirCheck(client, policy.postgres.dataDir));
      if (policy.strategy === 'patroni') for (const result of await (await import('../patroni/check.js')).patroniChecks(policy, client)) record(result);
      record(repoResult);
      if (lockResult) record(lockResult);
      const identityResult: CheckResult & {systemId?: string} = repoResult.status === 'ok' ? await identityCheck(client, repo, policy) : skip('identity', 'the repository is not usable');
      record(identityResult);
      for (const result of await slotChecks(client)) record(result);
      if (physical) {
        const tablespaces = await tablespaceCheck(client, settings.versionNum);
        if (tablespaces) record(tablespaces);
      }
      if (policy.walStreaming?.enabled) record(await streamingCheck(client, policy));
      if (!physical) return;
      const archiving = settingResults.filter((result) => ['wal_level', 'archive_mode', 'archive_command'].includes(result.name));
      if (settings.inRecovery) {
        record(skip('archive round trip', 'this server is a standby: pg_switch_wal() runs on the primary'));
      } else if (archiving.some((result) => result.status !== 'ok') || repoResult.status !== 'ok' || identityResult.status !== 'ok') {
        record(skip('archive round trip', 'fix the failures above first'));
      } else {
        record(await archiveRoundTrip(client, repo, options.waitSeconds, identityResult.systemId!));
      }
    });
  } catch (error) {
    if (settings) throw error; // failed after connecting: a bug or a lost connection, not a finding
    record(fail('connection', (error as Error).message, (error as PgbkError).hint ?? 'check postgres.url in the policy'));
    record(repoResult);
    if (lockResult) record(lockResult);
  }
  return results;
}

/**
 * postgres.data_dir (what pgbk init reads pg_control from when the server is down) must be the server's own
 * data_directory. Reading it needs superuser or pg_read_all_settings; without, the check is skipped.
 */
async function dataDirCheck(client: import('pg').Client, dataDir: string): Promise<CheckResult> {
  let serverDir: string;
  try {
    serverDir = (await client.query(`select current_setting('data_directory') as dir`)).rows[0].dir;
  } catch (error) {
    return skip('data_dir', `postgres.data_dir = ${dataDir}; the server's data_directory is not readable for this role (${(error as Error).message})`);
  }
  const real = async (path: string) => realpath(path).catch(() => path);
  if ((await real(dataDir)) === (await real(serverDir))) return ok('data_dir', `postgres.data_dir = ${dataDir} is the server's data_directory`);
  return fail('data_dir', `postgres.data_dir = ${dataDir}, but the server's data_directory is ${serverDir}`,
    `in the policy: postgres.data_dir: ${serverDir} (or remove the key)`);
}

/** repository.object_lock: the bucket must have Object Lock enabled (GetObjectLockConfiguration). */
async function objectLockCheck(repo: Repository, policy: Policy): Promise<CheckResult> {
  const lock = policy.repository.objectLock!;
  const fix = 'Object Lock is enabled when a bucket is created (aws s3api create-bucket --object-lock-enabled-for-bucket; on AWS also later, '
    + 'on a versioned bucket, with put-object-lock-configuration): point repository.url at such a bucket';
  try {
    const status = await repo.objectLock?.();
    if (!status?.enabled) {
      return fail('object lock', `the bucket of ${repo.description} does not have Object Lock enabled: repository.object_lock cannot make backups immutable there`, fix);
    }
    return ok('object lock', `the bucket has Object Lock enabled; every object is written with ${lock.mode} retention of ${lock.days} day(s)`
      + `${status.defaultRetention ? ` (bucket default: ${status.defaultRetention})` : ''}`);
  } catch (error) {
    return fail('object lock', `cannot read the Object Lock configuration of ${repo.description}: ${(error as Error).message}`, fix);
  }
}

/**
 * User tablespaces (when the cluster has any): what a backup will hold and where a restore puts them by default.
 * PostgreSQL 15 and later are backed up over the replication protocol (one archive per tablespace); 13 and 14 with
 * tablespaces are refused by backup, so check says so first.
 */
async function tablespaceCheck(client: import('pg').Client, versionNum: number): Promise<CheckResult | undefined> {
  const {rows} = await client.query<{oid: string; name: string; location: string}>(
    `select oid::text, spcname as name, pg_tablespace_location(oid) as location from pg_tablespace where spcname not in ('pg_default', 'pg_global') order by spcname`);
  if (rows.length === 0) return undefined;
  const list = rows.map((row) => `${row.name} (oid ${row.oid}) at ${row.location}`).join(', ');
  if (versionNum < 150000) {
    return fail('tablespaces', `${list}: pgbk backs up clusters with user tablespaces on PostgreSQL 15 and later only`,
      'upgrade to PostgreSQL 15 or later, or move the tables to pg_default (ALTER TABLE ... SET TABLESPACE pg_default) and drop the tablespaces');
  }
  return ok('tablespaces', `${list}; each is stored as its own archive; a restore puts it back there, or where --tablespace-map NAME=DIR says`);
}

/** Replication slots (when the server has any): an inactive one keeps WAL on the server until the disk fills. */
async function slotChecks(client: import('pg').Client): Promise<CheckResult[]> {
  const {slotStatus} = await import('../restore/logical.js');
  const {formatBytes} = await import('../util/progress.js');
  const slots = await slotStatus(client).catch(() => []);
  if (slots.length === 0) return [];
  const idle = slots.filter((slot) => !slot.active && slot.retainedBytes !== null && slot.retainedBytes > 0);
  if (idle.length === 0) {
    return [ok('replication slots', slots.map((slot) => `${slot.name} (${slot.type}) active, retains ${formatBytes(slot.retainedBytes ?? 0)}`).join('; '))];
  }
  return [{name: 'replication slots', status: 'warn',
    detail: idle.map((slot) => `${slot.name} (${slot.type}) is inactive and retains ${formatBytes(slot.retainedBytes!)} of WAL` +
      `${slot.walStatus && slot.walStatus !== 'reserved' ? ` (wal_status ${slot.walStatus})` : ''}`).join('; '),
    fix: `start its consumer (the subscriber, the standby, pgbk wal-receive), or drop it if it is abandoned: ${idle.map((slot) => `SELECT pg_drop_replication_slot(${sqlString(slot.name)});`).join(' ')}` +
      ' (max_slot_wal_keep_size bounds what a slot may keep)'}];
}

/** wal_streaming: pg_receivewal is there, and the slot exists and is in use (pgbk wal-receive runs). */
async function streamingCheck(client: import('pg').Client, policy: Policy): Promise<CheckResult> {
  const slot = policy.walStreaming!.slot;
  try {
    findBinDir(policy.postgres.binDir, 'pg_receivewal');
  } catch (error) {
    return fail('wal streaming', (error as Error).message, 'install the PostgreSQL client programs or set postgres.bin_dir in the policy');
  }
  const {rows} = await client.query<{type: string; active: boolean}>('select slot_type as type, active from pg_replication_slots where slot_name = $1', [slot]);
  const row = rows[0];
  if (!row) {
    return {name: 'wal streaming', status: 'warn', detail: `the replication slot ${slot} does not exist yet`,
      fix: `start the receiver (pgbk schedule, or pgbk wal-receive --policy ${policy.name}): it creates the slot`};
  }
  if (row.type !== 'physical') return fail('wal streaming', `the slot ${slot} is a ${row.type} slot`, `name another slot in wal_streaming.slot (pg_receivewal needs a physical one)`);
  if (!row.active) {
    return {name: 'wal streaming', status: 'warn', detail: `the slot ${slot} exists but nothing streams from it`,
      fix: `start the receiver (pgbk schedule, or pgbk wal-receive --policy ${policy.name})`};
  }
  return ok('wal streaming', `slot ${slot} in use (spool ${policy.walStreaming!.spoolDir})`);
}

/** Put, stat and remove a small object under check/. */
async function probeRepository(repo: Repository): Promise<CheckResult> {
  const key = `${CHECK_PREFIX}${hostname()}-${process.pid}-${Date.now()}.probe`;
  const body = Buffer.from(`pgbk check ${new Date().toISOString()}\n`);
  const fix = `make the repository reachable and writable: check repository.url, endpoint and credentials in the policy; ` +
    'an S3 bucket must exist and allow PutObject, HeadObject, GetObject, ListBucket and DeleteObject; a local directory must be writable by this user and the PostgreSQL OS user';
  let step = 'write';
  try {
    await withTimeout((async () => {
      await repo.put(key, body, {sizeBytes: body.length});
      step = 'read back';
      const stored = await repo.stat(key);
      if (!stored || stored.sizeBytes !== body.length) throw new Error(`${key} was written but reads back as ${stored ? `${stored.sizeBytes} bytes` : 'missing'}`);
      step = 'remove';
      await repo.remove([key]);
    })(), 90_000, `no answer within 90s`);
    return ok('repository', `${repo.description} is reachable and writable`);
  } catch (error) {
    const cause = (error as Error).cause as Error | undefined;
    return fail('repository', `repository ${repo.description}: cannot ${step} a probe object under ${CHECK_PREFIX}: ${cause?.message ?? (error as Error).message}`, fix);
  }
}

/** The repository's identity against the server's pg_control_system(). */
async function identityCheck(client: import('pg').Client, repo: Repository, policy: Policy): Promise<CheckResult & {systemId?: string}> {
  const {rows} = await client.query(`select system_identifier::text as system_id from pg_control_system()`);
  const serverSystem: string = rows[0].system_id;
  let identity;
  try {
    identity = await readIdentity(repo);
  } catch (error) {
    return fail('identity', (error as Error).message, (error as PgbkError).hint ?? 'restore identity.json or move the repository aside and run pgbk init');
  }
  if (!identity && policy.strategy === 'dump') {
    return ok('identity', `${repo.description} is not initialised yet: the first backup will initialise it for database system ${serverSystem}`);
  }
  if (!identity) {
    return fail('identity', `${repo.description} is not initialised (no identity.json); archive-push refuses to write into it`,
      `run "pgbk init --policy ${policy.name}"`);
  }
  if (identity.systemId !== serverSystem) {
    return fail('identity', `the repository belongs to database system ${identity.systemId}, this server is ${serverSystem}`,
      'each cluster needs its own repository.url: point the policy at this cluster\'s repository (or at an empty one and run pgbk init)');
  }
  return {...ok('identity', `${repo.description} belongs to this server's database system ${serverSystem} (repository ${identity.repositoryId})`), systemId: serverSystem};
}

async function archiveRoundTrip(client: import('pg').Client, repo: Repository, waitSeconds: number, systemId: string): Promise<CheckResult> {
  const started = new Date(Date.now() - 1000);
  const segment = await switchWalFile(client);
  const deadline = Date.now() + waitSeconds * 1000;
  for (;;) {
    const copies = await findArchived(repo, segment);
    if (copies.length > 0) {
      // Only this cluster's segment counts: read its page header back.
      const header = parseLongPageHeader(await readArchivedHead(repo, copies[0]!));
      if (header?.systemId !== systemId) {
        return fail('archive round trip', `${segment} in ${repo.description} is not this server's WAL (system ${header?.systemId ?? 'unknown'}, this server ${systemId})`,
          'another cluster archives into this repository: give each cluster its own repository.url');
      }
      return ok('archive round trip', `switched to a new segment: ${segment} arrived in ${repo.description} and reads back as this server's WAL`);
    }
    const archiver = await archiverStats(client);
    if (archiver.lastFailedWal === segment && archiver.lastFailedTime && new Date(archiver.lastFailedTime) >= started) {
      return fail('archive round trip', `archive_command failed for ${segment} (${archiver.failedCount} failures in all)`,
        'read the PostgreSQL server log for the error of pgbk archive-push: typically the policy file or the repository is not readable ' +
        "by the server's OS user, or a ${VAR} the policy uses is not set in the server's environment");
    }
    if (Date.now() >= deadline) {
      return fail('archive round trip', `${segment} did not arrive in ${repo.description} within ${waitSeconds}s` +
        `${archiver.lastArchivedWal ? ` (last archived: ${archiver.lastArchivedWal})` : ''}`,
        'read the PostgreSQL server log for archive_command errors; a backlog of .ready files in pg_wal/archive_status delays new segments');
    }
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}

async function withTimeout<T>(work: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([work, new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(message)), ms); })]);
  } finally {
    clearTimeout(timer);
  }
}
