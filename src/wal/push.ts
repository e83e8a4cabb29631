// archive-push: check, compress, checksum and store one WAL file; exit 0 only once it is durable.

import {createReadStream} from 'node:fs';
import {open, readFile, stat} from 'node:fs/promises';
import {basename} from 'node:path';
import {pipeline} from 'node:stream/promises';
import type {Readable} from 'node:stream';
import {CorruptObjectError, PgbkError, RepositoryIdentityError, WalConflictError} from '../errors.js';
import type {RepositoryIdentity} from '../identity/identity.js';
import {parseWalObjectKey, walObjectKey} from '../storage/layout.js';
import {compressor, decompressor, isCodecDataError, type Compression} from '../util/codec.js';
import type {Repository} from '../storage/repository.js';
import {ChecksumVerifier, HashCounter, sha256Hex} from '../util/streams.js';
import {compressBuffer} from '../util/parallel-gzip.js';
import {findArchived, type ArchivedWalFile} from './archive.js';
import {parseWalFileName} from './name.js';
import {LONG_PAGE_HEADER_BYTES, segmentMismatch} from './page-header.js';

export interface PushResult {
  walFile: string;
  key: string;
  sha256: string;
  sizeBytes: number;
  storedBytes: number;
  /** True when the same content was archived already (a retry by PostgreSQL, or two nodes archiving). */
  alreadyArchived: boolean;
  /** Set when a stored copy with this content was found damaged and has been replaced: what was wrong. */
  repaired?: string;
  /** The file as it was read (device, inode, size, mtime in ns): tells a later caller it is the very same file. */
  fingerprint: string;
}

/** Device, inode, size and modification time (ns) of a file: the same string means the same, unchanged file. */
export function fileFingerprint(info: {dev: bigint; ino: bigint; size: bigint; mtimeNs: bigint}): string {
  return `${info.dev}:${info.ino}:${info.size}:${info.mtimeNs}`;
}

/** Files up to this size are read into memory once; larger ones stream (two passes). */
const MAX_BUFFERED_BYTES = 64 * 1024 * 1024;

export interface PushOptions {
  compression: Compression;
  /** The repository's identity (or its pending read): segments of another database system are refused. */
  identity: RepositoryIdentity | Promise<RepositoryIdentity>;
  /** The stored copies of this file when the caller has just listed them (the pusher lists a batch at once). */
  existing?: ArchivedWalFile[];
}

/**
 * Archives the WAL file at `walPath`. Takes every input as a parameter so that the look-ahead pusher can call it
 * for several `.ready` files at once.
 */
