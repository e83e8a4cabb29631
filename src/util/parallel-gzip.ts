// Gzip on every core: the input is cut into blocks compressed independently (libuv's thread pool) and written in
// order as consecutive gzip members — one valid gzip stream (RFC 1952 allows members back to back; gunzip, zcat and
// Node's createGunzip read them all). Memory: at most `parallelism` blocks in flight. Not for zstd: see codec.ts
// (zstd uses its own worker threads and writes one frame).

import {PassThrough, type Transform as TransformStream} from 'node:stream';

import {Transform, type TransformCallback} from 'node:stream';
import {availableParallelism} from 'node:os';
import {compressBlock, compressor, type Compression} from './codec.js';

export interface ParallelGzipOptions {
  level: number;
  blockBytes?: number;
  parallelism?: number;
}

export class ParallelGzip extends Transform {
  private readonly blockBytes: number;
  private readonly parallelism: number;
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  /** Blocks being compressed, in input order. */
  private readonly inFlight: Array<Promise<Buffer>> = [];
  private blocks = 0;

  constructor(private readonly options: ParallelGzipOptions) {
    super();
    this.blockBytes = options.blockBytes ?? 1024 * 1024;
    this.parallelism = options.parallelism ?? Math.max(2, Math.min(4, availableParallelism()));
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.pending.push(chunk);
    this.pendingBytes += chunk.length;
    if (this.pendingBytes < this.blockBytes) {
      callback();
      return;
    }
    const block = Buffer.concat(this.pending, this.pendingBytes);
    this.pending = [];
    this.pendingBytes = 0;
    this.submit(block).then(() => callback(), callback);
  }

  override _flush(callback: TransformCallback): void {
    const tail = this.pendingBytes > 0 ? Buffer.concat(this.pending, this.pendingBytes) : undefined;
    this.pending = [];
    (async () => {
      // An empty input still makes a valid (empty) gzip stream.
      if (tail || this.blocks === 0) this.inFlight.push(this.compress(tail ?? Buffer.alloc(0)));
      while (this.inFlight.length > 0) this.push(await this.inFlight.shift()!);
    })().then(() => callback(), callback);
  }

  /** Queues a block; waits (back-pressure) while `parallelism` blocks are in flight, emitting finished ones in order. */
  private async submit(block: Buffer): Promise<void> {
    this.inFlight.push(this.compress(block));
    while (this.inFlight.length >= this.parallelism) this.push(await this.inFlight.shift()!);
  }

  private compress(block: Buffer): Promise<Buffer> {
    this.blocks++;
    const promise = compressBlock(block, {codec: 'gzip', level: this.options.level});
    promise.catch(() => undefined); // surfaced when awaited in order
    return promise;
  }
}

/** A compressor for a stream: gzip members on every core, one zstd frame, or a pass-through. */
export function parallelCompressor(compression: Compression): TransformStream {
  if (compression.codec === 'gzip') return new ParallelGzip({level: compression.level});
  // One zstd stream on one core (~230 MB/s at level 1, about pg_basebackup's own pace): Node 24.21's zstd
  // compressor with worker threads (ZSTD_c_nbWorkers) ends its stream early, and frames side by side do not
  // stream back (codec.ts).
  if (compression.codec === 'zstd') return compressor(compression)!;
  return new PassThrough();
}

/** A buffer already in memory: gzip in independent members side by side; zstd in one frame; none as is. */
export async function compressBuffer(data: Buffer, compression: Compression, blockBytes = 4 * 1024 * 1024): Promise<Buffer> {
  if (compression.codec !== 'gzip' || data.length <= blockBytes) return compressBlock(data, compression);
  const blocks: Array<Promise<Buffer>> = [];
  for (let offset = 0; offset < data.length; offset += blockBytes) {
    blocks.push(compressBlock(data.subarray(offset, offset + blockBytes), compression));
  }
  return Buffer.concat(await Promise.all(blocks));
}
