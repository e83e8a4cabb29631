import {describe, expect, it} from 'vitest';
import {WalNameError} from '../../../src/errors.js';
import {parseLsn} from '../../../src/wal/lsn.js';
import {
  DEFAULT_SEGMENT_SIZE,
  historyFileName,
  isWalFileName,
  lsnToSegmentNumber,
  parseWalFileName,
  segmentName,
  segmentNameForLsn,
  segmentNumberOf,
  segmentStartLsn,
  timelineHex,
} from '../../../src/wal/name.js';

const MiB = 1024 * 1024;
const lsn = (text: string) => {
  const value = parseLsn(text);
  if (value === undefined) throw new Error(`bad LSN in test: ${text}`);
  return value;
};

describe('parseWalFileName', () => {
  it.each([
    ['000000010000000000000001', 'segment', 1, '000000010000000000000001'],
    ['0000000A00000003000000FF', 'segment', 10, '0000000A00000003000000FF'],
    ['00000002.history', 'history', 2, undefined],
    ['FFFFFFFF.history', 'history', 0xffffffff, undefined],
    ['000000010000000000000003.partial', 'partial', 1, '000000010000000000000003'],
    ['000000010000000000000003.00000028.backup', 'backup', 1, '000000010000000000000003'],
  ] as const)('classifies %s as %s', (name, kind, timeline, segment) => {
    const parsed = parseWalFileName(name);
    expect(parsed).toEqual(segment === undefined ? {name, kind, timeline} : {name, kind, timeline, segment});
    expect(isWalFileName(name)).toBe(true);
  });

  it.each([
    ['lower case segment', '00000001000000000000000a'],
    ['lower case history', '0000000a.history'],
    ['lower case suffix', '000000010000000000000001.PARTIAL'],
    ['parent path', '../x'],
    ['parent path with a segment', '../000000010000000000000001'],
    ['absolute path', '/etc/passwd'],
    ['relative path to a segment', 'pg_wal/000000010000000000000001'],
    ['absolute path to a segment', '/000000010000000000000001'],
    ['23 digits', '00000001000000000000001'],
    ['25 digits', '0000000100000000000000011'],
    ['7-digit history', '0000002.history'],
    ['9-digit history', '000000002.history'],
    ['short backup offset', '000000010000000000000003.0000028.backup'],
    ['empty', ''],
    ['trailing newline', '000000010000000000000001\n'],
    ['leading space', ' 000000010000000000000001'],
    ['unknown suffix', '000000010000000000000001.gz'],
    ['non-hex', '00000001000000000000000G'],
  ])('refuses %s', (_what, name) => {
    expect(isWalFileName(name)).toBe(false);
    expect(() => parseWalFileName(name)).toThrow(WalNameError);
    try {
      parseWalFileName(name);
    } catch (error) {
      expect(error).toBeInstanceOf(WalNameError);
      expect((error as WalNameError).code).toBe('wal.name');
      expect((error as WalNameError).exitCode).toBe(2);
      expect((error as WalNameError).message).toBe(`not a WAL file name: "${name}"`);
    }
  });
});

