// The repository's identity: which database system (PostgreSQL cluster) a repository belongs to. Written once by
// `pgbk init` (or the first backup into an empty repository) at the repository root; every command that reads or
// writes the repository compares it with what it handles, so WAL or backups of two clusters can never mix.

import {createHash, randomBytes, randomUUID} from 'node:crypto';
import {mkdir, readFile, rename, rm, writeFile} from 'node:fs/promises';
import {text} from 'node:stream/consumers';
import {CorruptObjectError, ObjectNotFoundError, RepositoryIdentityError} from '../errors.js';
import {IDENTITY_KEY} from '../storage/layout.js';
import type {Repository} from '../storage/repository.js';

export const IDENTITY_FORMAT = 'pgbk-repository';
export const IDENTITY_FORMAT_VERSION = 1;

export interface RepositoryIdentity {
  format: typeof IDENTITY_FORMAT;
  formatVersion: number;
  /** Random, made when the repository was initialised: tells two repositories at one URL apart. */
  repositoryId: string;
  /** pg_control_system().system_identifier, as text (64-bit). */
  systemId: string;
  pgVersionNum: number;
  walSegmentSize: number;
  created: string;
  /** Random salt for keys derived from a passphrase (client-side encryption). */
  salt: string;
  /** How the identity came to be: `init`, `backup` (first backup into an empty repository) or `adopted`. */
  createdBy: 'init' | 'backup' | 'adopted';
  /** Present when the repository is encrypted (client-side): how keys are derived, and the key check. */
  encryption?: IdentityEncryption;
  /** SHA-256 over the JSON of every field above. */
  checksum?: string;
}

export interface IdentityEncryption {
  /** The object format (src/storage/encryption/format.ts). */
  cipher: 'aes-256-gcm-256k-v1';
  /** How the passphrase is stretched (with the identity's salt). */
  kdf: {name: 'argon2id'; memoryKiB: number; passes: number; parallelism: number};
  /** Ids (hex) of the keys objects may be written under; the first is the repository's key, which signs `mac`. */
  keyIds: string[];
  /** HMAC-SHA256 (hex) under the repository's key over the identity without `checksum` and this field. */
  mac: string;
}

export interface ClusterFacts {
  systemId: string;
  pgVersionNum: number;
  walSegmentSize: number;
}

function checksumOf(identity: RepositoryIdentity): string {
  const {checksum: _ignored, ...rest} = identity;
  return createHash('sha256').update(JSON.stringify(rest)).digest('hex');
}

/** The identity with its checksum recomputed (after the encryption block was added or changed). */
export function withChecksum(identity: RepositoryIdentity): RepositoryIdentity {
  const {checksum: _ignored, ...rest} = identity;
  return {...rest, checksum: checksumOf(rest as RepositoryIdentity)};
}

/** The bytes the identity MAC covers: every field but `checksum` and `encryption.mac`. */
export function macInputOf(identity: RepositoryIdentity): Buffer {
  const {checksum: _ignored, encryption, ...rest} = identity;
  const {mac: _mac, ...covered} = encryption ?? ({} as Partial<IdentityEncryption>);
  return Buffer.from(JSON.stringify({...rest, encryption: covered}));
}

export function newIdentity(cluster: ClusterFacts, createdBy: RepositoryIdentity['createdBy'], now: Date): RepositoryIdentity {
  const identity: RepositoryIdentity = {
    format: IDENTITY_FORMAT,
    formatVersion: IDENTITY_FORMAT_VERSION,
    repositoryId: randomUUID(),
    systemId: cluster.systemId,
    pgVersionNum: cluster.pgVersionNum,
    walSegmentSize: cluster.walSegmentSize,
    created: now.toISOString(),
    salt: randomBytes(16).toString('hex'),
    createdBy,
  };
  return {...identity, checksum: checksumOf(identity)};
}

/** The identity of `repo`, or undefined when it has none (a new repository, or one made before identities). */
export async function readIdentity(repo: Repository): Promise<RepositoryIdentity | undefined> {
  let body: string;
  try {
    body = await text(await repo.get(IDENTITY_KEY));
  } catch (error) {
    if (error instanceof ObjectNotFoundError) return undefined;
    throw error;
  }
  return acceptIdentity(repo, parseIdentity(body, repo.description));
}

/**
 * An identity read from `repo` (or its copy in the spool): an encrypted repository's is checked against the policy's
 * key (key check and MAC; a wrong key is refused, exit 2); an encrypted identity without a key in the policy is refused.
 */
