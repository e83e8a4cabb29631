import {describe, expect, it} from 'vitest';
import {parseBackupLabel, parseLabelTime, parseManifestWalRanges} from '../../../src/backup/label.js';

const LABEL = 'START WAL LOCATION: 0/3000028 (file 000000010000000000000003)\n'
  + 'STOP WAL LOCATION: 0/3000100 (file 000000010000000000000003)\n'
  + 'CHECKPOINT LOCATION: 0/3000060\n'
  + 'BACKUP METHOD: streamed\n'
  + 'BACKUP FROM: primary\n'
  + 'START TIME: 2026-11-26 13:02:59 UTC\n'
  + 'LABEL: test\n'
  + 'START TIMELINE: 1\n'
  + 'STOP TIME: 2026-11-26 13:02:59 UTC\n'
  + 'STOP TIMELINE: 1\n';

describe('parseBackupLabel', () => {
  it('reads a .backup history file', () => {
    expect(parseBackupLabel(LABEL)).toEqual({
      startLsn: 0x3000028n,
      checkpointLsn: 0x3000060n,
      startTimeline: 1,
      startTime: new Date('2026-11-26T13:02:59Z'),
      stopLsn: 0x3000100n,
      stopTime: new Date('2026-11-26T13:02:59Z'),
      stopTimeline: 1,
      label: 'test',
      backupFrom: 'primary',
    });
  });

  it('reads a backup_label (no stop fields), with a label containing ": " and CRLF lines', () => {
    const text = 'START WAL LOCATION: 16/B3000028 (file 0000000200000016000000B3)\r\n'
      + 'CHECKPOINT LOCATION: 16/B3000060\r\n'
      + 'BACKUP METHOD: streamed\r\nBACKUP FROM: standby\r\n'
      + 'START TIME: 2026-11-26 14:02:59 +01\r\n'
      + 'LABEL: pgbk 20261126T130259Z: nightly\r\n'
      + 'START TIMELINE: 2\r\n';
    const label = parseBackupLabel(text)!;
    expect(label.startLsn).toBe((0x16n << 32n) | 0xb3000028n);
    expect(label.checkpointLsn).toBe((0x16n << 32n) | 0xb3000060n);
    expect(label.startTimeline).toBe(2);
    expect(label.startTime?.toISOString()).toBe('2026-11-26T13:02:59.000Z');
    expect(label.label).toBe('pgbk 20261126T130259Z: nightly');
    expect(label.backupFrom).toBe('standby');
    expect(label.stopLsn).toBeUndefined();
    expect(label.stopTime).toBeUndefined();
    expect(label.stopTimeline).toBeUndefined();
  });

  it('returns undefined without a start location', () => {
    expect(parseBackupLabel('')).toBeUndefined();
    expect(parseBackupLabel('LABEL: x\nSTART TIMELINE: 1\n')).toBeUndefined();
    expect(parseBackupLabel('START WAL LOCATION: nonsense\n')).toBeUndefined();
  });
});

describe('parseLabelTime', () => {
  it.each([
    ['2026-11-26 13:02:59 UTC', '2026-11-26T13:02:59.000Z'],
    ['2026-11-26 13:02:59 GMT', '2026-11-26T13:02:59.000Z'],
    ['2026-11-26 13:02:59', '2026-11-26T13:02:59.000Z'],
    ['2026-11-26 14:02:59 +01', '2026-11-26T13:02:59.000Z'],
    ['2026-11-26 08:32:59 -04:30', '2026-11-26T13:02:59.000Z'],
    ['2026-11-26 18:32:59 +0530', '2026-11-26T13:02:59.000Z'],
  ])('%j is %s', (text, iso) => {
    expect(parseLabelTime(text)?.toISOString()).toBe(iso);
  });

  it.each([undefined, '', '2026-11-26 13:02:59 CET', '2026-11-26T13:02:59Z', 'yesterday'])('%j is unknown', (text) => {
    expect(parseLabelTime(text)).toBeUndefined();
  });
});

describe('parseManifestWalRanges', () => {
  it('reads the WAL-Ranges of a manifest tail', () => {
    const tail = '{ "Path": "global/pg_control", "Size": 8192, "Last-Modified": "2026-11-26 13:02:59 GMT", "Checksum-Algorithm": "CRC32C", "Checksum": "a1b2c3d4" }\n'
      + '],\n"WAL-Ranges": [\n{ "Timeline": 1, "Start-LSN": "0/3000028", "End-LSN": "0/3000100" }\n],\n'
      + '"Manifest-Checksum": "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}\n';
    expect(parseManifestWalRanges(tail)).toEqual([{timeline: 1, startLsn: 0x3000028n, endLsn: 0x3000100n}]);
  });

  it('reads several ranges (a backup from a standby across a timeline switch)', () => {
    const tail = '"WAL-Ranges": [\n'
      + '{ "Timeline": 2, "Start-LSN": "0/5000028", "End-LSN": "0/6000000" },\n'
      + '{ "Timeline": 3, "Start-LSN": "0/6000000", "End-LSN": "1/A0" }\n],';
    expect(parseManifestWalRanges(tail)).toEqual([
      {timeline: 2, startLsn: 0x5000028n, endLsn: 0x6000000n},
      {timeline: 3, startLsn: 0x6000000n, endLsn: 0x1_0000_00a0n},
    ]);
  });

  it('finds nothing in a tail cut before the ranges, or without them', () => {
    expect(parseManifestWalRanges('')).toEqual([]);
    expect(parseManifestWalRanges('"WAL-Ranges": [\n{ "Timeline": 1, "Start-LSN": "0/3000028", "End-L')).toEqual([]);
    expect(parseManifestWalRanges('{ "Path": "base/1/1259", "Size": 0 }')).toEqual([]);
  });
});