describe('segment arithmetic', () => {
  it('uses 16 MiB segments by default', () => {
    expect(DEFAULT_SEGMENT_SIZE).toBe(16 * MiB);
  });

  it.each([
    // [timeline, lsn, expected segment] for 16 MiB
    [1, '0/0', '000000010000000000000000'],
    [1, '0/3000028', '000000010000000000000003'],
    [1, '0/3FFFFFF', '000000010000000000000003'],
    [1, '0/4000000', '000000010000000000000004'],
    [1, '0/FF000000', '0000000100000000000000FF'],
    [1, '0/FFFFFFFF', '0000000100000000000000FF'],
    [1, '1/0', '000000010000000100000000'],
    [1, '1/28', '000000010000000100000000'],
    [2, '16/B374D848', '0000000200000016000000B3'],
    [0x1a, 'FFFFFFFF/FFFFFFFF', '0000001AFFFFFFFF000000FF'],
  ] as const)('16 MiB: timeline %i LSN %s is in %s', (timeline, text, expected) => {
    expect(segmentNameForLsn(timeline, lsn(text))).toBe(expected);
    expect(segmentNameForLsn(timeline, lsn(text), 16 * MiB)).toBe(expected);
  });

  it('16 MiB: the segment after 0/FF000000 crosses into the next xlogid', () => {
    const last = segmentNameForLsn(1, lsn('0/FF000000'));
    expect(last).toBe('0000000100000000000000FF');
    const next = segmentName(1, segmentNumberOf(last) + 1n);
    expect(next).toBe('000000010000000100000000');
    expect(segmentStartLsn(next)).toBe(lsn('1/0'));
    expect(segmentNumberOf(next)).toBe(256n);
    expect(segmentNumberOf(last)).toBe(255n);
  });

  it.each([
    // [segment size, lsn, expected name, expected segment number]
    [1 * MiB, '0/0', '000000010000000000000000', 0n],
    [1 * MiB, '0/100000', '000000010000000000000001', 1n],
    [1 * MiB, '0/3000028', '000000010000000000000030', 0x30n],
    [1 * MiB, '0/FFF00000', '000000010000000000000FFF', 4095n],
    [1 * MiB, '1/0', '000000010000000100000000', 4096n],
    [1 * MiB, '2/00123456', '000000010000000200000001', 2n * 4096n + 1n],
    [64 * MiB, '0/3000028', '000000010000000000000000', 0n],
    [64 * MiB, '0/4000000', '000000010000000000000001', 1n],
    [64 * MiB, '0/FC000000', '00000001000000000000003F', 63n],
    [64 * MiB, '0/FFFFFFFF', '00000001000000000000003F', 63n],
    [64 * MiB, '1/0', '000000010000000100000000', 64n],
    [64 * MiB, '5/8000000', '000000010000000500000002', 5n * 64n + 2n],
    [1024 * MiB, '3/40000000', '000000010000000300000001', 13n],
  ] as const)('size %i: LSN %s is in %s (segment %s)', (size, text, expected, segno) => {
    expect(segmentNameForLsn(1, lsn(text), size)).toBe(expected);
    expect(lsnToSegmentNumber(lsn(text), size)).toBe(segno);
    expect(segmentNumberOf(expected, size)).toBe(segno);
    expect(segmentName(1, segno, size)).toBe(expected);
    const start = segmentStartLsn(expected, size);
    expect(start).toBe(segno * BigInt(size));
    expect(start <= lsn(text)).toBe(true);
    expect(lsn(text) < start + BigInt(size)).toBe(true);
  });

  it.each([1 * MiB, 16 * MiB, 64 * MiB])('size %i: the segment after the last of an xlogid starts the next one', (size) => {
    const perId = 0x100000000n / BigInt(size);
    const last = segmentName(7, perId - 1n, size);
    expect(last).toBe(`00000007000000000${(perId - 1n).toString(16).toUpperCase().padStart(7, '0')}`);
    expect(segmentName(7, perId, size)).toBe('000000070000000100000000');
    expect(segmentStartLsn('000000070000000100000000', size)).toBe(0x100000000n);
    expect(segmentStartLsn(last, size) + BigInt(size)).toBe(0x100000000n);
  });

  it('round-trips segment names and numbers', () => {
    for (const size of [1 * MiB, 16 * MiB, 64 * MiB]) {
      for (const segno of [0n, 1n, 63n, 255n, 256n, 4095n, 4096n, 123456n]) {
        const name = segmentName(3, segno, size);
        expect(name).toMatch(/^00000003[0-9A-F]{16}$/);
        expect(segmentNumberOf(name, size)).toBe(segno);
      }
    }
  });

  it('segmentStartLsn ignores the timeline', () => {
    expect(segmentStartLsn('000000050000000200000010')).toBe(lsn('2/10000000'));
    expect(segmentStartLsn('000000010000000200000010')).toBe(lsn('2/10000000'));
  });
});

describe('timeline names', () => {
  it('formats timelines as 8 upper-case hex digits', () => {
    expect(timelineHex(1)).toBe('00000001');
    expect(timelineHex(0xab)).toBe('000000AB');
    expect(historyFileName(2)).toBe('00000002.history');
    expect(historyFileName(26)).toBe('0000001A.history');
    expect(parseWalFileName(historyFileName(26)).timeline).toBe(26);
  });
});
