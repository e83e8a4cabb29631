// Restore planning (pure): which backup, which WAL, and whether the target can be reached at all.

import {NothingToRestoreError, TargetError} from '../errors.js';
import type {BackupManifest} from '../backup/manifest.js';
import {parseLsn} from '../wal/lsn.js';
import type {RecoverableWindow, WindowGap} from './window.js';
import {backupOnBranch, describeSegments} from './branch.js';
import {describeTarget, type Target} from './target.js';

export interface RestorePlan {
  backup: BackupManifest;
  target: Target;
  /** Bytes to fetch for the backup itself (WAL comes on demand through restore_command). */
  fetchBytes: number;
  /** First WAL segment recovery needs; recovery then reads forward to the target. */
  walFrom: string;
  /** Last segment known to be reachable (undefined when the window was not computed). */
  walTo?: string;
  /** recovery_target_timeline: the branch's timeline (undefined when no branch was chosen). */
  timeline?: number;
  /** Things the operator should know that do not stop the restore (printed on stderr). */
  warnings: string[];
  /**
   * The first missing segment of a gap that lies after the target: recovery never needs it, but PostgreSQL's
   * read-ahead may ask for it, and archive-get must then answer "end of the archive" (1), not "gap" (126).
   */
  endOfArchive?: string;
}

export interface PlanOptions {
  backupId?: string;
  window: RecoverableWindow;
}

const MASK32 = 0xffffffffn;

/** The newest backup that finished before the target, and checks that the archive reaches the target. */
export function planRestore(catalog: BackupManifest[], target: Target, options: PlanOptions): RestorePlan {
  const allBase = catalog.filter((backup) => backup.kind === 'base');
  if (allBase.length === 0) {
    throw new NothingToRestoreError('the repository holds no base backup', 'take one with "pgbk backup" (pgbk list shows what is stored)');
  }
  const branch = options.window.branch;
  // Only backups on the branch can start a recovery along it (PostgreSQL refuses a timeline that forked before them).
  const base = branch ? allBase.filter((backup) => backupOnBranch(branch, backup)) : allBase;
  if (options.backupId && branch && !base.some((candidate) => candidate.id === options.backupId)) {
    const named = allBase.find((candidate) => candidate.id === options.backupId);
    if (named) {
      throw new TargetError(`backup ${named.id} (timeline ${named.timeline}, LSN ${named.startLsn}) is not on the history of timeline ${branch.timeline}`,
        `restore it along its own timeline (--target-timeline ${named.timeline}), or pick a backup on timeline ${branch.timeline}'s branch (pgbk list)`);
    }
  }
  if (base.length === 0) {
    throw new TargetError(`no base backup is on the history of timeline ${branch!.timeline} (backups: ${allBase.map((b) => `${b.id} on timeline ${b.timeline}`).join(', ')})`,
      'give --target-timeline with a timeline that descends from a backup (pgbk list shows the timeline tree)');
  }
  const warnings = checkWindow(target, options.window);
  let backup: BackupManifest | undefined;
  if (options.backupId) {
    backup = base.find((candidate) => candidate.id === options.backupId);
    if (!backup) {
      throw new NothingToRestoreError(`--backup ${options.backupId}: no such backup`, `pgbk list shows the backups; known: ${allBase.map((b) => b.id).join(', ')}`);
    }
    if (!finishedBefore(backup, target)) {
      throw new TargetError(`backup ${backup.id} finished after ${describeTarget(target)} (it is consistent from ${backup.stopTime}, LSN ${backup.stopLsn})`,
        'choose an earlier backup, or leave out --backup to pick one');
    }
  } else {
    backup = [...base].reverse().find((candidate) => finishedBefore(candidate, target));
    if (!backup) {
      const oldest = base[0]!;
      throw new TargetError(
        `${describeTarget(target)} is before the recoverable window: the oldest backup, ${oldest.id}, is consistent from ${oldest.stopTime} (LSN ${oldest.stopLsn})`,
        'pick a later target (pgbk list shows the window)',
      );
    }
  }
  return {
    backup,
    target,
    fetchBytes: backup.objects.reduce((sum, object) => sum + object.sizeBytes, 0),
    walFrom: backup.walStart!,
    walTo: options.window.lastSegment,
    timeline: branch?.timeline,
    warnings,
    // checkWindow let a time, LSN or immediate target through: it lies before the gap.
    ...(options.window.gap && ['time', 'lsn', 'immediate'].includes(target.kind) ? {endOfArchive: options.window.gap.missing} : {}),
  };
}

