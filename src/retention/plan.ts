// Retention planning (pure): which backups go, which stay and why, and the rule that decides, one archived WAL file
// at a time, whether any kept backup still needs it. The WAL listing is never held: applyExpire streams it through
// walVerdict (see apply.ts), so memory does not grow with the number of archived segments.
//
// Base backups: keep the newest `backups` and everything needed to restore to any moment of the last `days` (every
// backup that finished inside that window, and the newest one that finished before it). Dumps follow the same rule
// among dumps (by start time: a dump restores the database as of its start). Neither set: keep everything.
//
// WAL, per timeline: a segment on timeline T is needed by a kept base backup B (on timeline T_B, its WAL starting
// at segment S_B) when T_B <= T and the segment is at or after S_B. Recovery from B reads B's timeline from S_B on
// and then only descendant timelines, whose switch points lie after B's start (PostgreSQL refuses a timeline that
// branched off before it), so everything B can read is in that set; the set may hold more (unrelated branches),
// which is kept. Timeline history files are always kept. With no base backup, or one whose start is unknown,
// no WAL is removed.

import type {BackupManifest} from '../backup/manifest.js';
import {parseWalFileName} from '../wal/name.js';

export interface Retention {
  backups?: number;
  days?: number;
}

export interface BackupDecision {
  id: string;
  kind: 'base' | 'dump';
  /** When the backup can be restored from (base: its consistent point; dump: its start). */
  time: string;
  timeline?: number;
  walStart?: string;
  storedBytes: number;
  keep: boolean;
  /** Why it stays, or why it goes; human sentences. */
  reasons: string[];
}

/** Where the needed WAL starts on one timeline and on every later one, set by a kept base backup. */
export interface WalKeepPoint {
  timeline: number;
  /** The backup's first WAL segment (24 hex digits). */
  walStart: string;
  backupId: string;
}

export interface WalRule {
  /** False: no WAL is removed (see `reason`). */
  expire: boolean;
  reason: string;
  /** One per kept base backup, oldest start first. */
  keepPoints: WalKeepPoint[];
}

export interface ExpirePlan {
  now: string;
  retention: Retention;
  /** Moment from which any time must stay restorable (now - days), when days is set. */
  windowStart?: string;
  /** The policy, in words ("keep the newest 2 backups and ..."), or why nothing is removed. */
  summary: string;
  /** Every backup in the catalog, oldest first, each kept or removed. */
  backups: BackupDecision[];
  wal: WalRule;
}

const DAY_MS = 86_400_000;

export function planExpire(catalog: BackupManifest[], retention: Retention, now: Date): ExpirePlan {
  const windowStart = retention.days !== undefined ? new Date(now.getTime() - retention.days * DAY_MS) : undefined;
  const decisions = new Map<string, BackupDecision>();
  for (const kind of ['base', 'dump'] as const) {
    const ofKind = catalog.filter((backup) => backup.kind === kind);
    for (const decision of decide(ofKind, kind, retention, windowStart)) decisions.set(decision.id, decision);
  }
  const backups = catalog.map((backup) => decisions.get(backup.id)!);
  const keptBase = catalog.filter((backup) => backup.kind === 'base' && decisions.get(backup.id)!.keep);
  return {
    now: now.toISOString(),
    retention: {...retention},
    windowStart: windowStart?.toISOString(),
    summary: describeRetention(retention),
    backups,
    wal: walRule(keptBase, catalog.some((backup) => backup.kind === 'base'), retention),
  };
}

function restorableFrom(backup: BackupManifest): string {
  return backup.kind === 'dump' ? backup.startTime : backup.stopTime;
}

