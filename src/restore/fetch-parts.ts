// The pieces of one tar (base.tar.zst, base.00002.tar.zst, ...), fetched, checked against the manifest and
// decompressed up to `concurrency` at once, handed on strictly in order. Memory is bounded whatever the size of
// the backup: each piece ahead of the one being unpacked holds at most about 2 × `bufferBytes` decompressed bytes
// before its download is paused (back-pressure), so at most `concurrency` × that is held.

import {PassThrough, type Readable} from 'node:stream';
import {pipeline} from 'node:stream/promises';
import {CorruptObjectError, ObjectNotFoundError} from '../errors.js';
import type {Repository} from '../storage/repository.js';
import type {BackupObject} from '../backup/manifest.js';
import {decompressor, isCodecDataError} from '../util/codec.js';
import {ChecksumVerifier} from '../util/streams.js';

export interface PartStreamOptions {
  /** Pieces fetched at once (the one being unpacked included). */
  concurrency?: number;
  /** Decompressed bytes buffered per piece ahead. */
  bufferBytes?: number;
  /** Called as each piece is fully read and verified, with its stored bytes. */
  onPartDone?: (object: BackupObject, storedBytes: number) => void;
  /** Called as stored bytes of the piece being handed on arrive, with its count so far. */
  onStoredBytes?: (bytes: number) => void;
  /** Called as a piece starts being handed on. */
  onPartStart?: (object: BackupObject) => void;
}

interface OpenPart {
  object: BackupObject;
  body?: Readable;
  out: PassThrough;
  /** Resolves with the stored bytes once the piece passed whole and verified (size and SHA-256). */
  done: Promise<number>;
  /** Set as soon as `done` rejects. */
  failed?: Error;
}

function openPart(repo: Repository, object: BackupObject, bufferBytes: number): OpenPart & {verifier?: ChecksumVerifier} {
  const out = new PassThrough({highWaterMark: bufferBytes});
  out.on('error', () => undefined); // a piece ahead fails unread: its reason is `done`'s, given when its turn comes
  const part: OpenPart & {verifier?: ChecksumVerifier} = {object, out, done: Promise.resolve(0)};
  part.done = (async () => {
    const body = await repo.get(object.key);
    part.body = body;
    const verifier = new ChecksumVerifier(object.sha256, object.key);
    part.verifier = verifier;
    // Chunks of 128 KiB: fewer, larger writes than zlib's 16 KiB default (the unpack writes each chunk as it comes).
    const decompress = decompressor(object.compression, {chunkSize: 128 * 1024});
    try {
      await pipeline(decompress ? [body, verifier, decompress, out] : [body, verifier, out] as never);
    } catch (error) {
      throw partError(object, error);
    }
    if (verifier.bytes !== object.sizeBytes) {
      throw new CorruptObjectError(`backup object ${object.key} is damaged: ${verifier.bytes} bytes stored, the manifest says ${object.sizeBytes}`, HINT);
    }
    return verifier.bytes;
  })();
  part.done.catch((error: Error) => {
    part.failed = error;
    out.destroy(error);
  });
  return part;
}

const HINT = 'the stored backup is damaged; restore from another backup (pgbk list, --backup <id>) and run pgbk verify';

export function partError(object: BackupObject, error: unknown): Error {
  if (error instanceof CorruptObjectError || error instanceof ObjectNotFoundError) return error;
  if (isCodecDataError(error)) {
    return new CorruptObjectError(`backup object ${object.key} is not valid ${object.compression} data: ${(error as Error).message}`, HINT);
  }
  return error as Error;
}

/** The decompressed bytes of `objects`, in order, with up to `concurrency` pieces fetched at once. */
export async function* concatenatedParts(repo: Repository, objects: BackupObject[], options: PartStreamOptions = {}): AsyncGenerator<Buffer> {
  const concurrency = Math.max(1, options.concurrency ?? 3);
  const bufferBytes = options.bufferBytes ?? 1024 * 1024;
  const opened: Array<(OpenPart & {verifier?: ChecksumVerifier}) | undefined> = [];
  let next = 0;
  try {
    for (let index = 0; index < objects.length; index++) {
      while (next < objects.length && next < index + concurrency) opened[next] = openPart(repo, objects[next]!, bufferBytes), next++;
      let part = opened[index]!;
      // A piece fetched ahead waits, paused, for its turn; if its connection broke meanwhile (a store's idle
      // timeout, a reset), nothing of it has been handed on yet: fetch it again from the start.
      if (part.failed && !(part.failed instanceof CorruptObjectError || part.failed instanceof ObjectNotFoundError) && !isCodecDataError(part.failed)) {
        part.body?.destroy();
        part = opened[index] = openPart(repo, objects[index]!, bufferBytes);
      }
      options.onPartStart?.(part.object);
      try {
        for await (const chunk of part.out) {
          if (part.verifier) options.onStoredBytes?.(part.verifier.bytes);
          yield chunk as Buffer;
        }
      } catch (error) {
        // The stream broke: the reason is the piece's own failure (missing, damaged, not valid data).
        throw await part.done.then(() => partError(part.object, error), (reason: Error) => reason);
      }
      options.onPartDone?.(part.object, await part.done);
      opened[index] = undefined;
    }
  } finally {
    for (const part of opened) {
      if (!part) continue;
      part.done.catch(() => undefined);
      part.body?.destroy();
      part.out.destroy();
    }
  }
}
