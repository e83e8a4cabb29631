// archive-get: fetch one WAL file for restore_command, verified against its checksum before PostgreSQL sees it.

import {createWriteStream} from 'node:fs';
import {rename, unlink} from 'node:fs/promises';
import {pipeline} from 'node:stream/promises';
import {createGunzip} from 'node:zlib';
import {randomBytes} from 'node:crypto';
import {CorruptObjectError, ObjectNotFoundError, RepositoryError, WalNotFoundError} from '../errors.js';
import type {Repository} from '../storage/repository.js';
import {ChecksumVerifier} from '../util/streams.js';
import {findArchived, type ArchivedWalFile} from './archive.js';
import {parseWalFileName} from './name.js';
import {parseWalObjectKey} from '../storage/layout.js';

export interface GetOptions {
  /** Attempts of the whole fetch (each S3 request also retries on its own). */
  attempts?: number;
  retryDelayMs?: number;
}

/**
 * Writes WAL file `walFile` to `destPath`, atomically and only when its checksum matches.
 * Rejects with WalNotFoundError when it is not archived, RepositoryError when the repository cannot be read,
 * CorruptObjectError when every stored copy is corrupt.
 */
export async function getWalFile(repo: Repository, walFile: string, destPath: string, options: GetOptions = {}): Promise<ArchivedWalFile> {
  parseWalFileName(walFile);
  const attempts = options.attempts ?? 3;
  let lastError: unknown;
  for (let attempt = 1; attempt <= attempts; attempt++) {
    try {
      const copies = await findArchived(repo, walFile);
      if (copies.length === 0) throw new WalNotFoundError(`${walFile} is not in the archive ${repo.description}`);
      if (new Set(copies.map((copy) => copy.sha256)).size > 1) {
        throw new CorruptObjectError(
          `${walFile} is archived ${copies.length} times with different content in ${repo.description}`,
          'two servers archived into one repository (split brain); decide which copy is right and remove the other',
        );
      }
      const copy = copies[0]!;
      await fetchTo(repo, copy, destPath);
      return copy;
    } catch (error) {
      // Not archived, or a local problem (disk full, permissions): retrying cannot help.
      if (error instanceof WalNotFoundError || isLocalFsError(error)) throw error;
      lastError = error;
      if (attempt < attempts) await new Promise((resolve) => setTimeout(resolve, (options.retryDelayMs ?? 500) * attempt));
    }
  }
  throw lastError;
}

async function fetchTo(repo: Repository, copy: ArchivedWalFile, destPath: string): Promise<void> {
  const temp = `${destPath}.pgbk-tmp-${randomBytes(4).toString('hex')}`;
  const compression = parseWalObjectKey(copy.key)?.compression ?? 'gz';
  try {
    const body = await repo.get(copy.key);
    const verifier = new ChecksumVerifier(copy.sha256, copy.key);
    const stages = compression === 'gz' ? [body, createGunzip(), verifier] : [body, verifier];
    await pipeline([...stages, createWriteStream(temp, {flags: 'wx', mode: 0o600})] as never);
    await rename(temp, destPath);
  } catch (error) {
    await unlink(temp).catch(() => undefined);
    if (error instanceof ObjectNotFoundError) {
      // Listed a moment ago, gone now (expired concurrently): treat as a read failure, not as "never archived".
      throw new RepositoryError(`${copy.key} vanished from ${repo.description} while being read`, undefined, {cause: error});
    }
    if (error instanceof CorruptObjectError || error instanceof RepositoryError) throw error;
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'Z_DATA_ERROR' || code === 'Z_BUF_ERROR') {
      throw new CorruptObjectError(`${copy.key} in ${repo.description} is not valid gzip data: ${(error as Error).message}`,
        'the stored object is corrupt; restore to an earlier point or from another repository', {cause: error});
    }
    if (isLocalFsError(error)) throw error;
    throw new RepositoryError(`cannot read ${copy.key} from ${repo.description}: ${(error as Error).message}`, undefined, {cause: error});
  }
}

function isLocalFsError(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException)?.code;
  return Boolean(code && ['EACCES', 'EPERM', 'ENOSPC', 'EROFS', 'EEXIST', 'ENOENT', 'EISDIR'].includes(code));
}
