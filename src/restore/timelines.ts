// The timelines in the archive (history files read from the repository) and the choice of the branch a restore
// follows: --target-timeline when given, else the timeline the policy's server is on when it is reachable (and is
// this repository's cluster), else the timeline with the most recently archived WAL.

import {mkdtemp, rm} from 'node:fs/promises';
import {openVerified} from '../wal/archive.js';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import {pipeline} from 'node:stream/promises';
import {text} from 'node:stream/consumers';
import {PassThrough} from 'node:stream';
import {CorruptObjectError, TargetError, WalNotFoundError} from '../errors.js';
import type {BackupManifest} from '../backup/manifest.js';
import type {Repository} from '../storage/repository.js';
import {parseWalObjectKey, WAL_PREFIX} from '../storage/layout.js';
import {parseWalFileName, segmentNameForLsn, timelineHex} from '../wal/name.js';
import {formatLsn, type Lsn} from '../wal/lsn.js';
import {getWalFile} from '../wal/get.js';
import {runPg} from '../pg/run.js';
import {redactUrl} from '../pg/conninfo.js';
import {branchOf, parseTimelineHistory, type Branch, type HistoryEntry} from './branch.js';

export interface TimelineSummary {
  timeline: number;
  /** From its history file (absent for timeline 1, or when the history file is not archived). */
  history?: HistoryEntry[];
  /** When the history file was archived (about when the timeline was created by a promotion). */
  historyArchivedAt?: Date;
  segments: number;
  firstSegment?: string;
  lastSegment?: string;
  /** Newest modification time of anything archived on this timeline. */
  lastArchivedAt?: Date;
}

/** One pass over the WAL archive: every timeline, its history and the extent of its segments. */
export async function scanTimelines(repo: Repository): Promise<Map<number, TimelineSummary>> {
  const timelines = new Map<number, TimelineSummary>();
  const historyKeys = new Map<number, {key: string; sha256: string}>();
  for await (const object of repo.list(WAL_PREFIX)) {
    const parsed = parseWalObjectKey(object.key);
    if (!parsed) continue;
    const name = parseWalFileName(parsed.walFile);
    let summary = timelines.get(name.timeline);
    if (!summary) timelines.set(name.timeline, summary = {timeline: name.timeline, segments: 0});
    if (object.modified && (!summary.lastArchivedAt || object.modified > summary.lastArchivedAt)) summary.lastArchivedAt = object.modified;
    if (name.kind === 'history') {
      historyKeys.set(name.timeline, {key: object.key, sha256: parsed.sha256});
      summary.historyArchivedAt = object.modified;
    } else if (name.kind === 'segment') {
      summary.segments++;
      summary.firstSegment ??= parsed.walFile;
      summary.lastSegment = parsed.walFile;
    }
  }
  for (const [timeline, {key, sha256}] of historyKeys) {
    timelines.get(timeline)!.history = parseTimelineHistory(await readVerified(repo, key, sha256));
  }
  return timelines;
}

async function readVerified(repo: Repository, key: string, sha256: string): Promise<string> {
  const stages = await openVerified(repo, key, sha256);
  const out = new PassThrough();
  const content = text(out);
  try {
    await pipeline([...stages, out] as never);
  } catch (error) {
    if (error instanceof CorruptObjectError) throw error;
    throw new CorruptObjectError(`timeline history ${key} is unreadable: ${(error as Error).message}`, 'run pgbk verify', {cause: error});
  }
  return content;
}

/** The branch of `timeline`, from its history file (a timeline without one is a branch of its own). */
export function branchFor(timelines: Map<number, TimelineSummary>, timeline: number): Branch {
  return branchOf(timeline, timelines.get(timeline)?.history ?? []);
}

export interface TimelineChoice {
  timeline: number;
  /** Why this one, in words, for the output. */
  reason: string;
  branch: Branch;
}

export interface ChooseTimelineOptions {
  /** --target-timeline: a number, current or latest; undefined when not given. */
  requested?: string;
  catalog: BackupManifest[];
  /** --backup: for `current`. */
  backupId?: string;
  /** The policy's server: asked which timeline it is on (undefined: not asked). */
  server?: {url: string; ask: () => Promise<{timeline: number; systemId: string}>};
}

