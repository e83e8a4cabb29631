import {describe, expect, it} from 'vitest';
import {TargetError} from '../../../src/errors.js';
import type {BackupManifest} from '../../../src/backup/manifest.js';
import {chooseTimeline, newestTimeline, type TimelineSummary} from '../../../src/restore/timelines.js';
import {parseTimelineHistory} from '../../../src/restore/branch.js';

const backup = {id: '20261130T000000Z', kind: 'base', timeline: 1, systemId: '7400000000000000001'} as BackupManifest;
// Timeline 1 (main line, archived last at 01:00), timeline 2 (a side copy, forked at 0/5000A28, archived last at 00:30).
const timelines = new Map<number, TimelineSummary>([
  [1, {timeline: 1, segments: 9, firstSegment: '000000010000000000000001', lastSegment: '000000010000000000000009', lastArchivedAt: new Date('2026-11-30T01:00:00Z')}],
  [2, {timeline: 2, segments: 2, history: parseTimelineHistory('1\t0/5000A28\tbefore 2026-11-30 00:20:00+00'), historyArchivedAt: new Date('2026-11-30T00:25:00Z'),
    firstSegment: '000000020000000000000005', lastSegment: '000000020000000000000006', lastArchivedAt: new Date('2026-11-30T00:30:00Z')}],
]);
const server = (answer: {timeline: number; systemId: string} | Error) => ({
  url: 'postgresql://pgbk:secret@db:5432/orders',
  ask: async () => {
    if (answer instanceof Error) throw answer;
    return answer;
  },
});

describe('chooseTimeline', () => {
  it('follows the policy\'s server when it answers and is this cluster (password never shown)', async () => {
    const choice = await chooseTimeline(timelines, {catalog: [backup], server: server({timeline: 1, systemId: backup.systemId})});
    expect(choice.timeline).toBe(1);
    expect(choice.branch.parts).toEqual([{timeline: 1, fromLsn: 0n}]);
    expect(choice.reason).toBe('the policy\'s server postgresql://pgbk:***@db:5432/orders is on timeline 1');
  });

  it('falls back to the most recently archived timeline when the server is unreachable, saying why', async () => {
    const choice = await chooseTimeline(timelines, {catalog: [backup], server: server(new Error('cannot connect to postgresql://pgbk:***@db:5432/orders: connect ECONNREFUSED 127.0.0.1:5432'))});
    expect(choice.timeline).toBe(1);
    expect(choice.reason).toBe('the policy\'s server postgresql://pgbk:***@db:5432/orders is not reachable (connect ECONNREFUSED 127.0.0.1:5432); ' +
      'timeline 1 holds the most recently archived WAL (000000010000000000000009 at 2026-11-30T01:00:00.000Z)');
  });

  it('ignores a server of another cluster', async () => {
    const choice = await chooseTimeline(timelines, {catalog: [backup], server: server({timeline: 2, systemId: '999'})});
    expect(choice.timeline).toBe(1);
    expect(choice.reason).toMatch(/^the policy's server \S+ is another cluster \(system identifier 999, backups: 7400000000000000001\); timeline 1 holds/);
  });

  it('takes --target-timeline: a number (with its branch), current, latest; refuses an unknown one', async () => {
    const two = await chooseTimeline(timelines, {requested: '2', catalog: [backup], server: server({timeline: 1, systemId: backup.systemId})});
    expect(two.timeline).toBe(2);
    expect(two.branch.parts).toEqual([{timeline: 1, fromLsn: 0n, toLsn: 0x5000a28n}, {timeline: 2, fromLsn: 0x5000a28n}]);
    expect((await chooseTimeline(timelines, {requested: 'current', catalog: [backup]})).timeline).toBe(1);
    expect((await chooseTimeline(timelines, {requested: 'latest', catalog: [backup]})).reason).toMatch(/^--target-timeline latest: timeline 1 holds the most recently archived WAL/);
    await expect(chooseTimeline(timelines, {requested: '7', catalog: [backup]})).rejects.toThrow(TargetError);
    await expect(chooseTimeline(timelines, {requested: '7', catalog: [backup]})).rejects.toThrow('--target-timeline 7: the archive holds no timeline 7 (known: 1, 2)');
  });

  it('says when the chosen timeline\'s history file is missing (only that timeline is followed)', async () => {
    const choice = await chooseTimeline(timelines, {catalog: [backup], server: server({timeline: 3, systemId: backup.systemId})});
    expect(choice.timeline).toBe(3);
    expect(choice.branch.parts).toEqual([{timeline: 3, fromLsn: 0n}]);
    expect(choice.reason).toBe('the policy\'s server postgresql://pgbk:***@db:5432/orders is on timeline 3; its history file 00000003.history is not in the archive, so no ancestor of it is followed');
  });

  it('prefers the higher number when two timelines were archived at the same moment', async () => {
    const tie = new Map(timelines);
    tie.set(2, {...timelines.get(2)!, lastArchivedAt: new Date('2026-11-30T01:00:00Z')});
    expect((await chooseTimeline(tie, {catalog: [backup]})).timeline).toBe(2);
  });
});

describe('newestTimeline', () => {
  const at = (iso: string) => new Date(iso);
  // Timeline 2 forked from 1 inside segment 9 (0/9000100); 1's last complete segment is 8.
  const forked = (parentLast: string, parentAt: string): Map<number, TimelineSummary> => new Map([
    [1, {timeline: 1, segments: 8, firstSegment: '000000010000000000000001', lastSegment: parentLast, lastArchivedAt: at(parentAt)}],
    [2, {timeline: 2, segments: 2, firstSegment: '000000020000000000000009', lastSegment: '00000002000000000000000A', lastArchivedAt: at('2026-11-30T10:00:00Z'),
      history: parseTimelineHistory('1\t0/9000100\tno recovery target specified\n')}],
  ]);

  it('passes over an ancestor whose last segment arrived after the promotion but holds nothing past the fork', () => {
    expect(newestTimeline(forked('000000010000000000000008', '2026-11-30T10:00:05Z'), [1, 2]).timeline).toBe(2);
  });

  it('keeps the most recently archived rule for a parent that went on past the fork (split brain)', () => {
    expect(newestTimeline(forked('00000001000000000000000B', '2026-11-30T10:00:05Z'), [1, 2]).timeline).toBe(1);
    expect(newestTimeline(forked('00000001000000000000000B', '2026-11-30T09:59:00Z'), [1, 2]).timeline).toBe(2);
  });
});
