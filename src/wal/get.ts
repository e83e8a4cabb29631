// archive-get: fetch one WAL file for restore_command, verified against its checksum before PostgreSQL sees it.

import {createWriteStream} from 'node:fs';
import {rename, stat, truncate, unlink} from 'node:fs/promises';
import {pipeline} from 'node:stream/promises';
import {randomBytes} from 'node:crypto';
import {CorruptObjectError, ForeignWalError, ObjectNotFoundError, RepositoryError, WalGapError, WalNotFoundError} from '../errors.js';
import type {Repository} from '../storage/repository.js';
import {isCodecDataError} from '../util/codec.js';
import {codecOfWalKey, openVerified, findArchived, type ArchivedWalFile} from './archive.js';
import {parseWalFileName} from './name.js';
import {parseWalObjectKey, walFilePrefix, walTimelineKey} from '../storage/layout.js';
import {parseLongPageHeader, readFileHead, segmentMismatch, type SegmentOwner} from './page-header.js';
import {findStreamed, openStreamed} from './receive-store.js';
import type {Codec} from '../util/codec.js';

export interface GetOptions {
  /** The repository's cluster: a fetched segment of another database system is refused (CorruptObjectError). */
  owner?: SegmentOwner;
  /**
   * When the file is not archived, tell the end of the archive (WalNotFoundError) from a gap (WalGapError: later
   * segments of its timeline are archived). Costs one listing, only when the file is missing.
   */
  detectGap?: boolean;
  /**
   * A segment at or past this position (any timeline) that is missing is the end of the archive, not a gap: the
   * restore put its target before a known gap, and PostgreSQL's read-ahead may still ask for what follows.
   */
  endOfArchive?: string;
  /**
   * When the segment is not archived and nothing later is archived on its timeline (the end of the archive), hand
   * over the newest streamed copy of it (pgbk wal-receive) instead, if there is one: the WAL the receiver got
   * before the server stopped. Default: detectGap (archive-get outside a standby).
   */
  streamed?: boolean;
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
      if (copies.length === 0) {
        const pastEnd = options.endOfArchive !== undefined && /^[0-9A-F]{24}$/.test(walFile) && walFile.slice(8) >= options.endOfArchive.slice(8, 24);
        const streamed = (options.streamed ?? options.detectGap) && !pastEnd && /^[0-9A-F]{24}$/.test(walFile);
        const later = (options.detectGap || streamed) && !pastEnd ? await laterOnTimeline(repo, walFile) : undefined;
        if (later && options.detectGap) {
          throw new WalGapError(
            `${walFile} is missing from the archive ${repo.description}, but later WAL of its timeline is there (${later}): a gap`,
            'recovery past a gap would stop at the wrong point; restore to a target before the gap (pgbk list shows the recoverable window), or find the missing segment (pg_wal of the old server)',
          );
        }
        if (streamed && !later) {
          const newest = (await findStreamed(repo, walFile)).at(-1);
          if (newest) {
            await fetchTo(repo, {walFile, sha256: newest.sha256, key: newest.key, sizeBytes: newest.sizeBytes}, destPath, options.owner, newest.codec);
            return {walFile, sha256: newest.sha256, key: newest.key, sizeBytes: newest.sizeBytes, modified: newest.modified};
          }
        }
        throw new WalNotFoundError(`${walFile} is not in the archive ${repo.description}`);
      }
      if (new Set(copies.map((copy) => copy.sha256)).size > 1) {
        throw new CorruptObjectError(
          `${walFile} is archived ${copies.length} times with different content in ${repo.description}`,
          'two servers archived into one repository (split brain); decide which copy is right and remove the other',
        );
      }
      const copy = copies[0]!;
      await fetchTo(repo, copy, destPath, options.owner);
      return copy;
    } catch (error) {
      // Not archived, a gap, another cluster's WAL, or a local problem (disk full, permissions): retrying cannot help.
      if (error instanceof WalNotFoundError || error instanceof WalGapError || error instanceof ForeignWalError || isLocalFsError(error)) throw error;
      lastError = error;
      if (attempt < attempts) await new Promise((resolve) => setTimeout(resolve, (options.retryDelayMs ?? 500) * attempt));
    }
  }
  throw lastError;
}

