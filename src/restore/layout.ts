// Lays out a data directory from a base backup: fetch, verify, unpack, then the recovery settings.

import {chown, mkdir, readdir, readFile, realpath, rm, stat, writeFile, appendFile, lstat} from 'node:fs/promises';
import {endianness, homedir, userInfo} from 'node:os';
import {join, resolve, dirname, relative, isAbsolute} from 'node:path';
import {fileURLToPath} from 'node:url';
import {pipeline} from 'node:stream/promises';
import {CorruptObjectError, DestinationError, ObjectNotFoundError, RestoreError, UsageError} from '../errors.js';
import type {Policy} from '../policy/types.js';
import type {Repository} from '../storage/repository.js';
import type {BackupManifest} from '../backup/manifest.js';
import {TarExtractor} from './untar.js';
import {concatenatedParts} from './fetch-parts.js';
import {tarsOf} from '../backup/parts.js';
import {findArchived} from '../wal/archive.js';
import {ChecksumVerifier} from '../util/streams.js';
import {createProgress} from '../util/progress.js';
import {isRoot} from '../pg/owner.js';
import {postmasterPid} from '../pg/postmaster.js';
import type {RestorePlan} from './plan.js';
import {describeTarget, quoteConfValue, recoverySettings, type TargetBehaviour} from './target.js';

/** What --force needs to tell this repository's cluster from anything else. */
export interface DestinationGuard {
  repo: Repository;
  policy: Policy;
  catalog: BackupManifest[];
}

/**
 * Refuses a non-empty destination unless forced; refuses always when a server runs there, and anything inside (or
 * holding) a file:// repository. --force replaces only a stopped data directory of this repository's cluster
 * (PG_VERSION, and the system identifier in global/pg_control equal to the backups'), never `/` or a home directory,
 * and not while its pg_wal holds .ready segments the archive lacks. Nothing is touched here.
 */
export async function checkDestination(dir: string, force: boolean, guard?: DestinationGuard): Promise<'absent' | 'empty' | 'non-empty'> {
  const path = resolve(dir);
  const repoRoot = guard ? localRepositoryRoot(guard.policy.repository.url) : undefined;
  let entries: string[];
  let real: string;
  try {
    const info = await stat(path);
    if (!info.isDirectory()) throw new DestinationError(`--to ${dir} exists and is not a directory`);
    real = await realpath(path);
    entries = await readdir(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
      if (repoRoot) await refuseRepositoryOverlap(dir, path, repoRoot);
      return 'absent';
    }
    throw error instanceof DestinationError ? error : new DestinationError(`--to ${dir}: ${(error as Error).message}`);
  }
  if (real === '/') throw new DestinationError(`${force ? '--force refuses to replace' : 'refusing'} --to ${dir}: it is the root directory`, 'restore into a new or empty directory');
  if (repoRoot) await refuseRepositoryOverlap(dir, real, repoRoot);
  if (entries.length === 0) return 'empty';
  const pid = await postmasterPid(path);
  if (pid !== undefined) {
    throw new DestinationError(`--to ${dir} belongs to a running PostgreSQL server (pid ${pid})`, 'stop that server first; pgbk never overwrites a running cluster');
  }
  if (!force) {
    throw new DestinationError(`--to ${dir} is not empty (${entries.length} entries)`, 'give an empty or new directory, or --force to replace a stopped data directory of this cluster');
  }
  for (const home of await homeDirectories()) {
    if (home.path === real || isInside(home.path, real)) {
      throw new DestinationError(`--force refuses to replace --to ${dir}: ${home.path === real ? 'it is' : 'it holds'} the home directory of ${home.user} (${home.path})`,
        'restore into a new or empty directory');
    }
  }
  if (!guard) return 'non-empty';
  const notData = `--force replaces only a stopped data directory of this repository's cluster`;
  if (!entries.includes('PG_VERSION')) {
    throw new DestinationError(`--force refuses to replace --to ${dir}: it is not a PostgreSQL data directory (no PG_VERSION)`, `${notData}; restore into a new or empty directory`);
  }
  const systemId = await readSystemIdentifier(path);
  const expected = [...new Set(guard.catalog.filter((backup) => backup.kind === 'base').map((backup) => backup.systemId))];
  if (systemId === undefined) {
    throw new DestinationError(`--force refuses to replace --to ${dir}: global/pg_control is missing or unreadable, so it cannot be told to belong to this cluster`, notData);
  }
  if (!expected.includes(systemId)) {
    throw new DestinationError(`--force refuses to replace --to ${dir}: it is the data directory of another cluster (system identifier ${systemId}; the backups in ${guard.repo.description} are of ${expected.join(', ') || 'no cluster'})`, notData);
  }
  const unarchived = await unarchivedReadySegments(path, guard.repo);
  if (unarchived.length > 0) {
    const shown = unarchived.slice(0, 10).join(', ') + (unarchived.length > 10 ? ` and ${unarchived.length - 10} more` : '');
    throw new DestinationError(`--force refuses to replace --to ${dir}: its pg_wal holds ${unarchived.length} segment(s) marked .ready that are not in the archive: ${shown}`,
      `they hold WAL nobody archived: start that server so it archives them (or push each with pgbk archive-push --policy ${guard.policy.name} ${join(path, 'pg_wal')}/<segment>), then retry`);
  }
  return 'non-empty';
}

