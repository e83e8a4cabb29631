// pgbk init: give a repository its identity, or confirm it (idempotent for the same cluster, refused for another).
// A repository made before identities existed is adopted once every backup in it is shown to be of this cluster.

import {PgServerError, RepositoryIdentityError} from '../errors.js';
import type {Policy} from '../policy/types.js';
import {IDENTITY_KEY} from '../storage/layout.js';
import type {Repository} from '../storage/repository.js';
import type {ArchivedWalFile} from '../wal/archive.js';
import {assertSameSystem, newIdentity, readIdentity, serializeIdentity, type ClusterFacts, type RepositoryIdentity} from './identity.js';

export interface InitResult {
  identity: RepositoryIdentity;
  /** created: new repository; existing: was initialised for this cluster already; adopted: an earlier pgbk's repository. */
  outcome: 'created' | 'existing' | 'adopted';
  /** Backups checked when adopting. */
  backupsChecked: number;
}

/** The facts of the policy's cluster: from the running server, else from pg_controldata of postgres.data_dir. */
export async function clusterFacts(policy: Policy): Promise<ClusterFacts> {
  try {
    const [{withClient}, {serverInfo}] = await Promise.all([import('../pg/client.js'), import('../pg/queries.js')]);
    const info = await withClient(policy.postgres.url, serverInfo);
    return {systemId: info.systemId, pgVersionNum: info.versionNum, walSegmentSize: info.walSegmentSize};
  } catch (error) {
    if (!policy.postgres.dataDir) throw error;
    return controlDataFacts(policy.postgres.dataDir, policy.postgres.binDir, error as Error);
  }
}

async function controlDataFacts(dataDir: string, binDir: string | undefined, connectError: Error): Promise<ClusterFacts> {
  const {controlData} = await import('../pg/controldata.js');
  let field: (label: string) => string | undefined;
  try {
    field = await controlData(dataDir, binDir);
  } catch (error) {
    throw new PgServerError(
      `cannot learn the cluster's system identifier: ${connectError.message}; and pg_controldata -D ${dataDir} failed: ${(error as Error).message}`,
      'start the server (or fix postgres.url / postgres.data_dir in the policy) and run the command again',
      {cause: error},
    );
  }
  const systemId = field('Database system identifier');
  const segment = Number(field('Bytes per WAL segment'));
  const catalog = Number(field('pg_control version number'));
  const versionFile = await import('node:fs/promises').then((fs) => fs.readFile(`${dataDir}/PG_VERSION`, 'utf8')).catch(() => '');
  const major = Number.parseInt(versionFile.trim(), 10);
  if (!systemId || !(segment > 0) || !(catalog > 0)) throw new PgServerError(`pg_controldata -D ${dataDir} did not report a system identifier`);
  return {systemId, walSegmentSize: segment, pgVersionNum: major > 0 ? major * 10000 : 0};
}

/**
 * Makes `repo` this cluster's repository. Creates the root of a local repository (only when its parent exists),
 * writes the identity when there is none, and refuses a repository of another cluster, naming both.
 */
export async function initRepository(repo: Repository, cluster: ClusterFacts, now: Date, createdBy: 'init' | 'backup' = 'init'): Promise<InitResult> {
  await repo.create();
  const existing = await readIdentity(repo);
  if (existing) {
    assertSameSystem(existing, cluster.systemId, 'the server', repo);
    return {identity: existing, outcome: 'existing', backupsChecked: 0};
  }
  // Anything there already? Then it was made by an earlier pgbk: adopt it only if every backup is this cluster's.
  const checked = await checkContents(repo, cluster.systemId);
  if (createdBy === 'backup' && checked.nonEmpty) {
    throw new RepositoryIdentityError(
      `${repo.description} holds backups or WAL but no identity (${IDENTITY_KEY}): it was made by an earlier pgbk`,
      'run "pgbk init" once: it checks that every backup there is of this cluster and adopts the repository',
    );
  }
  const identity = newIdentity(cluster, checked.nonEmpty ? 'adopted' : createdBy, now);
  return {identity: await storeIdentity(repo, identity), outcome: checked.nonEmpty ? 'adopted' : 'created', backupsChecked: checked.backups};
}

