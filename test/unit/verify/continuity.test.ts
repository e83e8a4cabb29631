import {describe, expect, it} from 'vitest';
import type {BackupManifest} from '../../../src/backup/manifest.js';
import {ArchiveShape, checkContinuity, parseHistory, recoveryPath} from '../../../src/verify/verify.js';
import {parseLsn} from '../../../src/wal/lsn.js';

const seg = (n: number, tli = 1) => `${tli.toString(16).toUpperCase().padStart(8, '0')}00000000${n.toString(16).toUpperCase().padStart(8, '0')}`;

function backup(id: string, start: number, stop = start, tli = 1): BackupManifest {
  return {
    formatVersion: 1, id, kind: 'base', policy: 'p', strategy: 'pitr', label: id, startTime: '2026-01-01T00:00:00Z', stopTime: '2026-01-01T00:01:00Z',
    startLsn: `0/${(start * 0x1000000 + 0x28).toString(16).toUpperCase()}`, stopLsn: `0/${(stop * 0x1000000 + 0x100).toString(16).toUpperCase()}`,
    timeline: tli, stopTimeline: tli, walStart: seg(start, tli), walStop: seg(stop, tli), walSegmentSize: 16 << 20,
    systemId: '1', pgVersionNum: 160000, sourceBytes: 1, storedBytes: 1, durationMs: 1, objects: [],
  };
}

function shape(segments: Array<[number, number]>, histories: Record<number, string> = {}): ArchiveShape {
  const archive = new ArchiveShape(16 << 20);
  for (const [tli, text] of Object.entries(histories)) archive.addHistory(Number(tli), parseHistory(text));
  for (const [tli, n] of segments) archive.addSegment(tli, BigInt(n));
  return archive;
}

const range = (from: number, to: number, tli = 1): Array<[number, number]> => Array.from({length: to - from + 1}, (_, i) => [tli, from + i]);

describe('parseHistory', () => {
  it('reads parent timelines and switch points, skipping comments and blank lines', () => {
    expect(parseHistory('1\t0/3000158\tno recovery target specified\n\n# comment\n2\t0/5000000\tbefore 2026-01-01\n')).toEqual([
      {timeline: 1, switchLsn: parseLsn('0/3000158')}, {timeline: 2, switchLsn: parseLsn('0/5000000')},
    ]);
  });
});

describe('checkContinuity', () => {
  it('finds nothing wrong in a contiguous archive', () => {
    expect(checkContinuity([backup('a', 3, 4), backup('b', 8)], shape(range(3, 12)))).toEqual([]);
  });

  it('names a segment missing inside a backup\'s consistency range', () => {
    const [problem] = checkContinuity([backup('a', 3, 5)], shape([...range(3, 3), ...range(5, 9)]));
    expect(problem).toMatchObject({kind: 'wal-missing', object: seg(4), backup: 'a'});
    expect(problem!.message).toMatch(/needs it to become consistent/);
  });

  it('names the first gap between an older backup and the end of the archive, once', () => {
    const problems = checkContinuity([backup('a', 3), backup('b', 10)], shape([...range(3, 6), ...range(8, 14)]));
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatchObject({object: seg(7), backup: 'a'});
    expect(problems[0]!.message).toMatch(new RegExp(`cannot go past ${seg(6)}`));
  });

  it('names a gap after the newest backup, and a missing start segment', () => {
    expect(checkContinuity([backup('b', 10)], shape([...range(10, 12), ...range(14, 15)])).map((p) => p.object)).toEqual([seg(13)]);
    expect(checkContinuity([backup('b', 10)], shape(range(11, 15))).map((p) => p.object)).toEqual([seg(10)]);
  });

  it('follows a timeline switch through the history file; the switch segment comes from the new timeline', () => {
    const history = {2: '1\t0/6000100\tno recovery target specified\n'};
    const archive = shape([...range(3, 6), [1, 7], ...range(6, 9, 2)], history); // timeline 1 goes on (…07) but 2 is newest
    expect(recoveryPath(backup('a', 3), archive)).toEqual([{timeline: 1, from: 3n, to: 5n}, {timeline: 2, from: 6n}]);
    expect(checkContinuity([backup('a', 3)], archive)).toEqual([]);
    const broken = shape([...range(3, 6), ...range(7, 9, 2)], history);
    expect(checkContinuity([backup('a', 3)], broken).map((p) => p.object)).toEqual([seg(6, 2)]);
  });

  it('ignores a timeline that branched off before the backup started', () => {
    const archive = shape([...range(1, 12), ...range(2, 4, 2)], {2: '1\t0/2000000\tbefore\n'});
    expect(recoveryPath(backup('a', 8), archive)).toEqual([{timeline: 1, from: 8n}]);
    expect(checkContinuity([backup('a', 8)], archive)).toEqual([]);
  });

  it('reports a later timeline with segments but no history file', () => {
    const problems = checkContinuity([backup('a', 3)], shape([...range(3, 5), ...range(5, 6, 2)]));
    expect(problems).toEqual([expect.objectContaining({kind: 'history', object: '00000002.history'})]);
  });
});