function isInside(child: string, parent: string): boolean {
  const rel = relative(parent, child);
  return rel !== '' && !rel.startsWith('..') && !isAbsolute(rel);
}

function localRepositoryRoot(url: string): string | undefined {
  if (!url.startsWith('file://')) return undefined;
  try {
    return fileURLToPath(url);
  } catch {
    return undefined;
  }
}

async function refuseRepositoryOverlap(dir: string, path: string, repoRoot: string): Promise<void> {
  const root = await realpath(repoRoot).catch(() => resolve(repoRoot));
  if (root === path || isInside(root, path) || isInside(path, root)) {
    throw new DestinationError(`--to ${dir} ${root === path ? 'is' : isInside(root, path) ? 'holds' : 'is inside'} the repository ${root}`,
      'restore outside the repository directory');
  }
}

/** Home directories of every user in /etc/passwd and of the current one (those that exist). */
async function homeDirectories(): Promise<Array<{user: string; path: string}>> {
  const homes: Array<{user: string; path: string}> = [{user: userInfo().username, path: homedir()}];
  const passwd = await readFile('/etc/passwd', 'utf8').catch(() => '');
  for (const line of passwd.split('\n')) {
    const fields = line.split(':');
    if (fields.length >= 6 && fields[5]!.startsWith('/')) homes.push({user: fields[0]!, path: fields[5]!});
  }
  const resolved: Array<{user: string; path: string}> = [];
  for (const home of homes) {
    const path = await realpath(home.path).catch(() => undefined);
    if (path) resolved.push({user: home.user, path});
  }
  return resolved;
}

/** The system identifier at the start of global/pg_control (a uint64 in the machine's byte order). */
export async function readSystemIdentifier(dataDir: string): Promise<string | undefined> {
  const bytes = await readFile(join(dataDir, 'global', 'pg_control')).catch(() => undefined);
  if (!bytes || bytes.length < 8) return undefined;
  return (endianness() === 'LE' ? bytes.readBigUInt64LE(0) : bytes.readBigUInt64BE(0)).toString();
}

async function unarchivedReadySegments(dataDir: string, repo: Repository): Promise<string[]> {
  const names = await readdir(join(dataDir, 'pg_wal', 'archive_status')).catch(() => [] as string[]);
  const missing: string[] = [];
  for (const name of names.filter((entry) => entry.endsWith('.ready')).sort()) {
    const walFile = name.slice(0, -'.ready'.length);
    if ((await findArchived(repo, walFile)).length === 0) missing.push(walFile);
  }
  return missing;
}


export interface LayoutResult {
  dataDir: string;
  fetchedBytes: number;
  fetchMs: number;
}