function decide(backups: BackupManifest[], kind: 'base' | 'dump', retention: Retention, windowStart: Date | undefined): BackupDecision[] {
  const noun = kind === 'base' ? 'base backup' : 'dump';
  // Oldest first by the time they restore to (ids are start times; a long backup can finish after a later one).
  const ordered = [...backups].sort((a, b) => restorableFrom(a).localeCompare(restorableFrom(b)) || a.id.localeCompare(b.id));
  const reasons = new Map<string, string[]>(ordered.map((backup) => [backup.id, []]));
  if (retention.backups === undefined && retention.days === undefined) {
    for (const backup of ordered) reasons.get(backup.id)!.push('no retention set in the policy: everything is kept');
  }
  if (retention.backups !== undefined) {
    const newest = ordered.slice(Math.max(0, ordered.length - retention.backups));
    for (const backup of newest) reasons.get(backup.id)!.push(`one of the newest ${retention.backups} ${noun}s`);
  }
  if (windowStart) {
    const days = `${retention.days} day${retention.days === 1 ? '' : 's'}`;
    let before: BackupManifest | undefined;
    for (const backup of ordered) {
      if (new Date(restorableFrom(backup)) > windowStart) {
        reasons.get(backup.id)!.push(`restorable from ${restorableFrom(backup)}, inside the last ${days}`);
      } else {
        before = backup;
      }
    }
    if (before) {
      reasons.get(before.id)!.push(`the newest ${noun} from before ${windowStart.toISOString()}: needed to restore to the start of the last ${days}`);
    }
  }
  return ordered.map((backup) => {
    const why = reasons.get(backup.id)!;
    const keep = why.length > 0;
    if (!keep) {
      const parts = [];
      if (retention.backups !== undefined) parts.push(`not among the newest ${retention.backups} ${noun}s`);
      if (windowStart) parts.push(`not needed to restore to any time after ${windowStart.toISOString()}`);
      why.push(parts.join(' and '));
    }
    return {
      id: backup.id,
      kind,
      time: restorableFrom(backup),
      timeline: backup.timeline,
      walStart: backup.walStart,
      storedBytes: backup.storedBytes,
      keep,
      reasons: why,
    };
  });
}

function walRule(keptBase: BackupManifest[], anyBase: boolean, retention: Retention): WalRule {
  if (retention.backups === undefined && retention.days === undefined) {
    return {expire: false, reason: 'no retention set: all WAL is kept', keepPoints: []};
  }
  if (!anyBase) return {expire: false, reason: 'no base backup in the repository: all WAL is kept', keepPoints: []};
  const unknown = keptBase.find((backup) => !backup.walStart || !isSegment(backup.walStart));
  if (unknown) {
    return {expire: false, reason: `kept backup ${unknown.id} does not record where its WAL starts: all WAL is kept`, keepPoints: []};
  }
  const keepPoints = keptBase
    .map((backup) => ({timeline: parseWalFileName(backup.walStart!).timeline, walStart: backup.walStart!, backupId: backup.id}))
    .sort((a, b) => a.walStart.slice(8).localeCompare(b.walStart.slice(8)) || a.timeline - b.timeline);
  return {
    expire: true,
    reason: 'WAL older than every kept base backup on its timeline is removed; timeline history files are kept',
    keepPoints,
  };
}

function isSegment(name: string): boolean {
  try {
    return parseWalFileName(name).kind === 'segment';
  } catch {
    return false;
  }
}

export interface WalVerdict {
  remove: boolean;
  /** For a kept file: the backup that needs it (absent for history files and when nothing is removed). */
  neededBy?: string;
}

/**
 * Whether one archived WAL file (a name such as 000000010000000000000003, .partial, .backup or .history) goes.
 * Segment names compare by their last 16 digits (log and segment number), whatever the segment size.
 */
export function walVerdict(rule: WalRule, walFile: string): WalVerdict {
  if (!rule.expire) return {remove: false};
  let name;
  try {
    name = parseWalFileName(walFile);
  } catch {
    return {remove: false}; // not ours to judge
  }
  if (name.kind === 'history') return {remove: false};
  const position = name.segment!.slice(8);
  for (const point of rule.keepPoints) {
    if (point.timeline <= name.timeline && position >= point.walStart.slice(8)) return {remove: false, neededBy: point.backupId};
  }
  return {remove: true};
}

export function describeRetention(retention: Retention): string {
  const parts: string[] = [];
  if (retention.backups !== undefined) parts.push(`the newest ${retention.backups} backup${retention.backups === 1 ? '' : 's'}`);
  if (retention.days !== undefined) parts.push(`everything needed to restore to any time in the last ${retention.days} day${retention.days === 1 ? '' : 's'}`);
  if (parts.length === 0) return 'no retention in the policy (retention.backups, retention.days): everything is kept';
  return `keep ${parts.join(' and ')} (base backups and dumps counted apart), and the WAL they need`;
}
