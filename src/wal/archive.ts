// What the repository holds of the WAL archive: lookups by file name, and listings by timeline.

import {parseWalObjectKey, walFilePrefix, WAL_PREFIX, walTimelineKey} from '../storage/layout.js';
import type {Repository} from '../storage/repository.js';
import {LONG_PAGE_HEADER_BYTES} from './page-header.js';
import {decompressor, type Codec} from '../util/codec.js';
import {ChecksumVerifier} from '../util/streams.js';
import type {Readable, Transform} from 'node:stream';

export interface ArchivedWalFile {
  walFile: string;
  sha256: string;
  key: string;
  sizeBytes: number;
  modified?: Date;
}

/** Every stored copy of one WAL file (more than one only after a split brain). */
export async function findArchived(repo: Repository, walFile: string): Promise<ArchivedWalFile[]> {
  const found: ArchivedWalFile[] = [];
  for await (const object of repo.list(walFilePrefix(walFile))) {
    const parsed = parseWalObjectKey(object.key);
    if (parsed && parsed.walFile === walFile) {
      found.push({walFile, sha256: parsed.sha256, key: object.key, sizeBytes: object.sizeBytes, modified: object.modified});
    }
  }
  return found;
}

/**
 * The stored copies of several WAL files of one or a few folders, one listing per folder (the look-ahead pusher:
 * one LIST for a batch instead of one per segment). Every name in `walFiles` gets an entry (maybe empty).
 */
export async function findArchivedMany(repo: Repository, walFiles: string[]): Promise<Map<string, ArchivedWalFile[]>> {
  const found = new Map<string, ArchivedWalFile[]>(walFiles.map((walFile) => [walFile, []]));
  const folders = new Set(walFiles.map((walFile) => walFilePrefix(walFile).slice(0, walFilePrefix(walFile).lastIndexOf('/') + 1)));
  for (const folder of folders) {
    for await (const object of repo.list(folder)) {
      const parsed = parseWalObjectKey(object.key);
      const copies = parsed && found.get(parsed.walFile);
      if (copies) copies.push({walFile: parsed.walFile, sha256: parsed.sha256, key: object.key, sizeBytes: object.sizeBytes, modified: object.modified});
    }
  }
  return found;
}

/** Archived WAL files in name order: of one timeline (8 hex digits), or of all when absent. */
export async function* listArchived(repo: Repository, timelineHex8?: string): AsyncIterable<ArchivedWalFile> {
  for await (const object of repo.list(timelineHex8 ? walTimelineKey(timelineHex8) : WAL_PREFIX)) {
    const parsed = parseWalObjectKey(object.key);
    if (parsed) yield {walFile: parsed.walFile, sha256: parsed.sha256, key: object.key, sizeBytes: object.sizeBytes, modified: object.modified};
  }
}

/** The codec an archived WAL file was stored with: its key's suffix (gzip for keys this pgbk does not parse). */
export function codecOfWalKey(key: string): Codec {
  return parseWalObjectKey(key)?.codec ?? 'gzip';
}

/**
 * An archived WAL file opened for reading, as the first stages of a pipeline: the stored object, its decompressor,
 * and a ChecksumVerifier for `sha256`, which fails the pipeline at its end when the bytes differ.
 */
export async function openVerified(repo: Repository, key: string, sha256: string): Promise<Array<Readable | Transform>> {
  const body = await repo.get(key);
  const decompress = decompressor(codecOfWalKey(key));
  const verifier = new ChecksumVerifier(sha256, key);
  return decompress ? [body, decompress, verifier] : [body, verifier];
}

/**
 * The first `bytes` bytes of an archived WAL file, uncompressed (enough for its long page header), reading only as
 * much of the object as that takes.
 */
export async function readArchivedHead(repo: Repository, copy: ArchivedWalFile, bytes = LONG_PAGE_HEADER_BYTES): Promise<Buffer> {
  const body = await repo.get(copy.key);
  const decompress = decompressor(codecOfWalKey(copy.key));
  const source = decompress ? body.pipe(decompress) : body;
  const chunks: Buffer[] = [];
  let length = 0;
  try {
    for await (const chunk of source as AsyncIterable<Buffer>) {
      chunks.push(chunk);
      length += chunk.length;
      if (length >= bytes) break;
    }
  } finally {
    body.destroy();
    source.destroy();
  }
  return Buffer.concat(chunks).subarray(0, bytes);
}