export interface RecoveryOptions {
  /** recovery_target_timeline: latest (default), current, or a number. */
  targetTimeline: string;
  /**
   * preserve: the restored server keeps the original archive_command, so once promoted it archives its new timeline
   * into the repository (what a replacement primary needs). off: archive_mode = off, for side copies and drills,
   * whose timelines would otherwise become "latest" for later restores.
   */
  archiveMode: 'preserve' | 'off';
  /**
   * restore --standby: standby.signal instead of recovery.signal, no target, this primary_conninfo: the server
   * follows the primary (archive, then streaming) instead of promoting.
   */
  standby?: {primaryConninfo: string};
  /** recovery_target_action (default promote) and recovery_target_inclusive (--target-exclusive). */
  behaviour?: TargetBehaviour;
  /** Where each tablespace (by oid) is unpacked, from resolveTablespaceMap; default: their original locations. */
  tablespaces?: Map<string, string>;
}

/**
 * The directory each tablespace of the backup is unpacked into: `NAME=DIR` (NAME the tablespace's name or oid),
 * else its original location. Every directory must be absent or empty, distinct, and neither the data directory
 * nor inside it (nor holding it). Refusals are bad input (exit 2); nothing is written here.
 */
export async function resolveTablespaceMap(backup: BackupManifest, dataDir: string, requested: string[]): Promise<Map<string, string>> {
  const spaces = backup.tablespaces ?? [];
  const map = new Map<string, string>(spaces.map((space) => [space.oid, space.location]));
  for (const entry of requested) {
    const match = /^([^=]+)=(.+)$/.exec(entry);
    if (!match) throw new UsageError(`--tablespace-map "${entry}" is not NAME=DIR`, 'give the tablespace\'s name (or oid) and the directory to restore it into, e.g. --tablespace-map fast=/srv/fast');
    const space = spaces.find((candidate) => candidate.name === match[1] || candidate.oid === match[1]);
    if (!space) {
      throw new UsageError(`--tablespace-map ${match[1]}: backup ${backup.id} has no tablespace of that name or oid`,
        spaces.length > 0 ? `its tablespaces: ${spaces.map((candidate) => `${candidate.name} (oid ${candidate.oid}, at ${candidate.location})`).join(', ')}` : 'that backup has no user tablespaces');
    }
    map.set(space.oid, resolve(match[2]!));
  }
  const data = resolve(dataDir);
  const realData = await realpath(data).catch(() => data);
  const seen = new Map<string, string>();
  for (const [oid, dir] of map) {
    const name = spaces.find((space) => space.oid === oid)?.name ?? oid;
    if (!isAbsolute(dir)) throw new UsageError(`tablespace ${name}: its location "${dir}" is not an absolute path`, 'give --tablespace-map NAME=DIR with an absolute DIR');
    const real = await realpath(dir).catch(() => dir);
    for (const [path, against] of [[dir, data], [real, realData]] as const) {
      if (path === against || isInside(path, against) || isInside(against, path)) {
        throw new DestinationError(`tablespace ${name} cannot be restored into ${dir}: it ${path === against ? 'is' : isInside(path, against) ? 'is inside' : 'holds'} the data directory ${dataDir}`,
          'map it elsewhere with --tablespace-map NAME=DIR');
      }
    }
    const other = seen.get(real);
    if (other !== undefined) throw new DestinationError(`tablespaces ${other} and ${name} are both mapped to ${dir}`, 'give each tablespace its own directory with --tablespace-map NAME=DIR');
    seen.set(real, name);
    let entries: string[] | undefined;
    try {
      const info = await stat(dir);
      if (!info.isDirectory()) throw new DestinationError(`tablespace ${name} cannot be restored into ${dir}: it exists and is not a directory`, 'map it elsewhere with --tablespace-map NAME=DIR');
      entries = await readdir(dir);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') {
        throw error instanceof DestinationError ? error : new DestinationError(`tablespace ${name} cannot be restored into ${dir}: ${(error as Error).message}`);
      }
    }
    if (entries && entries.length > 0) {
      throw new DestinationError(`tablespace ${name} cannot be restored into ${dir}: it is not empty (${entries.length} entries)`,
        'give an empty or new directory with --tablespace-map NAME=DIR (the default is the tablespace\'s original location)');
    }
  }
  return map;
}

