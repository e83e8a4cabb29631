// Streamed WAL in the repository: what the receiver (pgbk wal-receive) uploads of the segment being written.
//
//   wal/<timeline>/<timeline+log>/<segment>.stream-<end>-<sha256>.zst
//
// next to the archived segments, but under a name no archive reader takes for a WAL file (parseWalObjectKey
// refuses "<segment>.stream"): archive_command stays the only writer of segment keys. <end> is the offset (8 hex
// digits) just past the last non-zero byte received, <sha256> that of the uncompressed object (the whole segment
// file as pg_receivewal keeps it: zero-padded to the segment size). The receiver keeps only the newest object per
// segment, and removes them once archive_command has archived the segment with the same content.

import {codecSuffix, decompressor, type Codec} from '../util/codec.js';
import {ChecksumVerifier} from '../util/streams.js';
import type {Readable, Transform} from 'node:stream';
import type {Repository} from '../storage/repository.js';
import {walFilePrefix, walTimelineKey} from '../storage/layout.js';

export interface StreamedWal {
  segment: string;
  /** Bytes of the segment received (offset past the last non-zero byte). */
  endOffset: number;
  sha256: string;
  codec: Codec;
  key: string;
  sizeBytes: number;
  modified?: Date;
}

const STREAM_KEY_RE = /^wal\/[0-9A-F]{8}\/[0-9A-F]{16}\/([0-9A-F]{24})\.stream-([0-9a-f]{8})-([0-9a-f]{64})(\.gz|\.zst)?$/;

/** The prefix listing every streamed object of one segment. */
export function streamedPrefix(segment: string): string {
  return `${walFilePrefix(segment).slice(0, -1)}.stream-`;
}

export function streamedKey(segment: string, endOffset: number, sha256: string, codec: Codec): string {
  return `${streamedPrefix(segment)}${endOffset.toString(16).padStart(8, '0')}-${sha256}${codecSuffix(codec)}`;
}

export function parseStreamedKey(key: string): Omit<StreamedWal, 'sizeBytes' | 'modified'> | undefined {
  const match = STREAM_KEY_RE.exec(key);
  if (!match) return undefined;
  return {segment: match[1]!, endOffset: Number.parseInt(match[2]!, 16), sha256: match[3]!, key,
    codec: match[4] === '.gz' ? 'gzip' : match[4] === '.zst' ? 'zstd' : 'none'};
}

/** The streamed objects of one segment, newest (most bytes, then latest) last. */
export async function findStreamed(repo: Repository, segment: string): Promise<StreamedWal[]> {
  const found: StreamedWal[] = [];
  for await (const object of repo.list(streamedPrefix(segment))) {
    const parsed = parseStreamedKey(object.key);
    if (parsed && parsed.segment === segment) found.push({...parsed, sizeBytes: object.sizeBytes, modified: object.modified});
  }
  return found.sort(newestLast);
}

/** The newest streamed object of a timeline at or after folder `fromFolder` (16 hex digits), if any. */
export async function newestStreamed(repo: Repository, timelineHex8: string, fromFolder?: string): Promise<StreamedWal | undefined> {
  let newest: StreamedWal | undefined;
  const prefix = walTimelineKey(timelineHex8);
  for await (const object of repo.list(prefix, fromFolder ? {startAfter: `${prefix}${fromFolder}`} : {})) {
    const parsed = parseStreamedKey(object.key);
    if (!parsed) continue;
    const entry = {...parsed, sizeBytes: object.sizeBytes, modified: object.modified};
    if (!newest || newestLast(newest, entry) < 0) newest = entry;
  }
  return newest;
}

function newestLast(a: StreamedWal, b: StreamedWal): number {
  return a.segment.localeCompare(b.segment) || a.endOffset - b.endOffset || (a.modified?.getTime() ?? 0) - (b.modified?.getTime() ?? 0);
}

/** A streamed object opened for reading: object, decompressor, checksum verifier (fails the pipeline at its end). */
export async function openStreamed(repo: Repository, streamed: Pick<StreamedWal, 'key' | 'sha256' | 'codec'>): Promise<Array<Readable | Transform>> {
  const body = await repo.get(streamed.key);
  const decompress = decompressor(streamed.codec);
  const verifier = new ChecksumVerifier(streamed.sha256, streamed.key);
  return decompress ? [body, decompress, verifier] : [body, verifier];
}

/** Offset just past the last non-zero byte, rounded up to 8: how much of a zero-padded segment file holds WAL. */
export function receivedBytes(data: Buffer): number {
  let end = data.length;
  // Whole 8-byte words first (fast on a mostly empty segment), then bytes.
  while (end >= 8 && data.readBigUInt64LE(end - 8) === 0n) end -= 8;
  while (end > 0 && data[end - 1] === 0) end--;
  // WAL records are MAXALIGNed (8 bytes): a record ending in zero bytes still ends on the next multiple of 8.
  return Math.min(data.length, Math.ceil(end / 8) * 8);
}