/** The first archived segment of `walFile`'s timeline after it, if any. */
async function laterOnTimeline(repo: Repository, walFile: string): Promise<string | undefined> {
  const name = parseWalFileName(walFile);
  if (name.kind !== 'segment') return undefined;
  // '~' sorts after every character of a WAL object name: start after every copy of this very segment.
  for await (const object of repo.list(walTimelineKey(walFile.slice(0, 8)), {startAfter: `${walFilePrefix(walFile)}~`})) {
    const parsed = parseWalObjectKey(object.key);
    if (parsed && /^[0-9A-F]{24}(\.partial)?$/.test(parsed.walFile) && parsed.walFile > walFile) return parsed.walFile;
  }
  return undefined;
}

/** `streamedCodec`: a streamed object (receive-store.ts), padded to its segment size after the checks. */
async function fetchTo(repo: Repository, copy: ArchivedWalFile, destPath: string, owner?: SegmentOwner, streamedCodec?: Codec): Promise<void> {
  const temp = `${destPath}.pgbk-tmp-${randomBytes(4).toString('hex')}`;
  const codec = streamedCodec ?? codecOfWalKey(copy.key);
  try {
    const stages = streamedCodec ? await openStreamed(repo, {key: copy.key, sha256: copy.sha256, codec: streamedCodec}) : await openVerified(repo, copy.key, copy.sha256);
    await pipeline([...stages, createWriteStream(temp, {flags: 'wx', mode: 0o600})] as never);
    if (owner && /^[0-9A-F]{24}(\.partial)?$/.test(copy.walFile)) await checkOwner(temp, copy, owner, repo);
    if (streamedCodec) await padToSegmentSize(temp);
    await rename(temp, destPath);
  } catch (error) {
    await unlink(temp).catch(() => undefined);
    if (error instanceof ObjectNotFoundError) {
      // Listed a moment ago, gone now (expired concurrently): treat as a read failure, not as "never archived".
      throw new RepositoryError(`${copy.key} vanished from ${repo.description} while being read`, undefined, {cause: error});
    }
    if (error instanceof CorruptObjectError || error instanceof RepositoryError || error instanceof ForeignWalError) throw error;
    if (isCodecDataError(error)) {
      throw new CorruptObjectError(`${copy.key} in ${repo.description} is not valid ${codec} data: ${(error as Error).message}`,
        'the stored object is corrupt; restore to an earlier point or from another repository', {cause: error});
    }
    if (isLocalFsError(error)) throw error;
    throw new RepositoryError(`cannot read ${copy.key} from ${repo.description}: ${(error as Error).message}`, undefined, {cause: error});
  }
}

async function checkOwner(path: string, copy: ArchivedWalFile, owner: SegmentOwner, repo: Repository): Promise<void> {
  const mismatch = segmentMismatch(await readFileHead(path), copy.walFile, owner);
  if (mismatch) {
    throw new ForeignWalError(`${copy.key} in ${repo.description} is not this cluster's WAL: ${mismatch}`,
      'another cluster archived into this repository; pgbk will not hand its WAL to PostgreSQL');
  }
}

/** A streamed segment shorter than its segment size (the header says which) is extended with zeros. */
async function padToSegmentSize(path: string): Promise<void> {
  const header = parseLongPageHeader(await readFileHead(path));
  if (header && (await stat(path)).size < header.segmentSize) await truncate(path, header.segmentSize);
}

function isLocalFsError(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException)?.code;
  return Boolean(code && ['EACCES', 'EPERM', 'ENOSPC', 'EROFS', 'EEXIST', 'ENOENT', 'EISDIR'].includes(code));
}
