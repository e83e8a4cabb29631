// The recoverable window along one branch of timelines: from the oldest base backup on the branch to the newest
// commit archived on it, cut short by the first gap (a segment missing while a later one on the branch exists).

import type {BackupManifest} from '../backup/manifest.js';
import type {Repository} from '../storage/repository.js';
import {listArchived, type ArchivedWalFile} from '../wal/archive.js';
import {formatLsn} from '../wal/lsn.js';
import {DEFAULT_SEGMENT_SIZE, parseWalFileName, segmentName, segmentNumberOf, segmentStartLsn, timelineHex} from '../wal/name.js';
import {lastCommitInSegment, type CommitInfo} from '../wal/waldump.js';
import {backupOnBranch, holeSegmentNames, RunTracker, segmentOnBranch, timelineOfSegment, type Branch} from './branch.js';

export interface WindowGap {
  /** The first missing segment. */
  missing: string;
  /** The last segment reachable before it. */
  after: string;
  /** Missing segments (at most 10 named) and how many in all. */
  missingSegments: string[];
  missingCount: number;
  /** The first segment archived after the hole. */
  resumesAt: string;
  /** End of the last reachable segment: recovery cannot go past this LSN. */
  lastReachableLsn: string;
  /** Newest commit before the gap (when commit times were read). */
  lastReachableTime?: Date;
}

export interface RecoverableWindow {
  /** The branch the window was computed along (its timeline is recovery_target_timeline). */
  branch?: Branch;
  /** The backup whose WAL the window was walked from (the newest base backup on the branch). */
  fromBackup?: string;
  /** Earliest time one can restore to (the oldest backup's consistent point on the branch). */
  earliestTime?: Date;
  earliestLsn?: string;
  /** Latest time a time target can reach: the newest commit reachable in the archive. */
  latestTime?: Date;
  latestXid?: string;
  /** End of the last archived segment reachable without a gap. */
  latestLsn?: string;
  latestTimeline?: number;
  lastSegment?: string;
  /** The first hole after the newest backup started, if any: nothing past it can be recovered. */
  gap?: WindowGap;
  /** Base backups left out: on another branch (their WAL is not on this branch's history). */
  offBranch: string[];
  /** Segments on the branch's timelines (all timelines when no branch was given). */
  archivedSegments: number;
}

export interface WindowOptions {
  binDir?: string;
  /** Read commit times with pg_waldump (fetches the last segments); off for quick listings. */
  commitTimes?: boolean;
  /** The branch to walk; default: the branch of the newest base backup's timeline, as its history file says. */
  branch?: Branch;
}

export async function computeWindow(repo: Repository, backups: BackupManifest[], options: WindowOptions = {}): Promise<RecoverableWindow> {
  const allBase = backups.filter((backup) => backup.kind === 'base');
  const branch = options.branch ?? await defaultBranch(repo, allBase);
  const base = allBase.filter((backup) => backupOnBranch(branch, backup));
  const window: RecoverableWindow = {branch, offBranch: allBase.filter((backup) => !base.includes(backup)).map((backup) => backup.id), archivedSegments: 0};
  if (base.length === 0) return window;
  const oldest = base[0]!;
  const newest = base[base.length - 1]!;
  window.fromBackup = newest.id;
  window.earliestTime = new Date(oldest.stopTime);
  window.earliestLsn = oldest.stopLsn;
  const segmentSize = newest.walSegmentSize ?? DEFAULT_SEGMENT_SIZE;

  // Walk the branch's timelines in order (ancestors have lower numbers): only the copy of each segment that
  // recovery along the branch reads counts. The run of segments from the newest backup's first one ends at the
  // last reachable segment; a later segment after a hole makes the hole a gap.
  const startSegno = segmentNumberOf(newest.walStart!, segmentSize);
  const tracker = new RunTracker(startSegno);
  const recent: ArchivedWalFile[] = [];
  let resumesAt: string | undefined;
  walk: for (const part of branch.parts) {
    for await (const file of listArchived(repo, timelineHex(part.timeline))) {
      const name = parseWalFileName(file.walFile);
      if (name.kind !== 'segment') continue;
      window.archivedSegments++;
      const segno = segmentNumberOf(file.walFile, segmentSize);
      if (!segmentOnBranch(branch, name.timeline, segno, segmentSize)) continue;
      if (!tracker.add(segno)) {
        resumesAt = file.walFile;
        break walk;
      }
      if (tracker.run?.last === segno) {
        recent.push(file);
        if (recent.length > 4) recent.shift();
      }
    }
  }
  const run = tracker.run;
  if (run) {
    window.lastSegment = segmentName(timelineOfSegment(branch, run.last, segmentSize), run.last, segmentSize);
    window.latestTimeline = timelineOfSegment(branch, run.last, segmentSize);
    window.latestLsn = formatLsn(segmentStartLsn(window.lastSegment, segmentSize) + BigInt(segmentSize));
  }
  if (tracker.hole) {
    const {names, count} = holeSegmentNames(branch, tracker.hole, segmentSize);
    window.gap = {
      missing: names[0]!, after: window.lastSegment ?? newest.walStart!, missingSegments: names, missingCount: count, resumesAt: resumesAt!,
      lastReachableLsn: window.latestLsn ?? newest.stopLsn!,
    };
  }
  if (options.commitTimes && run) {
    let commit: CommitInfo | undefined;
    for (let index = recent.length - 1; index >= 0 && !commit; index--) {
      commit = await lastCommitInSegment(repo, recent[index]!, options.binDir);
    }
    if (commit) {
      window.latestTime = commit.time;
      window.latestXid = commit.xid;
    }
  }
  // Never report a latest point before the earliest: a backup whose WAL reaches no commit yet restores to its end.
  if (window.latestTime && window.earliestTime && window.latestTime < window.earliestTime) window.latestTime = undefined;
  if (window.gap && window.latestTime) window.gap.lastReachableTime = window.latestTime;
  return window;
}

/**
 * Without a chosen branch: the timeline with the most recently archived WAL when the newest base backup is on its
 * branch (a failover continues the line), else the newest backup's own timeline.
 */
async function defaultBranch(repo: Repository, base: BackupManifest[]): Promise<Branch> {
  const {scanTimelines, branchFor, newestTimeline} = await import('./timelines.js');
  const timelines = await scanTimelines(repo);
  const newestBackup = base.at(-1);
  const newest = branchFor(timelines, newestTimeline(timelines, [...timelines.keys()]).timeline);
  if (!newestBackup || backupOnBranch(newest, newestBackup)) return newest;
  return branchFor(timelines, newestBackup.timeline ?? 1);
}
