// archive-push: compress, checksum and store one WAL file; exit 0 only once it is durable.

import {createReadStream} from 'node:fs';
import {stat} from 'node:fs/promises';
import {basename} from 'node:path';
import {pipeline} from 'node:stream/promises';
import {createGzip} from 'node:zlib';
import {readFile} from 'node:fs/promises';
import type {Readable} from 'node:stream';
import {WalConflictError, PgbkError} from '../errors.js';
import {walObjectKey} from '../storage/layout.js';
import type {Repository} from '../storage/repository.js';
import {HashCounter, sha256Hex} from '../util/streams.js';
import {gzipBufferParallel} from '../util/parallel-gzip.js';
import {findArchived} from './archive.js';
import {parseWalFileName} from './name.js';

export interface PushResult {
  walFile: string;
  key: string;
  sha256: string;
  sizeBytes: number;
  storedBytes: number;
  /** True when the same content was archived already (a retry by PostgreSQL, or two nodes archiving). */
  alreadyArchived: boolean;
}

/** Files up to this size are read into memory once; larger ones stream (two passes). */
const MAX_BUFFERED_BYTES = 64 * 1024 * 1024;

export interface PushOptions {
  compressionLevel: number;
}

/**
 * Archives the WAL file at `walPath`. Takes every input as a parameter so that a later look-ahead mode can call
 * it for several `.ready` files at once.
 */
export async function pushWalFile(repo: Repository, walPath: string, options: PushOptions): Promise<PushResult> {
  const walFile = basename(walPath);
  parseWalFileName(walFile);
  const info = await stat(walPath).catch((error: NodeJS.ErrnoException) => {
    throw new WalFileUnreadableError(`cannot read WAL file ${walPath}: ${error.code ?? error.message}`);
  });
  // Look for an archived copy while the file is read, checksummed and compressed.
  const lookup = findArchived(repo, walFile);
  lookup.catch(() => undefined);
  let sha256: string;
  let body: Buffer | Readable;
  if (info.size <= MAX_BUFFERED_BYTES) {
    // One read; the checksum (this thread) and gzip (libuv's pool) run side by side. Memory is bounded by the
    // segment size, whatever the number of segments.
    const data = await readFile(walPath);
    const compressed = gzipBufferParallel(data, options.compressionLevel);
    sha256 = sha256Hex(data);
    body = await compressed;
  } else {
    // Very large segments (wal_segment_size up to 1 GB): checksum pass, then stream the compressed file.
    sha256 = await hashFile(walPath);
    body = createReadStream(walPath, {highWaterMark: 1024 * 1024}).pipe(createGzip({level: options.compressionLevel}));
  }
  const existing = await lookup;
  const same = existing.find((copy) => copy.sha256 === sha256);
  if (same) {
    if (!Buffer.isBuffer(body)) body.destroy();
    return {walFile, key: same.key, sha256, sizeBytes: info.size, storedBytes: same.sizeBytes, alreadyArchived: true};
  }
  if (existing.length > 0) {
    if (!Buffer.isBuffer(body)) body.destroy();
    throw new WalConflictError(
      `${walFile} is already archived in ${repo.description} with different content (sha256 ${existing[0]!.sha256}, this file ${sha256})`,
      'two servers may be archiving into one repository (split brain), or the repository belongs to another cluster; ' +
      'give each cluster its own repository.url — nothing was overwritten',
    );
  }
  const key = walObjectKey(walFile, sha256, 'gz');
  const stored = await repo.put(key, body);
  return {walFile, key, sha256, sizeBytes: info.size, storedBytes: stored.sizeBytes, alreadyArchived: false};
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