export async function pushWalFile(repo: Repository, walPath: string, options: PushOptions): Promise<PushResult> {
  const walFile = basename(walPath);
  const name = parseWalFileName(walFile);
  const stats = await stat(walPath, {bigint: true}).catch((error: NodeJS.ErrnoException) => {
    throw new WalFileUnreadableError(`cannot read WAL file ${walPath}: ${error.code ?? error.message}`);
  });
  const info = {size: Number(stats.size)};
  const fingerprint = fileFingerprint(stats);
  const identity = Promise.resolve(options.identity);
  identity.catch(() => undefined);
  // Look for an archived copy while the file is read, checked and compressed.
  const lookup = options.existing ? Promise.resolve(options.existing) : findArchived(repo, walFile);
  lookup.catch(() => undefined);
  const checkOwner = async (head: Buffer) => {
    if (name.kind !== 'segment' && name.kind !== 'partial') return;
    const owner = await identity;
    const mismatch = segmentMismatch(head, walFile, owner);
    if (mismatch) {
      throw new RepositoryIdentityError(
        `refusing to archive ${walFile}: ${mismatch}`,
        `${repo.description} belongs to database system ${owner.systemId}; each cluster needs its own repository.url — nothing was written`,
      );
    }
  };
  let sha256: string;
  let body: Buffer | Readable;
  if (info.size <= MAX_BUFFERED_BYTES) {
    // One read; the checksum (this thread) and gzip (libuv's pool) run side by side. Memory is bounded by the
    // segment size, whatever the number of segments.
    const data = await readFile(walPath);
    await checkOwner(data.subarray(0, LONG_PAGE_HEADER_BYTES));
    const compressed = compressBuffer(data, options.compression);
    sha256 = sha256Hex(data);
    body = await compressed;
  } else {
    // Very large segments (wal_segment_size up to 1 GB): checksum pass, then stream the compressed file.
    await checkOwner(await readHead(walPath));
    sha256 = await hashFile(walPath);
    const stream = createReadStream(walPath, {highWaterMark: 1024 * 1024});
    const compress = compressor(options.compression);
    body = compress ? stream.pipe(compress) : stream;
  }
  await identity;
  const existing = await lookup.catch((error) => {
    if (!Buffer.isBuffer(body)) body.destroy();
    throw error;
  });
  const same = existing.find((copy) => copy.sha256 === sha256);
  if (same) {
    // Confirmed, not assumed: the stored copy must read back to this content, or PostgreSQL would recycle its
    // segment while the archive keeps one that archive-get cannot serve.
    const damage = await confirmStored(repo, same);
    if (!damage) {
      if (!Buffer.isBuffer(body)) body.destroy();
      return {walFile, key: same.key, sha256, sizeBytes: info.size, storedBytes: same.sizeBytes, alreadyArchived: true, fingerprint};
    }
    const stored = await repo.put(same.key, body);
    const after = await confirmStored(repo, {...same, sizeBytes: stored.sizeBytes});
    if (after) throw new CorruptObjectError(`${same.key} in ${repo.description} still reads back damaged after replacing it: ${after}`);
    return {walFile, key: same.key, sha256, sizeBytes: info.size, storedBytes: stored.sizeBytes, alreadyArchived: false, repaired: damage, fingerprint};
  }
  if (existing.length > 0) {
    if (!Buffer.isBuffer(body)) body.destroy();
    throw new WalConflictError(
      `${walFile} is already archived in ${repo.description} with different content (sha256 ${existing[0]!.sha256}, this file ${sha256})`,
      'two servers may be archiving into one repository (split brain); only one primary may archive — nothing was overwritten',
    );
  }
  const key = walObjectKey(walFile, sha256, options.compression.codec);
  const stored = await repo.put(key, body);
  return {walFile, key, sha256, sizeBytes: info.size, storedBytes: stored.sizeBytes, alreadyArchived: false, fingerprint};
}

/** Why the stored copy does not read back to its checksum, or undefined when it does. Repository errors propagate. */
export async function confirmStored(repo: Repository, copy: ArchivedWalFile): Promise<string | undefined> {
  const body = await repo.get(copy.key);
  const verifier = new ChecksumVerifier(copy.sha256, copy.key);
  const decompress = decompressor(parseWalObjectKey(copy.key)?.codec ?? 'gzip');
  const stages: Array<NodeJS.ReadableStream | NodeJS.WritableStream> = decompress ? [body, decompress, verifier] : [body, verifier];
  try {
    await pipeline([...stages, async function* (source: AsyncIterable<Buffer>) {
      for await (const _chunk of source) { /* drain */ }
    }] as never);
    return undefined;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (error instanceof CorruptObjectError) return error.message;
    if (isCodecDataError(error) || code === 'ERR_STREAM_PREMATURE_CLOSE') return `not valid compressed data: ${(error as Error).message}`;
    throw error;
  }
}

async function readHead(path: string): Promise<Buffer> {
  const handle = await open(path, 'r');
  try {
    const head = Buffer.alloc(LONG_PAGE_HEADER_BYTES);
    const {bytesRead} = await handle.read(head, 0, head.length, 0);
    return head.subarray(0, bytesRead);
  } finally {
    await handle.close();
  }
}

async function hashFile(path: string): Promise<string> {
  const counter = new HashCounter();
  await pipeline(createReadStream(path, {highWaterMark: 1024 * 1024}), counter, async function* (source) {
    for await (const _chunk of source) { /* drain */ }
  });
  return counter.digest();
}

export class WalFileUnreadableError extends PgbkError {
  readonly code = 'wal.unreadable';
}
