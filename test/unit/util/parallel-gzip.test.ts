import {createHash, randomBytes} from 'node:crypto';
import {Readable} from 'node:stream';
import {pipeline} from 'node:stream/promises';
import {createGunzip, gunzipSync} from 'node:zlib';
import {describe, expect, it} from 'vitest';
import {compressBuffer, ParallelGzip, parallelCompressor} from '../../../src/util/parallel-gzip.js';
import {decompressor, ZSTD_AVAILABLE} from '../../../src/util/codec.js';

const sha = (data: Buffer) => createHash('sha256').update(data).digest('hex');

describe('ParallelGzip', () => {
  it.each([
    ['empty input', [] as Buffer[], 1024],
    ['smaller than a block', [Buffer.from('hello')], 1024],
    ['exactly one block', [Buffer.alloc(1024, 1)], 1024],
    ['many uneven chunks', Array.from({length: 40}, (_, index) => (index % 3 ? Buffer.alloc(777 + index, index) : randomBytes(1500))), 1024],
  ])('%s: output gunzips (all members) to the input', async (_name, chunks, blockBytes) => {
    const input = Buffer.concat(chunks);
    const output: Buffer[] = [];
    await pipeline(Readable.from(chunks), new ParallelGzip({level: 1, blockBytes, parallelism: 3}), async function* (source) {
      for await (const chunk of source) output.push(chunk as Buffer);
    });
    const compressed = Buffer.concat(output);
    expect(sha(gunzipSync(compressed))).toBe(sha(input));
    const streamed: Buffer[] = [];
    await pipeline(Readable.from([compressed]), createGunzip(), async function* (source) {
      for await (const chunk of source) streamed.push(chunk as Buffer);
    });
    expect(sha(Buffer.concat(streamed))).toBe(sha(input));
  });

  it('keeps block order however long each block takes to compress', async () => {
    // Incompressible blocks take longer than zero blocks: order must still be the input's.
    const chunks = Array.from({length: 12}, (_, index) => (index % 2 ? randomBytes(64 * 1024) : Buffer.alloc(64 * 1024, index)));
    const output: Buffer[] = [];
    await pipeline(Readable.from(chunks), new ParallelGzip({level: 6, blockBytes: 64 * 1024, parallelism: 4}), async function* (source) {
      for await (const chunk of source) output.push(chunk as Buffer);
    });
    expect(sha(gunzipSync(Buffer.concat(output)))).toBe(sha(Buffer.concat(chunks)));
  });

  it('propagates an error of the source', async () => {
    const source = new Readable({read() {
      this.push(Buffer.alloc(10));
      this.destroy(new Error('source broke'));
    }});
    await expect(pipeline(source, new ParallelGzip({level: 1, blockBytes: 4}), async function* (s) {
      for await (const _chunk of s) { /* drain */ }
    })).rejects.toThrow('source broke');
  });
});

describe('compressBuffer (gzip)', () => {
  it.each([0, 1, 4096, 4097, 3 * 4096 + 5])('round-trips %i bytes', async (size) => {
    const input = randomBytes(size);
    expect(sha(gunzipSync(await compressBuffer(input, {codec: 'gzip', level: 1}, 4096)))).toBe(sha(input));
  });
});

/** Feeds `data` to the codec's streaming decompressor in chunks of `chunk` bytes; the bytes that come out. */
async function streamDecompress(codec: 'zstd' | 'gzip', data: Buffer, chunk: number): Promise<Buffer> {
  const parts: Buffer[] = [];
  for (let offset = 0; offset < data.length; offset += chunk) parts.push(data.subarray(offset, offset + chunk));
  const out: Buffer[] = [];
  await pipeline(Readable.from(parts), decompressor(codec)!, async function* (source: AsyncIterable<Buffer>) {
    for await (const piece of source) out.push(piece);
  });
  return Buffer.concat(out);
}

// Node's streaming zstd decompressor loses data after a frame boundary inside a chunk: pgbk writes one frame.
describe.runIf(ZSTD_AVAILABLE)('zstd output is one frame that streams back whole, however it is chunked', () => {
  const input = Buffer.concat([randomBytes(3 * 1024 * 1024), Buffer.from('row-like text '.repeat(400_000))]);

  it('a buffer (WAL segment)', async () => {
    const compressed = await compressBuffer(input, {codec: 'zstd', level: 1}, 4096);
    for (const chunk of [4099, 65_537, 1024 * 1024]) expect(sha(await streamDecompress('zstd', compressed, chunk))).toBe(sha(input));
  });

  it('a stream (base backup)', async () => {
    const out: Buffer[] = [];
    await pipeline(Readable.from([input.subarray(0, 1_000_001), input.subarray(1_000_001)]), parallelCompressor({codec: 'zstd', level: 1}),
      async function* (source: AsyncIterable<Buffer>) { for await (const piece of source) out.push(piece); });
    const compressed = Buffer.concat(out);
    for (const chunk of [4099, 65_537]) expect(sha(await streamDecompress('zstd', compressed, chunk))).toBe(sha(input));
  });
});
