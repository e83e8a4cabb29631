// The backup manifest: written last, so a backup exists once (and only once) its manifest does.

import {createHash} from 'node:crypto';
import {text} from 'node:stream/consumers';
import {BackupError, CorruptObjectError, ObjectNotFoundError, PreconditionFailedError, RepositoryIdentityError} from '../errors.js';
import {BACKUP_PREFIX, manifestKey, MANIFEST_NAME} from '../storage/layout.js';
import type {Repository} from '../storage/repository.js';
import type {Codec} from '../util/codec.js';

export interface BackupObject {
  /** File name inside the backup's folder. */
  name: string;
  key: string;
  sizeBytes: number;
  sha256: string;
  /** The codec of the stored object (base backups: zstd or gzip; dumps: none, pg_dump compresses itself). */
  compression: Codec;
  /**
   * Base backups: the tar this object is a piece of ("base", or a tablespace's oid; absent: "base"), and its place
   * (1-based) among that tar's pieces. The pieces, each decompressed, concatenated in order, are the tar. Absent in
   * backups made before backups were stored in pieces: one object, the whole tar.
   */
  tar?: string;
  part?: number;
}

export interface BackupManifest {
  formatVersion: 1;
  id: string;
  kind: 'base' | 'dump';
  policy: string;
  strategy: string;
  label: string;
  startTime: string;
  /** A moment at or after the backup became consistent (rounded up to the second). */
  stopTime: string;
  /** Physical backups: LSNs in X/Y notation and timelines. */
  startLsn?: string;
  stopLsn?: string;
  timeline?: number;
  stopTimeline?: number;
  /** First and last WAL segment the backup needs to be consistent. */
  walStart?: string;
  walStop?: string;
  walSegmentSize?: number;
  /** Next transaction id after the backup (64-bit), to choose a backup for --target-xid. */
  nextXid?: string;
  systemId: string;
  pgVersionNum: number;
  /** Dumps: the database dumped. */
  database?: string;
  /** Bytes read from the server (uncompressed) and stored in the repository. */
  sourceBytes: number;
  storedBytes: number;
  durationMs: number;
  backupFrom?: 'primary' | 'standby';
  objects: BackupObject[];
  /** Base backups of a cluster with user tablespaces: each one's oid (its tar's name), name and original location. */
  tablespaces?: Array<{oid: string; name: string; location: string}>;
  /** SHA-256 over the JSON of every field above. */
  checksum?: string;
}

function checksumOf(manifest: BackupManifest): string {
  const {checksum: _ignored, ...rest} = manifest;
  return createHash('sha256').update(JSON.stringify(rest)).digest('hex');
}

/**
 * Stores the manifest, which makes the backup exist: only once every object it lists is confirmed in the
 * repository with the recorded size, and create-only, so a manifest is never overwritten (two runs that
 * somehow share an id cannot clobber each other's backup).
 */
export async function writeManifest(repo: Repository, manifest: BackupManifest): Promise<void> {
  for (const object of manifest.objects) {
    const stored = await repo.stat(object.key);
    if (!stored || stored.sizeBytes !== object.sizeBytes) {
      throw new BackupError(
        `backup ${manifest.id}: ${object.key} is ${stored ? `${stored.sizeBytes} bytes in ${repo.description}, expected ${object.sizeBytes}` : `missing from ${repo.description}`}; the manifest was not written`,
        'the upload did not land as written: check the repository (pgbk verify), then take the backup again');
    }
  }
  const sealed = {...manifest, checksum: checksumOf(manifest)};
  try {
    await repo.put(manifestKey(manifest.id), Buffer.from(`${JSON.stringify(sealed, null, 2)}\n`), {ifNoneMatch: '*'});
  } catch (error) {
    if (error instanceof PreconditionFailedError) {
      throw new BackupError(`backup ${manifest.id}: a manifest already exists in ${repo.description}; it was left as it is`,
        'another run wrote a backup under the same id; take the backup again', {cause: error});
    }
    throw error;
  }
}

export async function readManifest(repo: Repository, backupId: string): Promise<BackupManifest> {
  const key = manifestKey(backupId);
  const body = await text(await repo.get(key));
  let manifest: BackupManifest;
  try {
    manifest = JSON.parse(body);
  } catch (error) {
    throw new CorruptObjectError(`backup manifest ${key} is not valid JSON`, undefined, {cause: error});
  }
  if (manifest.checksum !== checksumOf(manifest)) {
    throw new CorruptObjectError(`backup manifest ${key} does not match its checksum`, 'the manifest was altered or damaged; use another backup');
  }
  return manifest;
}

export interface CatalogScope {
  /** Dump policies: only dumps of this database (several dump policies may share a repository). */
  database?: string;
  /** Every backup whatever its database system, and no identity needed (pgbk init, adopting a repository). */
  allSystems?: boolean;
}

/** What a policy sees of the catalog: a dump policy its own database's dumps. */
export function catalogScopeOf(policy: {strategy: string; postgres: {url: string}}): CatalogScope {
  if (policy.strategy !== 'dump') return {};
  try {
    const database = decodeURIComponent(new URL(policy.postgres.url).pathname.replace(/^\//, ''));
    return database ? {database} : {};
  } catch {
    return {};
  }
}

/**
 * Every complete backup (one with a manifest) of the repository's database system, oldest first. Backups without
 * a manifest are skipped; so are backups of another database system (an earlier pgbk let them in), reported
 * through `onSkip`. A repository without an identity is refused (RepositoryIdentityError) unless `allSystems`.
 */
export async function readCatalog(repo: Repository, onSkip?: (key: string, error: Error) => void, scope: CatalogScope = {}): Promise<BackupManifest[]> {
  let systemId: string | undefined;
  if (!scope.allSystems) {
    const {readIdentity} = await import('../identity/identity.js');
    const identity = await readIdentity(repo);
    if (!identity) {
      throw new RepositoryIdentityError(
        `${repo.description} is not an initialised pgbk repository (no identity.json)`,
        'run "pgbk init --policy <policy>" with the server running; it adopts a repository made by an earlier pgbk after checking every backup in it',
      );
    }
    systemId = identity.systemId;
  }
  const ids: string[] = [];
  for await (const object of repo.list(BACKUP_PREFIX)) {
    const parts = object.key.slice(BACKUP_PREFIX.length).split('/');
    if (parts.length === 2 && parts[1] === MANIFEST_NAME) ids.push(parts[0]!);
  }
  const manifests: BackupManifest[] = [];
  for (const id of ids.sort()) {
    try {
      const manifest = await readManifest(repo, id);
      if (systemId !== undefined && manifest.systemId !== systemId) {
        onSkip?.(manifestKey(id), new RepositoryIdentityError(`backup ${id} is of database system ${manifest.systemId}, the repository's is ${systemId}`));
        continue;
      }
      if (scope.database !== undefined && manifest.kind === 'dump' && manifest.database !== scope.database) continue;
      manifests.push(manifest);
    } catch (error) {
      if (error instanceof ObjectNotFoundError) continue; // expired while listing
      onSkip?.(manifestKey(id), error as Error);
    }
  }
  return manifests;
}
