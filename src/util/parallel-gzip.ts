// Compression on every core: the input is cut into blocks compressed independently (libuv's thread pool) and
// written in order — for gzip as consecutive members, one valid gzip stream (RFC 1952 allows members back to back;
// gunzip, zcat and Node's createGunzip read them all); for zstd as consecutive frames, likewise one valid zstd
// stream (zstd -d and Node's createZstdDecompress read them all). Memory: at most `parallelism` blocks in flight.

import {Transform, type TransformCallback} from 'node:stream';
import {availableParallelism} from 'node:os';
import {compressBlock, type Codec} from './codec.js';

export interface ParallelGzipOptions {
  level: number;
  /** Default gzip. */
  codec?: Codec;
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
    const promise = compressBlock(block, {codec: this.options.codec ?? 'gzip', level: this.options.level});
    promise.catch(() => undefined); // surfaced when awaited in order
    return promise;
  }
}

/** A buffer already in memory, compressed in independent members/frames side by side. */
export async function gzipBufferParallel(data: Buffer, level: number, blockBytes = 4 * 1024 * 1024, codec: Codec = 'gzip'): Promise<Buffer> {
  const compression = {codec, level};
  if (data.length <= blockBytes) return compressBlock(data, compression);
  const blocks: Array<Promise<Buffer>> = [];
  for (let offset = 0; offset < data.length; offset += blockBytes) {
    blocks.push(compressBlock(data.subarray(offset, offset + blockBytes), compression));
  }
  return Buffer.concat(await Promise.all(blocks));
}
