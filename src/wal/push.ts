// archive-push: check, compress, checksum and store one WAL file; exit 0 only once it is durable.

import {createReadStream} from 'node:fs';
import {readFile, stat} from 'node:fs/promises';
import {basename} from 'node:path';
import {pipeline} from 'node:stream/promises';
import type {Readable} from 'node:stream';
import {CorruptObjectError, PgbkError, PreconditionFailedError, RepositoryIdentityError, WalConflictError} from '../errors.js';
import type {RepositoryIdentity} from '../identity/identity.js';
import {walObjectKey} from '../storage/layout.js';
import {compressor, isCodecDataError, type Compression} from '../util/codec.js';
import type {Repository} from '../storage/repository.js';
import {HashCounter, sha256Hex} from '../util/streams.js';
import {compressBuffer} from '../util/parallel-gzip.js';
import {openVerified, findArchived, type ArchivedWalFile} from './archive.js';
import {parseWalFileName} from './name.js';
import {LONG_PAGE_HEADER_BYTES, readFileHead, segmentMismatch} from './page-header.js';

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
  /** With deferConflictCheck: whether this call created the object (else it existed, and was confirmed). */
  created?: boolean;
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
  /**
   * Leave the check for another copy with other content to the caller (the pusher lists a batch's folder once
   * after writing it, then calls checkNoConflict): the result then says whether this call created the object.
   */
  deferConflictCheck?: boolean;
}

/**
 * Archives the WAL file at `walPath`. Takes every input as a parameter so that the look-ahead pusher can call it
 * for several `.ready` files at once.
 */
export async function pushWalFile(repo: Repository, walPath: string, options: PushOptions): Promise<PushResult> {
  const walFile = basename(walPath);
  const name = parseWalFileName(walFile);
  const identity = Promise.resolve(options.identity);
  identity.catch(() => undefined); // awaited below, before anything is written
  const stats = await stat(walPath, {bigint: true}).catch((error: NodeJS.ErrnoException) => {
    throw new WalFileUnreadableError(`cannot read WAL file ${walPath}: ${error.code ?? error.message}`);
  });
  const info = {size: Number(stats.size)};
  const fingerprint = fileFingerprint(stats);
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
    // One read; the checksum (this thread) and compression (libuv's pool) run side by side. Memory is bounded by
    // the segment size, whatever the number of segments.
    const data = await readFile(walPath);
    await checkOwner(data.subarray(0, LONG_PAGE_HEADER_BYTES));
    const compressed = compressBuffer(data, options.compression);
    sha256 = sha256Hex(data);
    body = await compressed;
  } else {
    // Very large segments (wal_segment_size up to 1 GB): checksum pass, then stream the compressed file.
    await checkOwner(await readFileHead(walPath));
    sha256 = await hashFile(walPath);
    const stream = createReadStream(walPath, {highWaterMark: 1024 * 1024});
    const compress = compressor(options.compression);
    body = compress ? stream.pipe(compress) : stream;
  }
  await identity;
  // The key names the content, so the write comes first and needs no listing: create-only where the store
  // enforces it (an existing copy is then confirmed by reading it back); elsewhere the same bytes again.
  const key = walObjectKey(walFile, sha256, options.compression.codec);
  let created = true;
  let repaired: string | undefined;
  let storedBytes: number;
  try {
    storedBytes = (await repo.put(key, body, {ifNoneMatch: '*', contentAddressed: true})).sizeBytes;
  } catch (error) {
    if (!(error instanceof PreconditionFailedError) || !Buffer.isBuffer(body)) throw error;
    created = false;
    // Confirmed, not assumed: the stored copy must read back to this content, or PostgreSQL would recycle its
    // segment while the archive keeps one that archive-get cannot serve.
    const copy = {walFile, sha256, key, sizeBytes: body.length};
    repaired = await confirmStored(repo, copy);
    storedBytes = body.length;
    if (repaired) {
      await repo.put(key, body);
      const after = await confirmStored(repo, copy);
      if (after) throw new CorruptObjectError(`${key} in ${repo.description} still reads back damaged after replacing it: ${after}`);
    }
  }
  const result: PushResult = {walFile, key, sha256, sizeBytes: info.size, storedBytes, alreadyArchived: !created && !repaired, fingerprint,
    ...(repaired ? {repaired} : {})};
  if (options.deferConflictCheck) return {...result, created};
  await checkNoConflict(repo, result, created, await findArchived(repo, walFile));
  return result;
}

/**
 * After the write: another copy of the file with other content means two servers archive into one repository
 * (split brain), or raced to. The one that sees the other gives way: it removes the copy it created itself and
 * fails loudly, so at most one content is ever acknowledged (both may fail; PostgreSQL retries).
 */
export async function checkNoConflict(repo: Repository, result: PushResult, created: boolean, copies: ArchivedWalFile[]): Promise<void> {
  const others = copies.filter((copy) => copy.walFile === result.walFile && copy.sha256 !== result.sha256);
  if (others.length === 0) return;
  if (created) await repo.remove([result.key]);
  throw new WalConflictError(
    `${result.walFile} is already archived in ${repo.description} with different content (sha256 ${others[0]!.sha256}, this file ${result.sha256})`,
    'two servers may be archiving into one repository (split brain); only one primary may archive — nothing was overwritten',
  );
}

/** Why the stored copy does not read back to its checksum, or undefined when it does. Repository errors propagate. */
export async function confirmStored(repo: Repository, copy: ArchivedWalFile): Promise<string | undefined> {
  const stages = await openVerified(repo, copy.key, copy.sha256);
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
