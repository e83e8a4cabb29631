// The repository contract every storage driver fulfils (local filesystem, S3 and S3-compatible services).

import type {Readable} from 'node:stream';

export interface StoredObject {
  key: string;
  sizeBytes: number;
  /** When the object was last written, as the store reports it. */
  modified?: Date;
}

export interface PutResult extends StoredObject {
  /** SHA-256 (hex) of the bytes stored, computed while they streamed through. */
  sha256: string;
}

export interface PutOptions {
  /** Size of the body when known in advance (lets S3 use one PUT instead of a multipart upload). */
  sizeBytes?: number;
  /** Called with the number of bytes written so far (progress display). */
  onProgress?: (bytes: number) => void;
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
   * Overwrites an existing object.
   */
  put(key: string, body: Readable | Buffer, options?: PutOptions): Promise<PutResult>;
  /** Opens `key` for reading. Rejects with ObjectNotFoundError when it does not exist. */
  get(key: string): Promise<Readable>;
  /** Size and time of `key`, or undefined when it does not exist. */
  stat(key: string): Promise<StoredObject | undefined>;
  /** Every object whose key starts with `prefix` (and sorts after `startAfter`), in key order, fetched page by page. */
  list(prefix: string, options?: ListOptions): AsyncIterable<StoredObject>;
  /** Removes the keys; a missing key is not an error. */
  remove(keys: Iterable<string>): Promise<void>;
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
  /** Releases connections (S3 sockets) so the process can exit promptly. */
  close(): Promise<void>;
}