export async function acceptIdentity(repo: Repository, identity: RepositoryIdentity): Promise<RepositoryIdentity> {
  if (repo.unlock) {
    await repo.unlock(identity);
  } else if (identity.encryption) {
    throw new RepositoryIdentityError(
      `${repo.description} is encrypted, but the policy sets no repository.encryption.key`,
      'give the repository\'s key in repository.encryption.key (for example key: ${PGBK_REPOSITORY_KEY}); nothing was read or written',
    );
  }
  return identity;
}

/** Parses and checks the text of identity.json (checksum, format); `where` names the repository in messages. */
export function parseIdentity(body: string, where: string): RepositoryIdentity {
  let identity: RepositoryIdentity;
  try {
    identity = JSON.parse(body);
  } catch (error) {
    throw new CorruptObjectError(`the repository identity ${IDENTITY_KEY} in ${where} is not valid JSON`, undefined, {cause: error});
  }
  if (identity?.format !== IDENTITY_FORMAT || identity.checksum !== checksumOf(identity) || !/^\d+$/.test(String(identity.systemId))) {
    throw new CorruptObjectError(
      `the repository identity ${IDENTITY_KEY} in ${where} is damaged (it does not match its checksum)`,
      'restore it from a copy, or move the repository aside and run "pgbk init"; nothing was written',
    );
  }
  if (identity.formatVersion > IDENTITY_FORMAT_VERSION) {
    throw new RepositoryIdentityError(
      `${where} has repository format ${identity.formatVersion}; this pgbk reads up to ${IDENTITY_FORMAT_VERSION}`,
      'upgrade pgbk',
    );
  }
  return identity;
}

/** The identity of `repo`; a repository without one is refused (exit 2) with the way out. */
export async function requireIdentity(repo: Repository, policyName: string): Promise<RepositoryIdentity> {
  const identity = await readIdentity(repo);
  if (!identity) {
    throw new RepositoryIdentityError(
      `${repo.description} is not an initialised pgbk repository (no ${IDENTITY_KEY})`,
      `run "pgbk init --policy ${policyName}" with the server running; a repository from an earlier pgbk is adopted once every backup in it is checked to be of that server`,
    );
  }
  return identity;
}

/** Refuses a server or backup of another database system than the repository's. */
export function assertSameSystem(identity: RepositoryIdentity, systemId: string, what: string, repo: Repository): void {
  if (identity.systemId === systemId) return;
  throw new RepositoryIdentityError(
    `${what} is database system ${systemId}, but ${repo.description} belongs to database system ${identity.systemId}`,
    'each cluster needs its own repository.url; check that the policy names the right server and repository — nothing was written',
  );
}

export function serializeIdentity(identity: RepositoryIdentity): Buffer {
  return Buffer.from(`${JSON.stringify(identity, null, 2)}\n`);
}

/**
 * A copy of the repository's identity kept in the data directory (pg_wal/pgbk-spool/identity.json) by archive-push
 * for an S3 repository, so that the steady state costs no GET of identity.json per segment. It is used for at most
 * `maxAgeMs` after it was read from the repository, only for the same location, and only ever written after a
 * segment of this cluster was archived against it.
 */
export async function readCachedIdentity(spoolDir: string, location: string, now: Date, maxAgeMs = 300_000): Promise<RepositoryIdentity | undefined> {
  try {
    const cached = JSON.parse(await readFile(`${spoolDir}/identity.json`, 'utf8')) as {location?: string; savedAt?: string; identity?: RepositoryIdentity};
    const age = now.getTime() - new Date(cached.savedAt ?? 0).getTime();
    const identity = cached.identity;
    if (cached.location !== location || !(age >= 0 && age <= maxAgeMs) || !identity || identity.checksum !== checksumOf(identity)) return undefined;
    return identity;
  } catch {
    return undefined;
  }
}

export async function rememberIdentity(spoolDir: string, location: string, identity: RepositoryIdentity, now: Date): Promise<void> {
  await mkdir(spoolDir, {recursive: true, mode: 0o700});
  const temp = `${spoolDir}/.identity.json.${process.pid}.tmp`;
  await writeFile(temp, JSON.stringify({location, savedAt: now.toISOString(), identity}));
  await rename(temp, `${spoolDir}/identity.json`);
}

export async function forgetIdentity(spoolDir: string): Promise<void> {
  await rm(`${spoolDir}/identity.json`, {force: true});
}
