// Restore planning (pure): which backup, which WAL, and whether the target can be reached at all.

import {NothingToRestoreError, TargetError} from '../errors.js';
import type {BackupManifest} from '../backup/manifest.js';
import {parseLsn} from '../wal/lsn.js';
import type {RecoverableWindow} from './window.js';
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
}

export interface PlanOptions {
  backupId?: string;
  window: RecoverableWindow;
}

const MASK32 = 0xffffffffn;

/** The newest backup that finished before the target, and checks that the archive reaches the target. */
export function planRestore(catalog: BackupManifest[], target: Target, options: PlanOptions): RestorePlan {
  const base = catalog.filter((backup) => backup.kind === 'base');
  if (base.length === 0) {
    throw new NothingToRestoreError('the repository holds no base backup', 'take one with "pgbk backup" (pgbk list shows what is stored)');
  }
  checkWindow(target, options.window);
  let backup: BackupManifest | undefined;
  if (options.backupId) {
    backup = base.find((candidate) => candidate.id === options.backupId);
    if (!backup) {
      throw new NothingToRestoreError(`--backup ${options.backupId}: no such backup`, `pgbk list shows the backups; known: ${base.map((b) => b.id).join(', ')}`);
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
  };
}

function finishedBefore(backup: BackupManifest, target: Target): boolean {
  switch (target.kind) {
    case 'latest':
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

function checkWindow(target: Target, window: RecoverableWindow): void {
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
      `${describeTarget(target)} is after the end of the archived WAL (${window.latestLsn}${window.gap ? `, cut short by the missing segment ${window.gap.missing}` : ''})`,
      'pick an earlier LSN, or let more WAL reach the archive and try again',
    );
  }
}