/** Picks the timeline a restore follows, and says why. */
export async function chooseTimeline(timelines: Map<number, TimelineSummary>, options: ChooseTimelineOptions): Promise<TimelineChoice> {
  const known = [...new Set([1, ...timelines.keys(), ...options.catalog.map((backup) => backup.timeline ?? 1)])].sort((a, b) => a - b);
  const pick = (timeline: number, reason: string): TimelineChoice => ({
    timeline,
    reason: timeline > 1 && !timelines.get(timeline)?.history
      ? `${reason}; its history file ${timelineHex(timeline)}.history is not in the archive, so no ancestor of it is followed` : reason,
    branch: branchFor(timelines, timeline),
  });
  const requested = options.requested;
  if (requested !== undefined && /^\d+$/.test(requested)) {
    const timeline = Number(requested);
    if (!known.includes(timeline)) {
      throw new TargetError(`--target-timeline ${timeline}: the archive holds no timeline ${timeline} (known: ${known.join(', ')})`, 'pgbk list shows the timelines and where each one forked');
    }
    return pick(timeline, 'given with --target-timeline');
  }
  if (requested === 'current') {
    const base = options.catalog.filter((backup) => backup.kind === 'base');
    const backup = options.backupId ? base.find((candidate) => candidate.id === options.backupId) : base.at(-1);
    const timeline = backup?.timeline ?? 1;
    return pick(timeline, `--target-timeline current: the timeline of backup ${backup?.id ?? '(none)'}`);
  }
  if (requested === undefined && options.server) {
    let reached: {timeline: number; systemId: string} | undefined;
    let why = '';
    try {
      reached = await options.server.ask();
    } catch (error) {
      why = `the policy's server ${redactUrl(options.server.url)} is not reachable (${firstLine((error as Error).message)})`;
    }
    if (reached) {
      const systemIds = new Set(options.catalog.map((backup) => backup.systemId));
      if (systemIds.size > 0 && !systemIds.has(reached.systemId)) {
        why = `the policy's server ${redactUrl(options.server.url)} is another cluster (system identifier ${reached.systemId}, backups: ${[...systemIds].join(', ')})`;
      } else {
        return pick(reached.timeline, `the policy's server ${redactUrl(options.server.url)} is on timeline ${reached.timeline}`);
      }
    }
    const newest = newestTimeline(timelines, known, segmentSizeOf(options.catalog));
    return pick(newest.timeline, `${why}; timeline ${newest.timeline} ${newest.why}`);
  }
  const newest = newestTimeline(timelines, known, segmentSizeOf(options.catalog));
  return pick(newest.timeline, `${requested === 'latest' ? '--target-timeline latest' : 'newest'}: timeline ${newest.timeline} ${newest.why}`);
}

export function newestTimeline(timelines: Map<number, TimelineSummary>, known: number[], segmentSize = DEFAULT_SEGMENT_SIZE): {timeline: number; why: string} {
  let best: TimelineSummary | undefined;
  const superseded = supersededTimelines(timelines, segmentSize);
  for (const summary of timelines.values()) {
    if (summary.segments === 0 || superseded.has(summary.timeline)) continue;
    const time = summary.lastArchivedAt?.getTime() ?? 0;
    const bestTime = best?.lastArchivedAt?.getTime() ?? 0;
    if (!best || time > bestTime || (time === bestTime && summary.timeline > best.timeline)) best = summary;
  }
  if (!best) return {timeline: known.at(-1) ?? 1, why: 'is the highest known (no WAL archived yet)'};
  return {timeline: best.timeline, why: `holds the most recently archived WAL (${best.lastSegment}${best.lastArchivedAt ? ` at ${best.lastArchivedAt.toISOString()}` : ''})`};
}

const DEFAULT_SEGMENT_SIZE = 16 * 1024 * 1024;

const segmentSizeOf = (catalog: BackupManifest[]) => catalog.find((backup) => backup.walSegmentSize)?.walSegmentSize ?? DEFAULT_SEGMENT_SIZE;

/**
 * Timelines that are only an ancestor of another: a later timeline forked from them, and they hold no complete
 * segment from the fork's segment on (the old primary wrote nothing past the promotion; its last segment is a
 * .partial). They are no branch of their own, so "most recently archived" must not pick them over the timeline that
 * continues them — their last segment may well reach the archive after the promotion (a standby archiving too, or
 * the old primary's archiver catching up).
 */
function supersededTimelines(timelines: Map<number, TimelineSummary>, segmentSize: number): Set<number> {
  const segno = (walFile: string) => BigInt(`0x${walFile.slice(8, 16)}`) * (0x1_0000_0000n / BigInt(segmentSize)) + BigInt(`0x${walFile.slice(16, 24)}`);
  const superseded = new Set<number>();
  for (const child of timelines.values()) {
    for (const entry of child.history ?? []) {
      const parent = timelines.get(entry.parent);
      if (!parent?.lastSegment) continue;
      if (segno(parent.lastSegment) < BigInt(entry.switchLsn) / BigInt(segmentSize)) superseded.add(entry.parent);
    }
  }
  return superseded;
}

function firstLine(text: string): string {
  return text.split('\n')[0]!.replace(/^cannot connect to \S+: /, '');
}

const COMMIT_LINE_RE = /desc: (?:COMMIT|ABORT)(?:_PREPARED)? (\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(?:\.\d+)?) UTC/;

/**
 * The time of the last commit before a timeline left its parent: read (pg_waldump --end=<fork LSN>) from the
 * child's first segment, which holds the parent's WAL up to the fork. Undefined when that segment is not archived
 * (or expired) or holds no commit before the fork.
 */
export async function lastCommitBeforeFork(repo: Repository, child: number, forkLsn: Lsn, segmentSize: number, binDir?: string): Promise<string | undefined> {
  const walFile = segmentNameForLsn(child, forkLsn, segmentSize);
  const dir = await mkdtemp(join(tmpdir(), 'pgbk-fork-'));
  try {
    try {
      await getWalFile(repo, walFile, join(dir, walFile));
    } catch (error) {
      if (error instanceof WalNotFoundError) return undefined;
      throw error;
    }
    let output: string;
    try {
      ({stdout: output} = await runPg('pg_waldump', ['--rmgr=Transaction', `--end=${formatLsn(forkLsn)}`, join(dir, walFile)], {binDir, env: {TZ: 'UTC'}}));
    } catch (error) {
      // pg_waldump exits non-zero when it stops at the end of valid WAL; what it printed still counts.
      output = String((error as {cause?: {stdout?: unknown}}).cause?.stdout ?? '');
    }
    let last: string | undefined;
    for (const line of output.split('\n')) {
      const match = COMMIT_LINE_RE.exec(line);
      if (match) last = `${match[1]!.replace(' ', 'T')}Z`;
    }
    return last;
  } finally {
    await rm(dir, {recursive: true, force: true});
  }
}