export async function layOutDataDirectory(repo: Repository, policy: Policy, plan: RestorePlan, dir: string, state: 'absent' | 'empty' | 'non-empty',
  recovery: RecoveryOptions = {targetTimeline: 'latest', archiveMode: 'preserve'}): Promise<LayoutResult> {
  const dataDir = resolve(dir);
  const tablespaces = recovery.tablespaces ?? await resolveTablespaceMap(plan.backup, dataDir, []);
  if (state === 'non-empty') await emptyDirectory(dataDir);
  await mkdir(dataDir, {recursive: true, mode: 0o700});
  const started = Date.now();
  let fetchedBytes = 0;
  // A dropped connection or a stalled stream is worth another try; a checksum mismatch is not.
  for (let attempt = 1; ; attempt++) {
    try {
      fetchedBytes = await unpackObjects(repo, plan, dataDir, tablespaces);
      break;
    } catch (error) {
      // Leave nothing that could be started by mistake: an unpacked half backup is worse than none.
      await emptyDirectory(dataDir).catch(() => undefined);
      for (const space of tablespaces.values()) await emptyDirectory(space).catch(() => undefined);
      const permanent = error instanceof CorruptObjectError || error instanceof ObjectNotFoundError || (error as {code?: string}).code === 'ENOSPC';
      if (permanent || attempt >= UNPACK_ATTEMPTS) {
        if (error instanceof RestoreError || error instanceof CorruptObjectError) throw error;
        throw new RestoreError(`cannot unpack backup ${plan.backup.id} into ${dataDir}: ${(error as {shortMessage?: string}).shortMessage ?? (error as Error).message}`, undefined, {cause: error});
      }
      await new Promise((resolveDelay) => setTimeout(resolveDelay, 1000 * attempt));
    }
  }
  const fetchMs = Date.now() - started;
  await writeRecoveryConfig(policy, plan, dataDir, recovery, tablespaces.values());
  return {dataDir, fetchedBytes, fetchMs};
}

const UNPACK_ATTEMPTS = 3;

/** Every piece is in the repository with the size the manifest gives, before anything is written. */
async function checkPiecesPresent(repo: Repository, backup: BackupManifest): Promise<void> {
  const objects = [...backup.objects];
  const problems: string[] = [];
  const worker = async (): Promise<void> => {
    for (let object = objects.shift(); object; object = objects.shift()) {
      const stored = await repo.stat(object.key);
      if (!stored) problems.push(`${object.key} is missing`);
      else if (stored.sizeBytes !== object.sizeBytes) problems.push(`${object.key} has ${stored.sizeBytes} bytes, the manifest says ${object.sizeBytes}`);
    }
  };
  await Promise.all(Array.from({length: Math.min(8, objects.length)}, worker));
  if (problems.length > 0) {
    const shown = problems.sort().slice(0, 5).join('; ') + (problems.length > 5 ? `; and ${problems.length - 5} more` : '');
    throw new CorruptObjectError(`backup ${backup.id} is incomplete in ${repo.description}: ${shown}; nothing was restored from it`,
      'restore another backup (pgbk list, --backup <id>) and run pgbk verify');
  }
}

/**
 * Fetches, verifies and unpacks every object of the backup, pieces of one tar several at once and unpacked in order
 * as they arrive (restore/untar.ts refuses what a base backup never holds); returns the bytes fetched.
 */
