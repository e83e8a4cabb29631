import {createHash} from 'node:crypto';
import {Readable, Writable} from 'node:stream';
import {pipeline} from 'node:stream/promises';
import {describe, expect, it, vi} from 'vitest';
import {CorruptObjectError} from '../../../src/errors.js';
import {ChecksumVerifier, HashCounter, sha256Hex} from '../../../src/util/streams.js';

const DATA = Buffer.from(Array.from({length: 100_000}, (_, index) => (index * 31) % 251));
const SHA = createHash('sha256').update(DATA).digest('hex');

function chunks(data: Buffer, size: number): Buffer[] {
  const parts: Buffer[] = [];
  for (let offset = 0; offset < data.length; offset += size) parts.push(data.subarray(offset, offset + size));
  return parts;
}

function sink(): {stream: Writable; received: () => Buffer} {
  const parts: Buffer[] = [];
  return {
    stream: new Writable({write(chunk: Buffer, _encoding, callback) { parts.push(chunk); callback(); }}),
    received: () => Buffer.concat(parts),
  };
}

describe('ChecksumVerifier', () => {
  it('passes the bytes through when the checksum matches', async () => {
    const onMismatch = vi.fn();
    const verifier = new ChecksumVerifier(SHA, 'wal/x', onMismatch);
    const out = sink();
    await pipeline(Readable.from(chunks(DATA, 4099)), verifier, out.stream);
    expect(out.received().equals(DATA)).toBe(true);
    expect(verifier.bytes).toBe(DATA.length);
    expect(onMismatch).not.toHaveBeenCalled();
  });

  it('passes an empty stream with the checksum of nothing', async () => {
    const verifier = new ChecksumVerifier(sha256Hex(Buffer.alloc(0)), 'empty');
    await pipeline(Readable.from([]), verifier, sink().stream);
    expect(verifier.bytes).toBe(0);
  });

  it('fails with CorruptObjectError and calls onMismatch when the checksum differs', async () => {
    const onMismatch = vi.fn();
    const corrupt = Buffer.from(DATA);
    corrupt[50_000] = corrupt[50_000]! ^ 1;
    const verifier = new ChecksumVerifier(SHA, 'wal/00000001/x', onMismatch);
    const error = await pipeline(Readable.from(chunks(corrupt, 8192)), verifier, sink().stream).then(() => undefined, (caught: unknown) => caught);
    expect(error).toBeInstanceOf(CorruptObjectError);
    expect((error as CorruptObjectError).code).toBe('repo.corrupt');
    expect((error as CorruptObjectError).message).toBe(
      `checksum mismatch for wal/00000001/x: expected sha256 ${SHA}, got ${sha256Hex(corrupt)}`,
    );
    expect(onMismatch).toHaveBeenCalledTimes(1);
  });

  it('fails on a truncated stream', async () => {
    const verifier = new ChecksumVerifier(SHA, 'cut');
    await expect(pipeline(Readable.from([DATA.subarray(0, 1000)]), verifier, sink().stream)).rejects.toBeInstanceOf(CorruptObjectError);
  });

  it('works without onMismatch', async () => {
    const verifier = new ChecksumVerifier('0'.repeat(64), 'x');
    await expect(pipeline(Readable.from([DATA]), verifier, sink().stream)).rejects.toThrow(/checksum mismatch for x/);
  });
});

describe('HashCounter', () => {
  it('hashes and counts what passes, reporting progress', async () => {
    const progress: number[] = [];
    const counter = new HashCounter((bytes) => progress.push(bytes));
    const out = sink();
    await pipeline(Readable.from(chunks(DATA, 30_000)), counter, out.stream);
    expect(out.received().equals(DATA)).toBe(true);
    expect(counter.bytes).toBe(DATA.length);
    expect(counter.digest()).toBe(SHA);
    expect(counter.digest()).toBe(SHA);
    expect(progress).toEqual([30_000, 60_000, 90_000, 100_000]);
    expect(sha256Hex(DATA)).toBe(SHA);
  });
});
