// The recoverable window along a branch, over a real (local) repository holding WAL object names: which copy of each
// segment counts, where a gap is, which backups are usable. Commit times are not read here (no pg_waldump).
import {mkdtempSync, rmSync} from 'node:fs';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import {afterEach, beforeEach, describe, expect, it} from 'vitest';
import type {BackupManifest} from '../../../src/backup/manifest.js';
import {LocalRepository} from '../../../src/storage/local/local-repository.js';
import {walObjectKey} from '../../../src/storage/layout.js';
import {branchOf, parseTimelineHistory} from '../../../src/restore/branch.js';
import {computeWindow} from '../../../src/restore/window.js';
import {scanTimelines, branchFor} from '../../../src/restore/timelines.js';
import {gzipSync} from 'node:zlib';
import {createHash} from 'node:crypto';

let dir: string;
let repo: LocalRepository;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'pgbk-window-'));
  repo = new LocalRepository(dir);
});
afterEach(() => rmSync(dir, {recursive: true, force: true}));

const seg = (timeline: number, segno: number) => `${timeline.toString(16).toUpperCase().padStart(8, '0')}00000000${segno.toString(16).toUpperCase().padStart(8, '0')}`;
async function archive(...names: string[]): Promise<void> {
  for (const name of names) await repo.put(walObjectKey(name, 'a'.repeat(64)), Buffer.from('x'));
}
async function archiveHistory(timeline: number, text: string): Promise<void> {
  const sha = createHash('sha256').update(text).digest('hex');
  await repo.put(walObjectKey(`${timeline.toString(16).toUpperCase().padStart(8, '0')}.history`, sha), gzipSync(text));
}
const backup = (id: string, timeline: number, startSegno: number, stopTime: string): BackupManifest => ({
  id, kind: 'base', timeline, startLsn: `0/${startSegno.toString(16).toUpperCase()}000028`, stopLsn: `0/${startSegno.toString(16).toUpperCase()}000100`,
  walStart: seg(timeline, startSegno), walSegmentSize: 16 * 1024 * 1024, stopTime, startTime: stopTime, systemId: '1',
}) as BackupManifest;

describe('computeWindow along a branch', () => {
  it('the main line ignores a side copy\'s timeline 2, and timeline 2 reads timeline 1 only up to its fork', async () => {
    // Timeline 1: segments 2..9. A side copy forked inside segment 5 and archived 5 and 6 on timeline 2.
    await archive(...[2, 3, 4, 5, 6, 7, 8, 9].map((n) => seg(1, n)), seg(2, 5), seg(2, 6));
    await archiveHistory(2, '1\t0/5006E50\tbefore 2026-11-30 00:54:14+00\n');
    const b1 = backup('b1', 1, 2, '2026-11-30T00:00:00Z');
    const main = await computeWindow(repo, [b1], {branch: branchOf(1, [])});
    expect(main).toMatchObject({fromBackup: 'b1', lastSegment: seg(1, 9), latestLsn: '0/A000000', latestTimeline: 1});
    expect(main.gap).toBeUndefined();
    const timelines = await scanTimelines(repo);
    expect(timelines.get(2)!.history).toEqual(parseTimelineHistory('1\t0/5006E50\tbefore 2026-11-30 00:54:14+00'));
    const side = await computeWindow(repo, [b1], {branch: branchFor(timelines, 2)});
    expect(side).toMatchObject({lastSegment: seg(2, 6), latestLsn: '0/7000000', latestTimeline: 2});
    expect(side.gap).toBeUndefined();
  });

  it('finds a gap in the middle and names the missing segments, but not the end of the archive', async () => {
    await archive(...[2, 3, 4, 7, 8].map((n) => seg(1, n)));
    const window = await computeWindow(repo, [backup('b1', 1, 2, '2026-11-30T00:00:00Z')], {branch: branchOf(1, [])});
    expect(window.lastSegment).toBe(seg(1, 4));
    expect(window.gap).toEqual({
      missing: seg(1, 5), after: seg(1, 4), missingSegments: [seg(1, 5), seg(1, 6)], missingCount: 2, resumesAt: seg(1, 7), lastReachableLsn: '0/5000000',
    });
  });

  it('a gap on a side copy\'s timeline does not cut the main line, and the reverse', async () => {
    // Timeline 2 lacks its segment 6; timeline 1 is whole.
    await archive(...[2, 3, 4, 5, 6, 7].map((n) => seg(1, n)), seg(2, 5), seg(2, 7));
    await archiveHistory(2, '1\t0/5006E50\tx\n');
    const b1 = backup('b1', 1, 2, '2026-11-30T00:00:00Z');
    expect((await computeWindow(repo, [b1], {branch: branchOf(1, [])})).gap).toBeUndefined();
    const along2 = await computeWindow(repo, [b1], {branch: branchFor(await scanTimelines(repo), 2)});
    expect(along2.gap).toMatchObject({missing: seg(2, 6), missingCount: 1, after: seg(2, 5)});
  });

  it('the fork segment comes from the child: a missing child copy is a gap even when the parent holds that number', async () => {
    await archive(...[2, 3, 4, 5, 6].map((n) => seg(1, n)), seg(2, 6));
    await archiveHistory(2, '1\t0/5006E50\tx\n');
    const window = await computeWindow(repo, [backup('b1', 1, 2, '2026-11-30T00:00:00Z')], {branch: branchFor(await scanTimelines(repo), 2)});
    expect(window.gap).toMatchObject({missing: seg(2, 5), missingSegments: [seg(2, 5)], resumesAt: seg(2, 6)});
  });

  it('leaves out backups of another branch, and walks from the newest usable one', async () => {
    await archive(...[2, 3, 4, 5, 6, 7, 8].map((n) => seg(1, n)), seg(2, 5), seg(2, 6));
    await archiveHistory(2, '1\t0/5006E50\tx\n');
    const b1 = backup('b1', 1, 2, '2026-11-30T00:00:00Z');
    const b2 = backup('b2', 1, 7, '2026-11-30T01:00:00Z'); // on timeline 1 after the fork: not on timeline 2's branch
    const along2 = await computeWindow(repo, [b1, b2], {branch: branchFor(await scanTimelines(repo), 2)});
    expect(along2).toMatchObject({fromBackup: 'b1', offBranch: ['b2'], lastSegment: seg(2, 6)});
    const along1 = await computeWindow(repo, [b1, b2], {branch: branchOf(1, [])});
    expect(along1).toMatchObject({fromBackup: 'b2', offBranch: [], lastSegment: seg(1, 8), earliestTime: new Date(b1.stopTime)});
  });

  it('reports the newest backup\'s own first segment missing', async () => {
    await archive(seg(1, 2), seg(1, 4));
    const window = await computeWindow(repo, [backup('b1', 1, 3, '2026-11-30T00:00:00Z')], {branch: branchOf(1, [])});
    expect(window.lastSegment).toBeUndefined();
    expect(window.gap).toMatchObject({missing: seg(1, 3), missingCount: 1, resumesAt: seg(1, 4)});
  });
});
