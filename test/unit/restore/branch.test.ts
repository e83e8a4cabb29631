import {describe, expect, it} from 'vitest';
import {
  backupOnBranch, branchOf, describeSegments, holeSegmentNames, parseTimelineHistory, renderTimelineTree, RunTracker, segmentOnBranch,
  timelineOfSegment, timelineTree,
} from '../../../src/restore/branch.js';

const MB16 = 16 * 1024 * 1024;

describe('parseTimelineHistory', () => {
  it('reads PostgreSQL history files', () => {
    const text = '1\t0/5000A28\tno recovery target specified\n\n2\t0/9000000\tbefore 2026-11-30 00:10:00.5+00\n';
    expect(parseTimelineHistory(text)).toEqual([
      {parent: 1, switchLsn: 0x5000a28n, reason: 'no recovery target specified'},
      {parent: 2, switchLsn: 0x9000000n, reason: 'before 2026-11-30 00:10:00.5+00'},
    ]);
    expect(parseTimelineHistory('# comment\n1\t0/3000000\n')).toEqual([{parent: 1, switchLsn: 0x3000000n, reason: ''}]);
  });

  it('refuses junk and out-of-order entries', () => {
    expect(() => parseTimelineHistory('hello')).toThrow(/not a timeline history line: "hello"/);
    expect(() => parseTimelineHistory('2\t0/5000000\tx\n1\t0/6000000\ty')).toThrow(/ascending/);
  });
});

describe('branches', () => {
  // Timeline 1 ran on; a side copy left it at 0/5000A28 (timeline 2); timeline 3 left 2 at 0/9000000.
  const tl3 = branchOf(3, parseTimelineHistory('1\t0/5000A28\tx\n2\t0/9000000\ty'));
  const tl1 = branchOf(1, []);

  it('lists each ancestor up to its fork', () => {
    expect(tl3.parts).toEqual([
      {timeline: 1, fromLsn: 0n, toLsn: 0x5000a28n},
      {timeline: 2, fromLsn: 0x5000a28n, toLsn: 0x9000000n},
      {timeline: 3, fromLsn: 0x9000000n},
    ]);
    expect(tl1.parts).toEqual([{timeline: 1, fromLsn: 0n}]);
  });

  it('reads the segment holding a fork from the child timeline', () => {
    expect(timelineOfSegment(tl3, 4n, MB16)).toBe(1);
    expect(timelineOfSegment(tl3, 5n, MB16)).toBe(2); // 0/5000A28 is inside segment 5
    expect(timelineOfSegment(tl3, 8n, MB16)).toBe(2);
    expect(timelineOfSegment(tl3, 9n, MB16)).toBe(3); // a fork at a segment boundary
    expect(segmentOnBranch(tl3, 1, 5n, MB16)).toBe(false);
    expect(segmentOnBranch(tl3, 2, 5n, MB16)).toBe(true);
    // The main line keeps its own segments past the fork; the side copy's never count on it.
    expect(segmentOnBranch(tl1, 1, 40n, MB16)).toBe(true);
    expect(segmentOnBranch(tl1, 2, 5n, MB16)).toBe(false);
  });

  it('takes a backup on an ancestor only when it ended before the fork', () => {
    expect(backupOnBranch(tl3, {timeline: 1, startLsn: '0/2000028', stopLsn: '0/2000100'})).toBe(true);
    expect(backupOnBranch(tl3, {timeline: 1, startLsn: '0/6000028', stopLsn: '0/6000100'})).toBe(false);
    expect(backupOnBranch(tl3, {timeline: 2, startLsn: '0/7000028', stopLsn: '0/7000100'})).toBe(true);
    expect(backupOnBranch(tl1, {timeline: 2, startLsn: '0/7000028', stopLsn: '0/7000100'})).toBe(false);
    expect(backupOnBranch(tl1, {timeline: 1, startLsn: '0/6000028', stopLsn: '0/6000100'})).toBe(true);
    expect(backupOnBranch(tl1, {timeline: 1})).toBe(false);
  });
});

describe('RunTracker', () => {
  it('follows the run from the start and stops at the first hole', () => {
    const tracker = new RunTracker(3n);
    for (const segno of [1n, 2n, 3n, 4n, 4n, 5n]) expect(tracker.add(segno)).toBe(true);
    expect(tracker.add(8n)).toBe(false);
    expect(tracker.run).toEqual({first: 3n, last: 5n});
    expect(tracker.hole).toEqual({first: 6n, last: 7n});
    expect(tracker.add(9n)).toBe(false);
  });

  it('reports the start segment itself missing', () => {
    const tracker = new RunTracker(3n);
    expect(tracker.add(5n)).toBe(false);
    expect(tracker.run).toBeUndefined();
    expect(tracker.hole).toEqual({first: 3n, last: 4n});
  });

  it('has no hole at the end of the archive', () => {
    const tracker = new RunTracker(3n);
    tracker.add(3n);
    tracker.add(4n);
    expect(tracker.hole).toBeUndefined();
  });
});

describe('holes along a branch', () => {
  const tl2 = branchOf(2, [{parent: 1, switchLsn: 0x5000a28n, reason: ''}]);
  it('names each missing segment on the timeline recovery reads it from', () => {
    expect(holeSegmentNames(tl2, {first: 4n, last: 6n}, MB16)).toEqual({
      names: ['000000010000000000000004', '000000020000000000000005', '000000020000000000000006'], count: 3,
    });
    expect(holeSegmentNames(tl2, {first: 4n, last: 100n}, MB16, 2)).toEqual({names: ['000000010000000000000004', '000000020000000000000005'], count: 97});
  });

  it('describes them briefly', () => {
    expect(describeSegments(['A'], 1)).toBe('A');
    expect(describeSegments(['A', 'B', 'C'], 3)).toBe('A, B and C');
    expect(describeSegments(['A', 'B'], 97)).toBe('A .. (97 segments)');
  });
});

describe('timeline tree', () => {
  it('puts each timeline under the one it left, with the fork', () => {
    const histories = new Map([
      [2, parseTimelineHistory('1\t0/5000A28\tside copy')],
      [3, parseTimelineHistory('1\t0/9000000\tfailover')],
      [4, parseTimelineHistory('1\t0/9000000\tfailover\n3\t0/B000000\tagain')],
    ]);
    const nodes = timelineTree(histories, [1, 2, 3, 4]);
    expect(renderTimelineTree(nodes)).toEqual([
      'timeline 1',
      '  └─ timeline 2: left timeline 1 at 0/5000A28',
      '  └─ timeline 3: left timeline 1 at 0/9000000',
      '    └─ timeline 4: left timeline 3 at 0/B000000',
    ]);
  });
});