function finishedBefore(backup: BackupManifest, target: Target): boolean {
  switch (target.kind) {
    case 'latest':
    case 'immediate':
    case 'name':
      // A restore point's position is not known without reading WAL: the newest backup is used (--backup picks another).
      return true;
    case 'time':
      return new Date(backup.stopTime).getTime() <= target.time.getTime();
    case 'lsn':
      return parseLsn(backup.stopLsn!)! <= target.lsn;
    case 'xid': {
      if (!backup.nextXid) return false;
      const next = BigInt(backup.nextXid);
      // A 32-bit xid is compared within the backup's epoch; only transactions started after the backup qualify.
      return target.xid > MASK32 ? next <= target.xid : (next & MASK32) <= target.xid;
    }
  }
}

function checkWindow(target: Target, window: RecoverableWindow): string[] {
  const gap = window.gap;
  if (gap) checkGap(target, gap);
  if (target.kind === 'time' && window.latestTime && target.time.getTime() > window.latestTime.getTime()) {
    throw new TargetError(
      `${describeTarget(target)} is after the recoverable window: the newest commit in the archive is at ${window.latestTime.toISOString()}`,
      'PostgreSQL can only stop at a time that a later commit proves; use --latest, or let more WAL reach the archive (select pg_switch_wal() on the server) and try again',
    );
  }
  if (target.kind === 'time' && !window.latestTime && window.lastSegment) {
    throw new TargetError(`${describeTarget(target)} cannot be reached: the archive holds no commit after the newest backup`,
      'use --latest, or let more WAL reach the archive (select pg_switch_wal() on the server) and try again');
  }
  if (target.kind === 'lsn' && window.latestLsn && target.lsn > parseLsn(window.latestLsn)!) {
    throw new TargetError(
      `${describeTarget(target)} is after the end of the archived WAL (${window.latestLsn})`,
      'pick an earlier LSN, or let more WAL reach the archive and try again',
    );
  }
  if (gap && (target.kind === 'xid' || target.kind === 'name')) {
    return [`the WAL archive has a gap: ${describeGap(gap)}. If ${describeTarget(target)} lies after ${gap.lastReachableLsn}, recovery stops there with an error (archive-get refuses to skip the gap)`];
  }
  return [];
}

/** A target that needs WAL past a gap is refused: PostgreSQL would stop at the gap and promote there. */
function checkGap(target: Target, gap: WindowGap): void {
  const reachable = gap.lastReachableTime
    ? `the last reachable point is the commit at ${gap.lastReachableTime.toISOString()} (WAL continuous up to LSN ${gap.lastReachableLsn})`
    : `the last reachable point is before LSN ${gap.lastReachableLsn} (no commit archived before the gap)`;
  const restoreBack = 'or put the missing segments back into the archive (pgbk list names them)';
  const earlier = gap.lastReachableTime
    ? `restore to an earlier target, e.g. --target-time ${gap.lastReachableTime.toISOString()} (the last commit before the gap); ${restoreBack}`
    : `restore to an earlier target (a --target-time or --target-lsn before LSN ${gap.lastReachableLsn}); ${restoreBack}`;
  const past = (() => {
    switch (target.kind) {
      case 'latest': return true;
      case 'lsn': return target.lsn > parseLsn(gap.lastReachableLsn)!;
      case 'time': return gap.lastReachableTime === undefined || target.time.getTime() > gap.lastReachableTime.getTime();
      default: return false;
    }
  })();
  if (!past) return;
  throw new TargetError(`${describeTarget(target)} lies past a gap in the WAL archive: ${describeGap(gap)}; ${reachable}`, earlier);
}

export function describeGap(gap: WindowGap): string {
  return `${gap.missingCount === 1 ? 'segment' : 'segments'} ${describeSegments(gap.missingSegments, gap.missingCount)} ${gap.missingCount === 1 ? 'is' : 'are'} missing ` +
    `(archived up to ${gap.after}, resuming at ${gap.resumesAt})`;
}
