// Timelines as branches (pure). A timeline's history file lists its ancestors and the LSN where each one was left
// (the fork): recovery along timeline N reads each ancestor only up to its fork, then N. Which WAL a restore may
// use, and where the archive has a gap, is decided along that branch, never by timeline number alone: a side copy
// promoted onto timeline 2 leaves the main line (timeline 1, still going on past the fork) untouched.

import {formatLsn, parseLsn, type Lsn} from '../wal/lsn.js';
import {lsnToSegmentNumber, segmentName} from '../wal/name.js';

/** One line of a timeline history file: `parent` was left at `switchLsn` (exclusive) for the next timeline. */
export interface HistoryEntry {
  parent: number;
  switchLsn: Lsn;
  reason: string;
}

/** PostgreSQL's timeline history format: "<parent tli>\t<switch LSN>\t<reason>", comments with #, blank lines. */
export function parseTimelineHistory(text: string): HistoryEntry[] {
  const entries: HistoryEntry[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const match = /^(\d+)\s+([0-9A-Fa-f]{1,8}\/[0-9A-Fa-f]{1,8})(?:\s+(.*))?$/.exec(line);
    if (!match) throw new Error(`not a timeline history line: "${line}"`);
    entries.push({parent: Number(match[1]), switchLsn: parseLsn(match[2]!)!, reason: (match[3] ?? '').trim()});
  }
  for (let index = 1; index < entries.length; index++) {
    if (entries[index]!.parent <= entries[index - 1]!.parent || entries[index]!.switchLsn < entries[index - 1]!.switchLsn) {
      throw new Error('timeline history entries are not in ascending order');
    }
  }
  return entries;
}

/** A stretch of one timeline on a branch: LSNs from `fromLsn` up to (excluding) `toLsn`, open-ended when absent. */
export interface BranchPart {
  timeline: number;
  fromLsn: Lsn;
  toLsn?: Lsn;
}

export interface Branch {
  /** The timeline recovery targets (recovery_target_timeline). */
  timeline: number;
  /** Oldest first; the last part is `timeline` itself, open-ended. */
  parts: BranchPart[];
}

/** The branch of `timeline` from its history file's entries (none for timeline 1 or an unknown history). */
export function branchOf(timeline: number, history: HistoryEntry[]): Branch {
  const parts: BranchPart[] = [];
  let from = 0n;
  for (const entry of history) {
    if (entry.parent >= timeline) throw new Error(`history of timeline ${timeline} names timeline ${entry.parent} as an ancestor`);
    parts.push({timeline: entry.parent, fromLsn: from, toLsn: entry.switchLsn});
    from = entry.switchLsn;
  }
  parts.push({timeline, fromLsn: from});
  return {timeline, parts};
}

/** The part of the branch holding `lsn` on `timeline`, if that timeline is on the branch at that point. */
export function partHolding(branch: Branch, timeline: number, lsn: Lsn): BranchPart | undefined {
  return branch.parts.find((part) => part.timeline === timeline && part.fromLsn <= lsn && (part.toLsn === undefined || lsn <= part.toLsn));
}

/** A base backup can start a restore along the branch when its timeline is on it up to the backup's end. */
export function backupOnBranch(branch: Branch, backup: {timeline?: number; startLsn?: string; stopLsn?: string}): boolean {
  const start = backup.startLsn ? parseLsn(backup.startLsn) : undefined;
  const stop = backup.stopLsn ? parseLsn(backup.stopLsn) : undefined;
  if (start === undefined || stop === undefined) return false;
  const part = partHolding(branch, backup.timeline ?? 1, start);
  return part !== undefined && (part.toLsn === undefined || stop <= part.toLsn);
}

/**
 * Which timeline's copy of segment `segno` recovery along the branch reads, as PostgreSQL does: the newest timeline
 * whose part starts at or before the segment. The segment that holds a fork comes from the child timeline (the
 * parent's copy of it holds WAL past the fork, or is only a .partial).
 */
export function timelineOfSegment(branch: Branch, segno: bigint, segmentSize: number): number {
  for (let index = branch.parts.length - 1; index > 0; index--) {
    const part = branch.parts[index]!;
    if (segno >= lsnToSegmentNumber(part.fromLsn, segmentSize)) return part.timeline;
  }
  return branch.parts[0]!.timeline;
}

/** Whether an archived segment (timeline, number) is the one recovery along the branch reads. */
export function segmentOnBranch(branch: Branch, timeline: number, segno: bigint, segmentSize: number): boolean {
  return branch.parts.some((part) => part.timeline === timeline) && timelineOfSegment(branch, segno, segmentSize) === timeline;
}

