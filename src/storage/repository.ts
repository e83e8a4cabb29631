// The repository contract every storage driver fulfils (local filesystem, S3 and S3-compatible services).

import type {Readable} from 'node:stream';
import type {RepositoryIdentity} from '../identity/identity.js';

export interface StoredObject {
  key: string;
  sizeBytes: number;
  /** When the object was last written, as the store reports it. */
  modified?: Date;
  /**
   * Opaque token naming this version of the object (S3: its ETag; local: inode, size and times), for
   * compare-and-swap with `put(..., {ifMatch})`. Given by stat() and put(); list() may leave it out.
   */
  version?: string;
}

export interface PutResult extends StoredObject {
  /** SHA-256 (hex) of the bytes stored, computed while they streamed through. */
  sha256: string;
  version: string;
}

export interface PutOptions {
  /** Size of the body when known in advance (lets S3 use one PUT instead of a multipart upload). */
  sizeBytes?: number;
  /** Called with the number of bytes written so far (progress display). */
  onProgress?: (bytes: number) => void;
  /**
   * '*': create only. Rejects with PreconditionFailedError, and leaves the stored object as it was, when
   * `key` exists. Atomic (two writers racing: exactly one succeeds) where conditionalWrites().createOnly.
   */
  ifNoneMatch?: '*';
  /**
   * Compare-and-swap: replace `key` only while its version is this token (from stat(), put() or
   * getVersioned()); otherwise (changed, or gone) reject with PreconditionFailedError and change nothing.
   * Atomic where conditionalWrites().compareAndSwap.
   */
  ifMatch?: string;
  /**
   * The key names its content (a checksum in the key: archived WAL). With `ifNoneMatch`, no capability check is
   * needed: a store that ignores the condition merely rewrites the same bytes. Saves the probe/record read on
   * the per-segment path; a stream body is then written unconditionally.
   */
  contentAddressed?: boolean;
}

/** What the store enforces itself, probed once per repository (see README, "Conditional writes"). */
export interface ConditionalWriteSupport {
  /** put(..., {ifNoneMatch: '*'}) is atomic: the store refuses to overwrite. */
  createOnly: boolean;
  /** put(..., {ifMatch}) is atomic: the store compares and swaps. */
  compareAndSwap: boolean;
  /** How this was learned: 'driver' (local: by construction), 'probe' (written and checked), 'record' (capabilities.json). */
  source: 'driver' | 'probe' | 'record';
}

/** An upload that never completed (S3 multipart upload, local temp file), for cleanUpIncomplete(). */
export interface IncompleteUpload {
  key: string;
  startedAt: Date;
}

/** The bucket's Object Lock configuration (S3 only). */
export interface ObjectLockStatus {
  enabled: boolean;
  /** The bucket's default retention, e.g. "GOVERNANCE 30 days", when it has one. */
  defaultRetention?: string;
}

export interface ListOptions {
  /** Only keys that sort after this one (S3 StartAfter). */
  startAfter?: string;
}

export interface Repository {
  /** Where this repository is, for messages (never holds a secret). */
  readonly description: string;
  /**
   * Stores `body` under `key`. Resolves only once the object is durable; a failed put leaves nothing
   * visible under `key` (local: temp file + fsync + rename; S3: single PUT or completed multipart upload).
   * Overwrites an existing object unless `ifNoneMatch` / `ifMatch` say otherwise; a failed condition
   * rejects with PreconditionFailedError (the body may have been read in part or whole).
   */
  put(key: string, body: Readable | Buffer, options?: PutOptions): Promise<PutResult>;
  /** Opens `key` for reading. Rejects with ObjectNotFoundError when it does not exist. */
  get(key: string): Promise<Readable>;
  /**
   * Reads a small object (lease, manifest, marker) whole, with the version token of exactly the bytes
   * read. Rejects with ObjectNotFoundError when it does not exist.
   */
  getVersioned(key: string): Promise<{body: Buffer; version: string}>;
  /** Size, time and version of `key`, or undefined when it does not exist. */
  stat(key: string): Promise<StoredObject | undefined>;
  /** Every object whose key starts with `prefix` (and sorts after `startAfter`), in key order, fetched page by page. */
  list(prefix: string, options?: ListOptions): AsyncIterable<StoredObject>;
  /** Removes the keys; a missing key is not an error. */
  remove(keys: Iterable<string>): Promise<void>;
  /**
   * Whether the store enforces ifNoneMatch / ifMatch. Learned once per repository: local says so by
   * construction; S3 probes (creates a probe key twice, expects 412 the second time; likewise a wrong
   * If-Match) and records the answer in `capabilities.json` at the repository root. Cached per instance.
   */
  conditionalWrites(): Promise<ConditionalWriteSupport>;
  /**
   * Uploads begun before `olderThan` that never completed (S3: multipart uploads; local: temp files of
   * puts that died), aborted and removed; returns what was removed. Never touches complete objects.
   */
  cleanUpIncomplete(olderThan: Date): Promise<IncompleteUpload[]>;
  /**
   * Makes the repository's root exist, for `pgbk init` only: local, creates the root directory when its parent
   * exists (never a chain of directories: a missing mount must not be papered over); S3, checks the bucket.
   * Every other method fails with RepositoryError when the root is missing, and never creates it.
   */
  create(): Promise<void>;
  /**
   * The repository's own clock, to catch a local clock that jumped (expire refuses then): S3 the `Date` header of a
   * response; a local repository the modification time of a probe file it writes and removes (the file server's clock
   * on NFS). Undefined when the store gives no time.
   */
  serverTime(): Promise<Date | undefined>;
  /**
   * Client-side encryption only (EncryptedRepository): checks the policy's key against the identity's key check
   * and the identity's MAC, and makes the key ready. readIdentity() calls it on every identity it reads; a wrong key
   * is refused (RepositoryIdentityError, exit 2) before anything is written.
   */
  unlock?(identity: RepositoryIdentity): Promise<void>;
  /** S3 only: the bucket's Object Lock configuration (GetObjectLockConfiguration), for `check`. */
  objectLock?(): Promise<ObjectLockStatus>;
  /** Releases connections (S3 sockets) so the process can exit promptly. */
  close(): Promise<void>;
}