async function unpackObjects(repo: Repository, plan: RestorePlan, dataDir: string, tablespaces: Map<string, string>): Promise<number> {
  const backup = plan.backup;
  const tars = tarsOf(backup);
  await checkPiecesPresent(repo, backup);
  let fetchedBytes = 0;
  const total = backup.objects.reduce((sum, object) => sum + object.sizeBytes, 0);
  const progress = createProgress(`restore ${backup.id}`, process.stderr, total);
  for (const [tar, pieces] of tars) {
    const spaceDir = tar === 'base' ? undefined : tablespaces.get(tar);
    if (tar !== 'base' && !spaceDir) {
      throw new CorruptObjectError(`backup ${backup.id} holds ${tar}.tar, which its manifest lists as no tablespace`, 'the manifest was altered or damaged; restore another backup (pgbk list, --backup <id>)');
    }
    if (spaceDir) {
      await mkdir(dirname(spaceDir), {recursive: true});
      await mkdir(spaceDir, {mode: 0o700}).catch((error: NodeJS.ErrnoException) => {
        if (error.code !== 'EEXIST') throw error;
      });
      // PostgreSQL wants the tablespace directory its own (as root: the owner of the data directory's files, set below).
    }
    let current = pieces[0]!;
    // pg_tblspc/<oid> (in base.tar) points at where its tablespace is unpacked.
    const symlinkTarget = (name: string, linkname: string): string => tablespaces.get(/^pg_tblspc\/(\d+)$/.exec(name)?.[1] ?? '') ?? linkname;
    const extractor = new TarExtractor({root: spaceDir ?? dataDir, what: `backup ${backup.id}${spaceDir ? ` (tablespace ${tar})` : ''}`, chownToArchiveOwner: isRoot(), symlinkTarget, tablespace: spaceDir !== undefined});
    try {
      await pipeline(concatenatedParts(repo, pieces, {
        onPartStart: (object) => { current = object; },
        onStoredBytes: (bytes) => progress.update(fetchedBytes + bytes),
        onPartDone: (_object, bytes) => { fetchedBytes += bytes; },
      }), extractor);
    } catch (error) {
      // A tar the extractor cannot read (or a member it refuses) may be a stored piece damaged in a way the checksum,
      // checked at the end of each piece, had not caught yet: read that piece through once more and say so.
      if (error instanceof CorruptObjectError && /is not a valid tar archive|: tar member /.test(error.message)) {
        const damage = await storedChecksumMismatch(repo, current).catch(() => undefined);
        if (damage) throw new CorruptObjectError(`backup object ${current.key} is damaged: ${damage}`, HINT, {cause: error});
      }
      throw error;
    }
    if (extractor.strippedModes > 0) {
      process.stderr.write(`pgbk: warning: backup ${backup.id}: ${extractor.strippedModes} member(s) carried setuid/setgid/sticky bits; restored without them\n`);
    }
  }
  progress.done();
  return fetchedBytes;
}

const HINT = 'the stored backup is damaged; restore from another backup (pgbk list, --backup <id>) and run pgbk verify';

/** Why the stored object does not match its manifest entry (size, SHA-256), or undefined when it does. */
async function storedChecksumMismatch(repo: Repository, object: RestorePlan['backup']['objects'][number]): Promise<string | undefined> {
  const verifier = new ChecksumVerifier(object.sha256, object.key);
  try {
    await pipeline(await repo.get(object.key), verifier, async function* (source: AsyncIterable<Buffer>) {
      for await (const _chunk of source) { /* drain */ }
    });
  } catch (error) {
    if (error instanceof CorruptObjectError) return error.message;
    throw error;
  }
  return verifier.bytes === object.sizeBytes ? undefined : `${verifier.bytes} bytes stored, the manifest says ${object.sizeBytes}`;
}

async function emptyDirectory(dir: string): Promise<void> {
  for (const entry of await readdir(dir)) await rm(join(dir, entry), {recursive: true, force: true});
}

/** The pgbk executable by absolute path, so restore_command works in the server's environment. */
export function pgbkCommandPrefix(): string {
  const binScript = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', 'bin', 'pgbk');
  return `${shellWord(process.execPath)} ${shellWord(binScript)}`;
}

/**
 * restore_command: a segment the prefetcher already fetched and verified (checksum, cluster) into the spool is moved
 * into place by the shell alone — about what `cp` costs, no Node start-up; the request is noted for the prefetcher.
 * Anything else goes to `pgbk archive-get`, whose exit code PostgreSQL then sees.
 */
