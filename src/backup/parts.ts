// A tar stream stored as several objects: cut into pieces of at most `maxObjectBytes` stored bytes, each compressed
// on its own and uploaded as its own object (base.tar.zst, base.00002.tar.zst, ...). Decompressed and concatenated
// in order, the pieces give the tar back byte for byte. Memory: at most `concurrency` uploads in flight, each
// holding what the storage driver buffers (S3: a few 8 MiB parts), whatever the size of the backup.

import {once} from 'node:events';
import {Writable, type Transform} from 'node:stream';
import type {Repository, PutResult} from '../storage/repository.js';
import {backupObjectKey} from '../storage/layout.js';
import {codecSuffix, type Compression} from '../util/codec.js';
import {parallelCompressor} from '../util/parallel-gzip.js';
import type {BackupManifest, BackupObject} from './manifest.js';
import {CorruptObjectError} from '../errors.js';
import {streamGarbageCollector} from '../util/memory.js';

/** The name of piece `part` (1-based) of tar `tar` ("base", or a tablespace oid): base.tar.zst, base.00002.tar.zst. */
export function partName(tar: string, part: number, compression: Compression['codec']): string {
  const suffix = codecSuffix(compression);
  return part === 1 ? `${tar}.tar${suffix}` : `${tar}.${String(part).padStart(5, '0')}.tar${suffix}`;
}

/**
 * Uncompressed bytes per piece so that the stored (compressed) piece stays within `maxObjectBytes` even when the
 * data does not compress: zstd's bound is n + n/256 (+ a little), gzip members of 1 MiB add well under that.
 */
export function rawBytesPerPart(maxObjectBytes: number): number {
  return Math.max(64 * 1024, Math.floor(maxObjectBytes / 256) * 255 - 64 * 1024);
}

export interface PartedUploadOptions {
  repo: Repository;
  backupId: string;
  /** "base", or a tablespace's oid. */
  tar: string;
  compression: Compression;
  maxObjectBytes: number;
  /** Pieces uploading at once (the one being written and those finishing). */
  concurrency?: number;
}

interface Piece {
  part: number;
  name: string;
  key: string;
  compressor: Transform;
  upload: Promise<PutResult>;
}

/** A Writable taking the tar stream; after 'finish', `objects` lists the stored pieces in order. */
export class PartedUpload extends Writable {
  /** Every key a piece was started under (removed by the caller when the backup fails). */
  readonly keys: string[] = [];
  readonly objects: BackupObject[] = [];
  private readonly rawPerPart: number;
  private readonly concurrency: number;
  private current?: Piece;
  private written = 0;
  private readonly inFlight = new Set<Promise<void>>();
  private failure?: Error;
  private readonly collectGarbage = streamGarbageCollector();

  constructor(private readonly options: PartedUploadOptions) {
    super({highWaterMark: 1024 * 1024});
    this.rawPerPart = rawBytesPerPart(options.maxObjectBytes);
    this.concurrency = Math.max(1, options.concurrency ?? 2);
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.collectGarbage(chunk.length);
    this.writeChunk(chunk).then(() => callback(), (error: Error) => callback(error));
  }

  override _final(callback: (error?: Error | null) => void): void {
    (async () => {
      if (!this.current && this.objects.length === 0 && this.inFlight.size === 0) await this.startPiece();
      this.endPiece();
      while (this.inFlight.size > 0) await Promise.race(this.inFlight);
      if (this.failure) throw this.failure;
      this.objects.sort((a, b) => (a.part ?? 0) - (b.part ?? 0));
    })().then(() => callback(), (error: Error) => callback(error));
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    const reason = error ?? new Error('upload cancelled');
    this.current?.compressor.destroy(reason);
    this.current = undefined;
    // Let every upload finish failing (multipart aborted, temp file removed) before reporting.
    Promise.allSettled([...this.inFlight]).then(() => callback(error));
  }

  private async writeChunk(chunk: Buffer): Promise<void> {
    let offset = 0;
    while (offset < chunk.length) {
      if (this.failure) throw this.failure;
      if (!this.current) await this.startPiece();
      const piece = this.current!;
      const take = Math.min(chunk.length - offset, this.rawPerPart - this.written);
      const slice = chunk.subarray(offset, offset + take);
      offset += take;
      this.written += take;
      if (!piece.compressor.write(slice)) await this.drained(piece);
      if (this.written >= this.rawPerPart) this.endPiece();
    }
  }

  /** Waits for the compressor to take more; a failed upload destroys it (below), which ends the wait with its error. */
  private async drained(piece: Piece): Promise<void> {
    if (piece.compressor.destroyed) throw this.failure ?? new Error(`the upload of ${piece.key} ended early`);
    await once(piece.compressor, 'drain');
  }

  private async startPiece(): Promise<void> {
    while (this.inFlight.size >= this.concurrency) await Promise.race(this.inFlight);
    if (this.failure) throw this.failure;
    const {repo, backupId, tar, compression} = this.options;
    const part = this.keys.length + 1;
    const name = partName(tar, part, compression.codec);
    const key = backupObjectKey(backupId, name);
    const compressor = parallelCompressor(compression);
    compressor.on('error', () => undefined); // surfaced through the upload's failure
    this.keys.push(key);
    const upload = repo.put(key, compressor);
    upload.catch(() => undefined); // observed through `inFlight`
    const piece: Piece = {part, name, key, compressor, upload};
    const settled: Promise<void> = upload.then((stored) => {
      this.objects.push({name, key, sizeBytes: stored.sizeBytes, sha256: stored.sha256, compression: compression.codec, tar, part});
    }, (error: Error) => {
      this.failure ??= error;
      compressor.destroy(error);
    }).finally(() => this.inFlight.delete(settled));
    this.inFlight.add(settled);
    this.current = piece;
    this.written = 0;
  }

  private endPiece(): void {
    this.current?.compressor.end();
    this.current = undefined;
  }
}

/** The objects of a backup grouped by tar ("base", tablespace oids), each group its pieces in order. */
export function tarsOf(backup: BackupManifest): Map<string, BackupObject[]> {
  const tars = new Map<string, BackupObject[]>();
  for (const object of backup.objects) {
    const tar = object.tar ?? 'base';
    const pieces = tars.get(tar) ?? [];
    pieces.push(object);
    tars.set(tar, pieces);
  }
  for (const [tar, pieces] of tars) {
    pieces.forEach((piece, index) => {
      if ((piece.part ?? 1) !== index + 1 || (piece.part === undefined && pieces.length > 1)) {
        throw new CorruptObjectError(`backup ${backup.id}: its manifest lists the pieces of ${tar}.tar out of order (${piece.key} as piece ${index + 1})`,
          'the manifest was altered or damaged; restore another backup (pgbk list, --backup <id>)');
      }
    });
  }
  return tars;
}