/** A contiguous run of segment numbers present on the branch. */
export interface SegmentRun {
  first: bigint;
  last: bigint;
}

/** The first run from `start` on, and the hole after it (when a later segment exists): fed segment numbers in order. */
export class RunTracker {
  run?: SegmentRun;
  /** Segments missing right after `run` while a later one is archived: [first, last] inclusive. */
  hole?: SegmentRun;
  /** `start`: the first segment recovery needs (the backup's); a hole there means the backup's own WAL is missing. */
  constructor(private readonly start: bigint) {}

  /** Feeds the next archived segment number on the branch (ascending); returns false once the answer is known. */
  add(segno: bigint): boolean {
    if (this.hole) return false;
    if (segno < this.start) return true;
    if (!this.run) {
      if (segno === this.start) {
        this.run = {first: segno, last: segno};
        return true;
      }
      this.hole = {first: this.start, last: segno - 1n};
      return false;
    }
    if (segno === this.run.last + 1n) {
      this.run.last = segno;
      return true;
    }
    if (segno <= this.run.last) return true; // a duplicate copy (split brain) of a segment already counted
    this.hole = {first: this.run.last + 1n, last: segno - 1n};
    return false;
  }
}

/** Names of the missing segments of a hole along the branch (at most `limit`; the count says how many in all). */
export function holeSegmentNames(branch: Branch, hole: SegmentRun, segmentSize: number, limit = 10): {names: string[]; count: number} {
  const names: string[] = [];
  for (let segno = hole.first; segno <= hole.last && names.length < limit; segno++) {
    names.push(segmentName(timelineOfSegment(branch, segno, segmentSize), segno, segmentSize));
  }
  return {names, count: Number(hole.last - hole.first + 1n)};
}

/** "A, B and C" or "A .. Z (N segments)" for messages. */
export function describeSegments(names: string[], count: number): string {
  if (count === 1) return names[0]!;
  if (count <= names.length) return `${names.slice(0, -1).join(', ')} and ${names.at(-1)}`;
  return `${names[0]} .. (${count} segments)`;
}

export interface TimelineNode {
  timeline: number;
  parent?: number;
  /** Where the timeline left its parent. */
  forkLsn?: Lsn;
  reason?: string;
}

/** The tree of timelines known from history files (and timelines seen without one, as roots). */
export function timelineTree(histories: Map<number, HistoryEntry[]>, seen: Iterable<number> = []): TimelineNode[] {
  const nodes = new Map<number, TimelineNode>();
  for (const timeline of seen) nodes.set(timeline, {timeline});
  for (const [timeline, entries] of histories) {
    const last = entries.at(-1);
    nodes.set(timeline, last ? {timeline, parent: last.parent, forkLsn: last.switchLsn, reason: last.reason} : {timeline});
    for (const entry of entries) if (!nodes.has(entry.parent)) nodes.set(entry.parent, {timeline: entry.parent});
  }
  return [...nodes.values()].sort((a, b) => a.timeline - b.timeline);
}

/** The tree as indented lines: children under their parent, each with its fork. */
export function renderTimelineTree(nodes: TimelineNode[], describeFork: (node: TimelineNode) => string = defaultFork): string[] {
  const lines: string[] = [];
  const visit = (node: TimelineNode, depth: number) => {
    lines.push(`${'  '.repeat(depth)}${depth > 0 ? '└─ ' : ''}timeline ${node.timeline}${node.parent !== undefined ? `: ${describeFork(node)}` : ''}`);
    for (const child of nodes.filter((candidate) => candidate.parent === node.timeline)) visit(child, depth + 1);
  };
  const roots = nodes.filter((node) => node.parent === undefined || !nodes.some((candidate) => candidate.timeline === node.parent));
  for (const root of roots) visit(root, 0);
  return lines;
}

function defaultFork(node: TimelineNode): string {
  return `left timeline ${node.parent} at ${formatLsn(node.forkLsn!)}`;
}

export function branchToJson(branch: Branch): {timeline: number; parts: Array<{timeline: number; fromLsn: string; toLsn: string | null}>} {
  return {timeline: branch.timeline, parts: branch.parts.map((part) => ({timeline: part.timeline, fromLsn: formatLsn(part.fromLsn), toLsn: part.toLsn === undefined ? null : formatLsn(part.toLsn)}))};
}