export function restoreCommandFor(policyFile: string, endOfArchive?: string): string {
  const spool = 'pg_wal/pgbk-spool';
  const end = endOfArchive ? ` --end-of-archive ${endOfArchive}` : '';
  return `if [ -f ${spool}/%f ] && mv -f ${spool}/%f %p 2>/dev/null; then echo %f > ${spool}/.requested 2>/dev/null || :; ` +
    `else ${pgbkCommandPrefix()} archive-get --policy ${shellWord(policyFile)}${end} %f %p; fi`;
}

function shellWord(word: string): string {
  return /^[A-Za-z0-9_./:=@%+-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

async function writeRecoveryConfig(policy: Policy, plan: RestorePlan, dataDir: string, recovery: RecoveryOptions, tablespaces: Iterable<string>): Promise<void> {
  for (const stale of ['postmaster.pid', 'postmaster.opts', 'standby.signal', 'recovery.signal']) {
    await rm(join(dataDir, stale), {force: true});
  }
  await mkdir(join(dataDir, 'pg_wal', 'archive_status'), {recursive: true, mode: 0o700});
  const restoreCommand = restoreCommandFor(policy.file, plan.endOfArchive);
  const settings: Record<string, string> = {
    restore_command: restoreCommand,
    ...(recovery.standby ? {primary_conninfo: recovery.standby.primaryConninfo} : recoverySettings(plan.target)),
    recovery_target_timeline: recovery.standby ? 'latest' : recovery.targetTimeline,
  };
  if (recovery.archiveMode === 'off') settings.archive_mode = 'off';
  // PostgreSQL's default is to pause at the target: pgbk promotes unless told otherwise (--target-action).
  if (plan.target.kind !== 'latest' && !recovery.standby) {
    const action = recovery.behaviour?.action ?? 'promote';
    settings.recovery_target_action = action;
    // PostgreSQL treats pause as shutdown without hot standby: a paused server must accept read-only queries.
    if (action === 'pause') settings.hot_standby = 'on';
    if (recovery.behaviour?.exclusive) settings.recovery_target_inclusive = 'off';
  }
  const lines = [
    '',
    `# Added by pgbk restore at ${new Date().toISOString()}: backup ${plan.backup.id}, target ${describeTarget(plan.target)}.`,
    recovery.standby
      ? '# A standby (standby.signal): it restores archived WAL, then streams from primary_conninfo, and never promotes by itself.'
      : recovery.behaviour?.action === 'pause'
        ? '# The server pauses at the target, in recovery: inspect it, then select pg_wal_replay_resume() to promote it.'
        : recovery.behaviour?.action === 'shutdown'
          ? '# The server shuts down at the target; recovery.signal stays, so the next start replays again (change the target first).'
          : '# PostgreSQL removes recovery.signal when recovery ends; these settings then have no effect.',
    ...Object.entries(settings).map(([name, value]) => `${name} = ${quoteConfValue(value)}`),
    '',
  ];
  await appendFile(join(dataDir, 'postgresql.auto.conf'), lines.join('\n'));
  const signal = recovery.standby ? 'standby.signal' : 'recovery.signal';
  await writeFile(join(dataDir, signal), '');
  if (isRoot()) await chownLikeData(dataDir, signal, tablespaces);
}

/** As root, give what pgbk created to the owner of the unpacked files (tar kept their owner). */
async function chownLikeData(dataDir: string, signal: string, tablespaces: Iterable<string> = []): Promise<void> {
  const owner = await lstat(join(dataDir, 'PG_VERSION'));
  if (owner.uid === 0) return;
  for (const path of [dataDir, ...tablespaces, join(dataDir, 'pg_wal'), join(dataDir, 'pg_wal', 'archive_status'), join(dataDir, signal), join(dataDir, 'postgresql.auto.conf')]) {
    await chown(path, owner.uid, owner.gid);
  }
}
