// Compression codecs: zstd (default where the runtime has it: Node >= 22.15), gzip, none. Every stored object
// records its codec (the key's suffix for WAL, the manifest for backup objects), so older objects stay readable
// whatever the policy says today.

import zlib from 'node:zlib';
import {promisify} from 'node:util';
import type {Transform} from 'node:stream';
import {PolicyError} from '../errors.js';

export type Codec = 'zstd' | 'gzip' | 'none';

export interface Compression {
  codec: Codec;
  level: number;
}

/** Whether this Node.js has zstd in node:zlib. */
export const ZSTD_AVAILABLE = typeof (zlib as {zstdCompress?: unknown}).zstdCompress === 'function';

export const LEVELS: Record<Codec, {min: number; max: number; default: number}> = {
  zstd: {min: 1, max: 19, default: 1},
  gzip: {min: 1, max: 9, default: 1},
  none: {min: 0, max: 0, default: 0},
};

/** The default: zstd level 1 (about 5× faster than gzip -1 at a similar ratio), gzip -1 on an older Node.js. */
export function defaultCompression(): Compression {
  return ZSTD_AVAILABLE ? {codec: 'zstd', level: 1} : {codec: 'gzip', level: 1};
}

/** Refuses a codec this runtime cannot write (zstd before Node 22.15). */
export function assertWritable(codec: Codec, where: string): void {
  if (codec === 'zstd' && !ZSTD_AVAILABLE) {
    throw new PolicyError(`${where}: zstd needs Node.js 22.15 or later (this is ${process.version})`, 'upgrade Node.js (pgbk targets Node 24 LTS), or choose codec: gzip');
  }
}

/** ZSTD_c_compressionLevel (100 in zstd.h). */
const ZSTD_LEVEL_PARAM = (zlib.constants as unknown as Record<string, number>).ZSTD_c_compressionLevel ?? 100;
const gzipAsync = promisify(zlib.gzip);
const zstdAsync = ZSTD_AVAILABLE ? promisify((zlib as unknown as {zstdCompress: typeof zlib.gzip}).zstdCompress) : undefined;

/** Compresses one block (libuv's thread pool) into one gzip member or one zstd frame. */
export function compressBlock(block: Buffer, compression: Compression): Promise<Buffer> {
  switch (compression.codec) {
    case 'gzip':
      return gzipAsync(block, {level: compression.level});
    case 'zstd':
      assertWritable('zstd', 'compression.codec');
      return zstdAsync!(block, {params: {[ZSTD_LEVEL_PARAM]: compression.level}} as zlib.ZlibOptions);
    case 'none':
      return Promise.resolve(block);
  }
}

/**
 * A streaming compressor (for inputs too large to hold), or undefined for none. zstd output is always ONE frame:
 * Node's streaming zstd decompressor (v24.21) silently drops or rejects data after a frame boundary that does
 * not fall on a chunk boundary, so pgbk never writes multi-frame zstd. Nor does it use zstd's own worker threads
 * (ZSTD_c_nbWorkers): in Node 24.21 such a stream ends before its last bytes.
 */
export function compressor(compression: Compression): Transform | undefined {
  switch (compression.codec) {
    case 'gzip':
      return zlib.createGzip({level: compression.level});
    case 'zstd':
      assertWritable('zstd', 'compression.codec');
      return (zlib as unknown as {createZstdCompress(options: unknown): Transform}).createZstdCompress({
        params: {[ZSTD_LEVEL_PARAM]: compression.level},
      });
    case 'none':
      return undefined;
  }
}

/** A streaming decompressor for a stored codec, or undefined for none; `chunkSize`: bytes per output chunk. */
export function decompressor(codec: Codec, options: {chunkSize?: number} = {}): Transform | undefined {
  switch (codec) {
    case 'gzip':
      return zlib.createGunzip(options);
    case 'zstd':
      if (!ZSTD_AVAILABLE) {
        throw new PolicyError(`this object is zstd-compressed, which needs Node.js 22.15 or later (this is ${process.version})`, 'run pgbk with Node.js 24');
      }
      return (zlib as unknown as {createZstdDecompress(options: unknown): Transform}).createZstdDecompress(options);
    case 'none':
      return undefined;
  }
}

/** True for the errors a decompressor raises on damaged or truncated input. */
export function isCodecDataError(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException)?.code ?? '';
  return code === 'Z_DATA_ERROR' || code === 'Z_BUF_ERROR' || code.startsWith('ZSTD_error');
}

/** File-name suffix of a codec: base.tar.zst, base.tar.gz, dump.pgdump. */
export function codecSuffix(codec: Codec): string {
  return {zstd: '.zst', gzip: '.gz', none: ''}[codec];
}
