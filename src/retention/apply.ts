// Carrying out an expire plan: removed backups first (each one's manifest before its objects, so a half-removed
// backup is never listed as complete), then the WAL no kept backup needs, decided one object at a time while the
// archive listing streams and removed in batches. With dryRun the same walk runs and nothing is removed.

import {parseWalFileName} from '../wal/name.js';
import {listArchived} from '../wal/archive.js';
import {ABANDONED_AFTER_MS, isAbandoned, unfinishedFolders} from '../backup/folders.js';
import {backupDirKey, manifestKey} from '../storage/layout.js';
import type {IncompleteUpload} from '../storage/repository.js';
import type {Repository} from '../storage/repository.js';
import {walVerdict, type ExpirePlan} from './plan.js';

export interface RemovedBackup {
  id: string;
  /** 'unknown' for a folder without a manifest. */
  kind: 'base' | 'dump' | 'unknown';
  objects: number;
  bytes: number;
}

/** A run of consecutive archived files (in listing order) on one timeline that goes. */
export interface WalRange {
  timeline: number;
  first: string;
  last: string;
  files: number;
  bytes: number;
}

/** A backup retention lets go of, kept because its objects are under Object Lock retention until `until`. */
export interface LockedBackup {
  id: string;
  kind: 'base' | 'dump' | 'unknown';
  until: string;
}

export interface ExpireOutcome {
  dryRun: boolean;
  backups: RemovedBackup[];
  /** repository.object_lock: backups that would go but are still locked (removed by a later expire). */
  locked: LockedBackup[];
  /** Folders under backups/ without a manifest, left by an interrupted removal (or backup), long abandoned. */
  leftovers: RemovedBackup[];
  wal: {removedFiles: number; removedBytes: number; keptFiles: number; ranges: WalRange[];
    /** WAL no backup needs but still under Object Lock retention: kept, the latest lock ends at `lockedUntil`. */
    lockedFiles: number; lockedUntil?: string};
  /** Uploads that never completed (S3 multipart, local temp files), older than a day: aborted (not in a dry run). */
  incompleteUploads: IncompleteUpload[];
}

export interface ApplyOptions {
  dryRun?: boolean;
  /** Keys per remove() call (S3 DeleteObjects takes at most 1000). */
  batchSize?: number;
  /** A folder without a manifest is abandoned once its newest object is this old (default one day). */
  abandonedAfterMs?: number;
  now?: Date;
  /**
   * repository.object_lock.days: every object is locked this long after it was written; expire never tries to
   * remove a locked object (the store would keep it anyway, or hide it behind a delete marker).
   */
  objectLockDays?: number;
}

const DEFAULT_BATCH = 500;

export async function applyExpire(plan: ExpirePlan, repo: Repository, options: ApplyOptions = {}): Promise<ExpireOutcome> {
  const dryRun = Boolean(options.dryRun);
  const outcome: ExpireOutcome = {
    dryRun, backups: [], locked: [], leftovers: [], wal: {removedFiles: 0, removedBytes: 0, keptFiles: 0, ranges: [], lockedFiles: 0}, incompleteUploads: [],
  };
  const now = options.now ?? new Date(plan.now);
  const lockMs = (options.objectLockDays ?? 0) * 86_400_000;
  /** When the lock of an object written at `modified` ends, or undefined when it has ended (or there is none). */
  const lockedUntil = (modifiedMs: number): number | undefined =>
    lockMs > 0 && modifiedMs + lockMs > now.getTime() ? modifiedMs + lockMs : undefined;

  for (const decision of plan.backups) {
    if (decision.keep) continue;
    const keys: string[] = [];
    let bytes = 0;
    let newestMs = 0;
    for await (const object of repo.list(backupDirKey(decision.id))) {
      keys.push(object.key);
      bytes += object.sizeBytes;
      newestMs = Math.max(newestMs, object.modified?.getTime() ?? Number.POSITIVE_INFINITY);
    }
    const until = lockedUntil(newestMs);
    if (until !== undefined) {
      outcome.locked.push({id: decision.id, kind: decision.kind, until: Number.isFinite(until) ? new Date(until).toISOString() : 'unknown'});
      continue;
    }
    if (!dryRun) {
      await repo.remove([manifestKey(decision.id)]);
      await repo.remove(keys.filter((key) => key !== manifestKey(decision.id)));
    }
    outcome.backups.push({id: decision.id, kind: decision.kind, objects: keys.length, bytes});
  }

  outcome.leftovers = await removeLeftovers(plan, repo, dryRun, options, lockMs);
  // An upload a day old is no live run's (a backup's parts are written within minutes of each other).
  if (!dryRun) {
    outcome.incompleteUploads = await repo.cleanUpIncomplete(new Date(now.getTime() - (options.abandonedAfterMs ?? ABANDONED_AFTER_MS)));
  }

  const batchSize = options.batchSize ?? DEFAULT_BATCH;
  let batch: string[] = [];
  const flush = async () => {
    if (batch.length > 0 && !dryRun) await repo.remove(batch);
    batch = [];
  };
  let range: WalRange | undefined;
  for await (const file of listArchived(repo)) {
    const verdict = walVerdict(plan.wal, file.walFile);
    const timeline = parseWalFileName(file.walFile).timeline;
    const until = verdict.remove ? lockedUntil(file.modified?.getTime() ?? Number.POSITIVE_INFINITY) : undefined;
    if (!verdict.remove || until !== undefined) {
      outcome.wal.keptFiles++;
      if (until !== undefined) {
        outcome.wal.lockedFiles++;
        const shown = Number.isFinite(until) ? new Date(until).toISOString() : 'unknown';
        if (!outcome.wal.lockedUntil || shown > outcome.wal.lockedUntil) outcome.wal.lockedUntil = shown;
      }
      range = undefined;
      continue;
    }
    outcome.wal.removedFiles++;
    outcome.wal.removedBytes += file.sizeBytes;
    if (range && range.timeline === timeline) {
      range.last = file.walFile;
      range.files++;
      range.bytes += file.sizeBytes;
    } else {
      range = {timeline, first: file.walFile, last: file.walFile, files: 1, bytes: file.sizeBytes};
      outcome.wal.ranges.push(range);
    }
    batch.push(file.key);
    if (batch.length >= batchSize) await flush();
  }
  await flush();
  return outcome;
}

/**
 * Backup folders without a manifest, no live owner, and nothing written in them for a day: what an interrupted
 * expire (manifest gone, objects left) or a crashed backup leaves. A backup still being written renews its
 * owner marker every few minutes, so it is never touched.
 */
async function removeLeftovers(plan: ExpirePlan, repo: Repository, dryRun: boolean, options: ApplyOptions, lockMs: number): Promise<RemovedBackup[]> {
  if (plan.retention.backups === undefined && plan.retention.days === undefined) return []; // keep everything
  const now = options.now ?? new Date(plan.now);
  const removed: RemovedBackup[] = [];
  for await (const folder of unfinishedFolders(repo, now)) {
    if (!isAbandoned(folder, now, options.abandonedAfterMs ?? ABANDONED_AFTER_MS)) continue;
    if (lockMs > 0 && folder.newestMs + lockMs > now.getTime()) continue; // locked: a later expire removes it
    if (!dryRun) await repo.remove(folder.keys);
    removed.push({id: folder.id, kind: 'unknown', objects: folder.keys.length, bytes: folder.bytes});
  }
  return removed;
}
