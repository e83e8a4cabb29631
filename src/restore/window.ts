// The recoverable window: from the oldest base backup's consistent point to the newest commit in the archive,
// cut short by the first gap in the archived WAL.

import type {BackupManifest} from '../backup/manifest.js';
import type {Repository} from '../storage/repository.js';
import {listArchived, type ArchivedWalFile} from '../wal/archive.js';
import {formatLsn} from '../wal/lsn.js';
import {DEFAULT_SEGMENT_SIZE, parseWalFileName, segmentName, segmentNumberOf, segmentStartLsn} from '../wal/name.js';
import {lastCommitInSegment, type CommitInfo} from '../wal/waldump.js';

export interface RecoverableWindow {
  /** Earliest time one can restore to (the oldest backup's consistent point). */
  earliestTime?: Date;
  earliestLsn?: string;
  /** Latest time a time target can reach: the newest commit in the archive. */
  latestTime?: Date;
  latestXid?: string;
  /** End of the last archived segment reachable without a gap. */
  latestLsn?: string;
  latestTimeline?: number;
  lastSegment?: string;
  /** The first segment missing from the archive after the newest backup started, if any. */
  gap?: {missing: string; after: string};
  archivedSegments: number;
}

export interface WindowOptions {
  binDir?: string;
  /** Read commit times with pg_waldump (fetches the last segment); off for quick listings. */
  commitTimes?: boolean;
}

export async function computeWindow(repo: Repository, backups: BackupManifest[], options: WindowOptions = {}): Promise<RecoverableWindow> {
  const base = backups.filter((backup) => backup.kind === 'base');
  const window: RecoverableWindow = {archivedSegments: 0};
  if (base.length === 0) return window;
  const oldest = base[0]!;
  const newest = base[base.length - 1]!;
  window.earliestTime = new Date(oldest.stopTime);
  window.earliestLsn = oldest.stopLsn;
  const segmentSize = newest.walSegmentSize ?? DEFAULT_SEGMENT_SIZE;

  // Walk the archive in name order (timelines ascending, then segments): the contiguous run of segments from the
  // newest backup's start, continued on later timelines, ends at the last reachable segment.
  let reachable: ArchivedWalFile | undefined;
  let previous: {timeline: number; segno: bigint} | undefined;
  const startSegno = segmentNumberOf(newest.walStart!, segmentSize);
  const startTimeline = newest.timeline ?? 1;
  const recent: ArchivedWalFile[] = [];
  for await (const file of listArchived(repo)) {
    const name = parseWalFileName(file.walFile);
    if (name.kind !== 'segment') continue;
    window.archivedSegments++;
    if (name.timeline < startTimeline || window.gap) continue;
    const segno = segmentNumberOf(file.walFile, segmentSize);
    if (name.timeline === startTimeline && segno < startSegno) continue;
    if (previous && previous.timeline === name.timeline && segno > previous.segno + 1n) {
      window.gap = {missing: nextName(file.walFile, previous.segno + 1n, segmentSize), after: reachable!.walFile};
      continue;
    }
    if (!previous && !(name.timeline === startTimeline && segno === startSegno)) {
      window.gap = {missing: newest.walStart!, after: newest.walStart!};
      continue;
    }
    // A new timeline continues from its switch point: segments from there on are on the new timeline.
    if (previous && name.timeline !== previous.timeline && segno > previous.segno + 1n) {
      window.gap = {missing: nextName(file.walFile, previous.segno + 1n, segmentSize), after: reachable!.walFile};
      continue;
    }
    previous = {timeline: name.timeline, segno};
    reachable = file;
    recent.push(file);
    if (recent.length > 4) recent.shift();
  }
  if (!reachable) return window;
  window.lastSegment = reachable.walFile;
  window.latestTimeline = parseWalFileName(reachable.walFile).timeline;
  window.latestLsn = formatLsn(segmentStartLsn(reachable.walFile, segmentSize) + BigInt(segmentSize));
  if (options.commitTimes) {
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
  return window;
}

function nextName(sameTimelineAs: string, segno: bigint, segmentSize: number): string {
  return segmentName(Number.parseInt(sameTimelineAs.slice(0, 8), 16), segno, segmentSize);
}

