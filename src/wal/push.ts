// archive-push: compress, checksum and store one WAL file; exit 0 only once it is durable.

import {createReadStream} from 'node:fs';
import {stat} from 'node:fs/promises';
import {basename} from 'node:path';
import {pipeline} from 'node:stream/promises';
import {createGzip, constants as zlibConstants} from 'node:zlib';
import {WalConflictError, PgbkError, RepositoryError} from '../errors.js';
import {walObjectKey} from '../storage/layout.js';
import type {Repository} from '../storage/repository.js';
import {HashCounter} from '../util/streams.js';
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
  // Checksum the file and look for an archived copy at the same time.
  const [sha256, existing] = await Promise.all([hashFile(walPath), findArchived(repo, walFile)]);
  const same = existing.find((copy) => copy.sha256 === sha256);
  if (same) {
    return {walFile, key: same.key, sha256, sizeBytes: info.size, storedBytes: same.sizeBytes, alreadyArchived: true};
  }
  if (existing.length > 0) {
    throw new WalConflictError(
      `${walFile} is already archived in ${repo.description} with different content (sha256 ${existing[0]!.sha256}, this file ${sha256})`,
      'two servers may be archiving into one repository (split brain), or the repository belongs to another cluster; ' +
      'give each cluster its own repository.url — nothing was overwritten',
    );
  }
  const key = walObjectKey(walFile, sha256, 'gz');
  const gzip = createGzip({level: options.compressionLevel, memLevel: 9, strategy: zlibConstants.Z_DEFAULT_STRATEGY});
  const compressed = createReadStream(walPath, {highWaterMark: 1024 * 1024}).pipe(gzip);
  const stored = await repo.put(key, compressed);
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

export {RepositoryError};