/** Writes a new identity unless one appeared meanwhile; returns the one that holds (ours, or the other writer's). */
async function storeIdentity(repo: Repository, identity: RepositoryIdentity): Promise<RepositoryIdentity> {
  if (await readIdentity(repo)) throw new RepositoryIdentityError(`${repo.description} was initialised by someone else meanwhile; run the command again`);
  await repo.put(IDENTITY_KEY, serializeIdentity(identity));
  const stored = await readIdentity(repo);
  if (!stored) throw new RepositoryIdentityError(`${IDENTITY_KEY} vanished from ${repo.description} right after it was written`);
  // Two inits raced: whichever identity is stored now is the repository's; it must still be this cluster's.
  assertSameSystem(stored, identity.systemId, 'the server', repo);
  return stored;
}

async function checkContents(repo: Repository, systemId: string): Promise<{nonEmpty: boolean; backups: number}> {
  const {readCatalog} = await import('../backup/manifest.js');
  const unreadable: string[] = [];
  const catalog = await readCatalog(repo, (key, error) => unreadable.push(`${key}: ${error.message}`), {allSystems: true});
  const foreign = catalog.filter((backup) => backup.systemId !== systemId);
  if (foreign.length > 0) {
    throw new RepositoryIdentityError(
      `${repo.description} holds ${foreign.length} backup(s) of another database system: ${foreign.slice(0, 5).map((b) => `${b.id} (system ${b.systemId})`).join(', ')}; this server is ${systemId}`,
      'each cluster needs its own repository.url; move the other cluster\'s backups away (or choose another repository) — nothing was written',
    );
  }
  if (unreadable.length > 0) {
    throw new RepositoryIdentityError(
      `cannot adopt ${repo.description}: ${unreadable.length} backup manifest(s) are unreadable, so their cluster is unknown: ${unreadable.slice(0, 3).join('; ')}`,
      'run "pgbk verify" and remove or repair the damaged backups first',
    );
  }
  // The WAL: the oldest and the newest segment of every timeline must carry this system identifier in their page
  // headers (another cluster's WAL pushed into this repository would sort among or after this cluster's).
  const {listArchived, readArchivedHead} = await import('../wal/archive.js');
  const {parseLongPageHeader} = await import('../wal/page-header.js');
  const ends = new Map<string, {first: ArchivedWalFile; last: ArchivedWalFile}>();
  for await (const copy of listArchived(repo)) {
    if (!/^[0-9A-F]{24}(\.partial)?$/.test(copy.walFile)) continue;
    const timeline = copy.walFile.slice(0, 8);
    const seen = ends.get(timeline);
    if (!seen) ends.set(timeline, {first: copy, last: copy});
    else seen.last = copy;
  }
  for (const {first, last} of ends.values()) {
    for (const copy of first === last ? [first] : [first, last]) {
      const header = parseLongPageHeader(await readArchivedHead(repo, copy));
      if (header && header.systemId !== systemId) {
        throw new RepositoryIdentityError(
          `${repo.description} holds WAL of another database system: ${copy.walFile} is of system ${header.systemId}; this server is ${systemId}`,
          'each cluster needs its own repository.url; move the other cluster\'s WAL away (or choose another repository) — nothing was written',
        );
      }
    }
  }
  let nonEmpty = catalog.length > 0 || ends.size > 0;
  if (!nonEmpty) {
    for await (const object of repo.list('')) {
      if (object.key !== IDENTITY_KEY) {
        nonEmpty = true;
        break;
      }
    }
  }
  return {nonEmpty, backups: catalog.length};
}

/**
 * The identity a backup checks against: the repository's, which must be the server's database system; an empty
 * repository is initialised by its first backup. A repository of an earlier pgbk needs `pgbk init` first.
 */
export async function identityForBackup(policy: Policy, repo: Repository, now: Date): Promise<RepositoryIdentity> {
  // With an identity, the backup compares it with the server it actually reads (a standby, or a promoted one
  // while postgres.url's server is gone): no connection here.
  // pitr and dump read postgres.url's server itself: learn it first (an unreachable server is the first thing to
  // say), and refuse another cluster before the backup lease is taken.
  const facts = policy.strategy === 'pitr' || policy.strategy === 'dump' ? await clusterFacts(policy) : undefined;
  const existing = await readIdentity(repo);
  if (existing) {
    if (facts) assertSameSystem(existing, facts.systemId, `the server of policy ${policy.name}`, repo);
    return existing;
  }
  return (await initRepository(repo, facts ?? await clusterFacts(policy), now, 'backup')).identity;
}
