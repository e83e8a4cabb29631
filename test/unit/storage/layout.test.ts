import {describe, expect, it} from 'vitest';
import {
  backupDirKey,
  backupIdFor,
  backupObjectKey,
  manifestKey,
  parseWalObjectKey,
  walFilePrefix,
  walObjectKey,
  walTimelineKey,
} from '../../../src/storage/layout.js';

const SHA = 'a'.repeat(60) + '0f19';
const OTHER_SHA = '0123456789abcdef'.repeat(4);

describe('WAL object keys', () => {
  it.each([
    ['000000010000000000000003', 'wal/00000001/0000000100000000/000000010000000000000003-'],
    ['0000000200000001000000FF', 'wal/00000002/0000000200000001/0000000200000001000000FF-'],
    ['000000010000000000000003.partial', 'wal/00000001/0000000100000000/000000010000000000000003.partial-'],
    ['000000010000000000000003.00000028.backup', 'wal/00000001/0000000100000000/000000010000000000000003.00000028.backup-'],
    ['00000002.history', 'wal/00000002/00000002.history-'],
  ])('%s lives under %s', (walFile, prefix) => {
    expect(walFilePrefix(walFile)).toBe(prefix);
    expect(walFilePrefix(walFile).startsWith(walTimelineKey(walFile.slice(0, 8)))).toBe(true);
    expect(walObjectKey(walFile, SHA)).toBe(`${prefix}${SHA}.gz`);
    expect(walObjectKey(walFile, SHA, 'gzip')).toBe(`${prefix}${SHA}.gz`);
    expect(walObjectKey(walFile, SHA, 'zstd')).toBe(`${prefix}${SHA}.zst`);
    expect(walObjectKey(walFile, SHA, 'none')).toBe(`${prefix}${SHA}`);
  });

  it('puts history files directly under wal/<timeline>/ and segments one folder deeper', () => {
    expect(walObjectKey('00000002.history', SHA).split('/')).toEqual(['wal', '00000002', `00000002.history-${SHA}.gz`]);
    expect(walObjectKey('000000020000000000000001', SHA).split('/')).toEqual(
      ['wal', '00000002', '0000000200000000', `000000020000000000000001-${SHA}.gz`],
    );
  });

  it.each([
    '000000010000000000000003',
    '0000000A0000000B000000FF',
    '000000010000000000000003.partial',
    '000000010000000000000003.00000028.backup',
    '00000002.history',
    '0000001A.history',
  ])('round-trips %s through walObjectKey and parseWalObjectKey', (walFile) => {
    expect(parseWalObjectKey(walObjectKey(walFile, SHA))).toEqual({walFile, sha256: SHA, codec: 'gzip'});
    expect(parseWalObjectKey(walObjectKey(walFile, SHA, 'zstd'))).toEqual({walFile, sha256: SHA, codec: 'zstd'});
    expect(walObjectKey(walFile, SHA, 'zstd').endsWith(`${SHA}.zst`)).toBe(true);
    expect(parseWalObjectKey(walObjectKey(walFile, OTHER_SHA, 'none'))).toEqual({walFile, sha256: OTHER_SHA, codec: 'none'});
  });

  it.each([
    ['a local temp file', `${walObjectKey('000000010000000000000003', SHA)}.pgbk-tmp-1234-89abcdef`],
    ['a temp file of a history file', `${walObjectKey('00000002.history', SHA, 'none')}.pgbk-tmp-1-00ff00ff`],
    ['a temp name in place of the checksum', 'wal/00000001/0000000100000000/000000010000000000000003-tmp'],
    ['a short checksum', `wal/00000001/0000000100000000/000000010000000000000003-${SHA.slice(1)}.gz`],
    ['an upper-case checksum', `wal/00000001/0000000100000000/000000010000000000000003-${SHA.toUpperCase()}.gz`],
    ['no checksum', 'wal/00000001/0000000100000000/000000010000000000000003.gz'],
    ['another suffix', `${walObjectKey('000000010000000000000003', SHA, 'none')}.lz4`],
    ['a key outside wal/', `backups/00000001/0000000100000000/000000010000000000000003-${SHA}.gz`],
    ['a timeline folder prefix', 'wal/00000001/'],
    ['a lower-case timeline folder', `wal/0000000a/0000000A00000000/0000000A0000000000000003-${SHA}.gz`],
    ['a foreign object with a checksum-like suffix', `wal/00000001/0000000100000000/notes-${SHA}`],
    ['a foreign name with dots', `wal/00000001/0000000100000000/readme.txt-${SHA}.gz`],
    ['an empty key', ''],
  ])('refuses %s', (_what, key) => {
    expect(parseWalObjectKey(key)).toBeUndefined();
  });
});

describe('backup keys', () => {
  it('lays out backups under backups/<id>/', () => {
    expect(backupDirKey('20261126T104100Z')).toBe('backups/20261126T104100Z/');
    expect(backupObjectKey('20261126T104100Z', 'base.tar.gz')).toBe('backups/20261126T104100Z/base.tar.gz');
    expect(manifestKey('20261126T104100Z')).toBe('backups/20261126T104100Z/manifest.json');
  });

  it('names a backup by its start time in UTC, to the second', () => {
    expect(backupIdFor(new Date('2026-11-26T10:41:00.000Z'))).toBe('20261126T104100Z');
    expect(backupIdFor(new Date('2026-11-26T10:41:00.999Z'))).toBe('20261126T104100Z');
    expect(backupIdFor(new Date('2026-11-26T11:41:00+01:00'))).toBe('20261126T104100Z');
    expect(backupIdFor(new Date('2027-01-02T03:04:05.678Z'))).toBe('20270102T030405Z');
  });

  it('ids sort as time', () => {
    const dates = [
      '2026-11-26T10:41:00Z', '2026-11-26T10:41:01Z', '2026-11-26T10:42:00Z', '2026-11-26T11:00:00Z',
      '2026-11-27T00:00:00Z', '2026-12-01T00:00:00Z', '2027-01-01T00:00:00Z', '2030-02-03T04:05:06Z',
    ].map((text) => new Date(text));
    const ids = dates.map(backupIdFor);
    expect(new Set(ids).size).toBe(ids.length);
    const shuffled = [...ids].reverse();
    shuffled.push(shuffled.splice(2, 1)[0]!);
    expect(shuffled.sort()).toEqual(ids);
    for (const id of ids) expect(id).toMatch(/^\d{8}T\d{6}Z$/);
  });
});
