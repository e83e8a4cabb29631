// pgbk verify: every stored object against its checksum, and the WAL each backup needs.
//
// Backup objects are read whole and hashed against the manifest (size and SHA-256 of the stored bytes). WAL objects
// are gunzipped and hashed against the SHA-256 in their name. Everything streams: memory holds, per timeline, runs
// of consecutive segment numbers and the (small) history files, never the list of segments. Continuity, for each
// base backup: every segment from walStart to walStop, then, following timeline history files as recovery does
// (recovery_target_timeline = latest), every segment from the backup's start up to the last archived segment of
// the newest timeline that branched off after the backup started.

import {Writable} from 'node:stream';
import {pipeline} from 'node:stream/promises';
import {unfinishedFolders} from '../backup/folders.js';
import {tarsOf} from '../backup/parts.js';
import {manifestKey} from '../storage/layout.js';
import {isCodecDataError} from '../util/codec.js';
import {readCatalog, type BackupManifest} from '../backup/manifest.js';
import {CorruptObjectError, ObjectNotFoundError, PgbkError, UsageError} from '../errors.js';
import {walVerdict} from '../retention/plan.js';
import type {Repository} from '../storage/repository.js';
import {ChecksumVerifier} from '../util/streams.js';
import {openVerified, listArchived, type ArchivedWalFile} from '../wal/archive.js';
import {parseLsn, type Lsn} from '../wal/lsn.js';
import {DEFAULT_SEGMENT_SIZE, lsnToSegmentNumber, parseWalFileName, segmentName, segmentNumberOf} from '../wal/name.js';

/** verify found something wrong: exit 1. */
export class VerifyFailedError extends PgbkError {
  readonly code = 'verify.failed';
}

export type ProblemKind = 'manifest' | 'backup-object' | 'wal-checksum' | 'wal-conflict' | 'wal-missing' | 'history';

export interface VerifyProblem {
  kind: ProblemKind;
  /** The object (key) or WAL file name concerned. */
  object: string;
  message: string;
  backup?: string;
}

export interface VerifyReport {
  repository: string;
  backups: string[];
  backupObjects: number;
  walFiles: number;
  bytesRead: number;
  problems: VerifyProblem[];
  /**
   * Backup folders without a manifest: `live` ones are being written by a running backup; the others are
   * abandoned (a killed run, an interrupted expire) — not restorable, harmless, removed by expire after a day.
   */
  unfinished: {id: string; live: boolean; objects: number; bytes: number; owner?: string}[];
}

export interface VerifyOptions {
  backupId?: string;
  /** Objects read at once. */
  concurrency?: number;
  onProblem?: (problem: VerifyProblem) => void;
  now?: Date;
}

export async function verifyRepository(repo: Repository, options: VerifyOptions = {}): Promise<VerifyReport> {
  const report: VerifyReport = {repository: repo.description, backups: [], backupObjects: 0, walFiles: 0, bytesRead: 0, problems: [], unfinished: []};
  const problem = (value: VerifyProblem) => {
    report.problems.push(value);
    options.onProblem?.(value);
  };
  const catalog = await readCatalog(repo, (key, error) => problem({kind: 'manifest', object: key, message: `backup manifest ${key} is unreadable: ${error.message}`}));
  let selected = catalog;
  if (options.backupId) {
    selected = catalog.filter((backup) => backup.id === options.backupId);
    if (selected.length === 0) {
      throw new UsageError(`--backup ${options.backupId}: no such backup in ${repo.description}`,
        `pgbk list shows the backups${catalog.length ? `; known: ${catalog.map((backup) => backup.id).join(', ')}` : ''}`);
    }
  }
  report.backups = selected.map((backup) => backup.id);
  const pool = new Pool(options.concurrency ?? 4);

  for (const backup of selected) {
    // The pieces of each tar numbered 1..n in order: a manifest that skips or repeats one cannot be restored.
    if (backup.kind === 'base') {
      try {
        tarsOf(backup);
      } catch (error) {
        problem({kind: 'manifest', object: manifestKey(backup.id), backup: backup.id, message: (error as Error).message});
      }
    }
    for (const object of backup.objects) {
      report.backupObjects++;
      await pool.run(async () => {
        const message = await checkBackupObject(repo, object, (bytes) => { report.bytesRead += bytes; });
        if (message) problem({kind: 'backup-object', object: object.key, backup: backup.id, message});
      });
    }
  }

  // WAL: with --backup, only what that backup can use (its timeline from its start on, later timelines, histories).
  const base = selected.filter((backup) => backup.kind === 'base' && backup.walStart);
  const segmentSize = base[0]?.walSegmentSize ?? catalog.find((backup) => backup.walSegmentSize)?.walSegmentSize ?? DEFAULT_SEGMENT_SIZE;
  const only = options.backupId && base[0]
    ? {expire: true, reason: '', keepPoints: [{timeline: parseWalFileName(base[0].walStart!).timeline, walStart: base[0].walStart!, backupId: base[0].id}]}
    : undefined;
  if (!options.backupId || base.length > 0) {
    const archive = new ArchiveShape(segmentSize);
    let previous: ArchivedWalFile | undefined;
    for await (const file of listArchived(repo)) {
      if (only && walVerdict(only, file.walFile).remove) continue;
      report.walFiles++;
      if (previous?.walFile === file.walFile && previous.sha256 !== file.sha256) {
        problem({kind: 'wal-conflict', object: file.key,
          message: `${file.walFile} is archived more than once with different content (${previous.key} and ${file.key}): two servers archived into one repository`});
      }
      previous = file;
      const name = parseWalFileName(file.walFile);
      if (name.kind === 'history') {
        // Small: read whole, both to check it and to follow timelines.
        const read = await readWal(repo, file, (bytes) => { report.bytesRead += bytes; }, true);
        if (read.message) problem({kind: 'wal-checksum', object: file.key, message: read.message});
        else archive.addHistory(name.timeline, parseHistory(read.content!.toString('utf8')));
        continue;
      }
      if (name.kind === 'segment') archive.addSegment(name.timeline, segmentNumberOf(file.walFile, segmentSize));
      await pool.run(async () => {
        const read = await readWal(repo, file, (bytes) => { report.bytesRead += bytes; }, false);
        if (read.message) problem({kind: 'wal-checksum', object: file.key, message: read.message});
      });
    }
    await pool.drain();
    for (const found of checkContinuity(base, archive)) problem(found);
  }
  await pool.drain();
  if (!options.backupId) {
    for await (const folder of unfinishedFolders(repo, options.now ?? new Date())) {
      report.unfinished.push({
        id: folder.id, live: folder.live, objects: folder.keys.length, bytes: folder.bytes,
        owner: folder.owner ? `${folder.owner.host}/${folder.owner.pid}` : undefined,
      });
    }
  }
  return report;
}

async function checkBackupObject(repo: Repository, object: BackupManifest['objects'][number], count: (bytes: number) => void): Promise<string | undefined> {
  const stat = await repo.stat(object.key);
  if (!stat) return `backup object ${object.key} is missing`;
  if (stat.sizeBytes !== object.sizeBytes) return `backup object ${object.key} has ${stat.sizeBytes} bytes, the manifest says ${object.sizeBytes}`;
  try {
    const verifier = new ChecksumVerifier(object.sha256, object.key);
    await pipeline(await repo.get(object.key), verifier, discard(count));
    return undefined;
  } catch (error) {
    return describeReadError(object.key, error);
  }
}

async function readWal(repo: Repository, file: ArchivedWalFile, count: (bytes: number) => void, keep: boolean): Promise<{message?: string; content?: Buffer}> {
  const chunks: Buffer[] = [];
  try {
    const stages = await openVerified(repo, file.key, file.sha256);
    const sink = keep ? new Writable({write(chunk: Buffer, _enc, done) { chunks.push(chunk); count(chunk.length); done(); }}) : discard(count);
    await pipeline([...stages, sink] as never);
    return {content: keep ? Buffer.concat(chunks) : undefined};
  } catch (error) {
    return {message: describeReadError(file.key, error)};
  }
}

function describeReadError(key: string, error: unknown): string {
  if (error instanceof CorruptObjectError) return error.message;
  if (error instanceof ObjectNotFoundError) return `${key} vanished while being read (removed concurrently?)`;
  if (isCodecDataError(error)) return `${key} is not valid compressed data: ${(error as Error).message}`;
  return `cannot read ${key}: ${(error as Error).message}`;
}

function discard(count: (bytes: number) => void): Writable {
  return new Writable({write(chunk: Buffer, _enc, done) { count(chunk.length); done(); }});
}

/** Runs at most `limit` tasks at once. A task that throws (the repository unreachable) fails the next run() or drain(). */
class Pool {
  private readonly running = new Set<Promise<void>>();
  private failure: {error: unknown} | undefined;
  constructor(private readonly limit: number) {}
  async run(task: () => Promise<void>): Promise<void> {
    while (this.running.size >= this.limit) await Promise.race(this.running);
    this.rethrow();
    const promise: Promise<void> = task()
      .catch((error: unknown) => { this.failure ??= {error}; })
      .finally(() => this.running.delete(promise));
    this.running.add(promise);
  }
  async drain(): Promise<void> {
    await Promise.all(this.running);
    this.rethrow();
  }
  private rethrow(): void {
    if (this.failure) throw this.failure.error;
  }
}

// ---- continuity (pure) ----

export interface HistoryEntry {
  /** A parent timeline, and the LSN where the next timeline branched off it. */
  timeline: number;
  switchLsn: Lsn;
}

/** Parses a timeline history file ("1\t0/3000158\tno recovery target specified"); comments and junk are skipped. */
export function parseHistory(text: string): HistoryEntry[] {
  const entries: HistoryEntry[] = [];
  for (const line of text.split('\n')) {
    const match = /^\s*(\d+)\s+([0-9A-Fa-f]+\/[0-9A-Fa-f]+)/.exec(line);
    if (match) entries.push({timeline: Number(match[1]), switchLsn: parseLsn(match[2]!)!});
  }
  return entries;
}

/** What the archive holds, in a bounded amount of memory: runs of consecutive segments per timeline, and histories. */
export class ArchiveShape {
  readonly runs = new Map<number, Array<{first: bigint; last: bigint}>>();
  readonly histories = new Map<number, HistoryEntry[]>();
  constructor(readonly segmentSize: number = DEFAULT_SEGMENT_SIZE) {}

  addSegment(timeline: number, segno: bigint): void {
    let runs = this.runs.get(timeline);
    if (!runs) this.runs.set(timeline, (runs = []));
    const last = runs[runs.length - 1];
    if (last && segno >= last.first && segno <= last.last) return; // a second copy
    if (last && segno === last.last + 1n) last.last = segno;
    else runs.push({first: segno, last: segno});
    // Listings come in name order; keep the runs sorted if a caller does not.
    if (last && segno < last.first) runs.sort((a, b) => (a.first < b.first ? -1 : 1));
  }

  addHistory(timeline: number, entries: HistoryEntry[]): void {
    this.histories.set(timeline, entries);
  }

  /** The first segment number in [from, to] that is missing on `timeline`, if any. */
  firstMissing(timeline: number, from: bigint, to: bigint): bigint | undefined {
    if (from > to) return undefined;
    const run = (this.runs.get(timeline) ?? []).find((candidate) => candidate.first <= from && from <= candidate.last);
    if (!run) return from;
    return run.last >= to ? undefined : run.last + 1n;
  }

  lastSegment(timeline: number): bigint | undefined {
    return this.runs.get(timeline)?.at(-1)?.last;
  }

  timelines(): number[] {
    return [...new Set([...this.runs.keys(), ...this.histories.keys()])].sort((a, b) => a - b);
  }
}

export interface Leg {
  timeline: number;
  from: bigint;
  /** Undefined: up to the last archived segment of the timeline. */
  to?: bigint;
}

/**
 * The segments recovery from `backup` reads to reach the end of the archive: its own timeline from its start, then
 * each timeline on the way to the newest one whose history shows it branched off after the backup started.
 */
export function recoveryPath(backup: BackupManifest, archive: ArchiveShape): Leg[] {
  const size = archive.segmentSize;
  const timeline = parseWalFileName(backup.walStart!).timeline;
  const startLsn = backup.startLsn ? parseLsn(backup.startLsn)! : segmentNumberOf(backup.walStart!, size) * BigInt(size);
  const start = segmentNumberOf(backup.walStart!, size);
  let target = timeline;
  for (const candidate of archive.timelines()) {
    if (candidate <= target) continue;
    const history = archive.histories.get(candidate);
    const branch = history?.find((entry) => entry.timeline === timeline);
    if (branch && branch.switchLsn > startLsn) target = candidate;
  }
  if (target === timeline) return [{timeline, from: start}];
  const lineage = archive.histories.get(target)!;
  const legs: Leg[] = [];
  let from = start;
  let on = false;
  for (const entry of lineage) {
    if (entry.timeline === timeline) on = true;
    if (!on) continue;
    const switchSegno = lsnToSegmentNumber(entry.switchLsn, size);
    // The segment holding the switch point is read from the newer timeline.
    legs.push({timeline: entry.timeline, from, to: switchSegno - 1n});
    from = switchSegno > from ? switchSegno : from;
  }
  legs.push({timeline: target, from});
  return legs;
}

/** Missing WAL for each base backup: its consistency range, then everything up to the end of the archive. */
export function checkContinuity(backups: BackupManifest[], archive: ArchiveShape): VerifyProblem[] {
  const problems: VerifyProblem[] = [];
  const reported = new Set<string>();
  const size = archive.segmentSize;
  const missing = (name: string, backup: BackupManifest, message: string) => {
    if (reported.has(name)) return;
    reported.add(name);
    problems.push({kind: 'wal-missing', object: name, backup: backup.id, message});
  };
  for (const timeline of archive.timelines()) {
    if (timeline > 1 && !archive.histories.has(timeline) && archive.runs.has(timeline)) {
      problems.push({kind: 'history', object: `${timeline.toString(16).toUpperCase().padStart(8, '0')}.history`,
        message: `timeline ${timeline} has archived segments but no (readable) history file: recovery cannot follow it`});
    }
  }
  for (const backup of backups) {
    if (backup.kind !== 'base' || !backup.walStart) continue;
    const start = parseWalFileName(backup.walStart);
    const startSegno = segmentNumberOf(backup.walStart, size);
    const stop = backup.walStop ? parseWalFileName(backup.walStop) : start;
    const stopSegno = segmentNumberOf(stop.segment ?? backup.walStart, size);
    if (stop.timeline === start.timeline) {
      const gap = archive.firstMissing(start.timeline, startSegno, stopSegno);
      if (gap !== undefined) {
        const name = segmentName(start.timeline, gap, size);
        missing(name, backup, `WAL segment ${name} is missing: backup ${backup.id} needs it to become consistent (it needs ${backup.walStart} to ${backup.walStop})`);
        continue;
      }
    }
    for (const leg of recoveryPath(backup, archive)) {
      const to = leg.to ?? archive.lastSegment(leg.timeline);
      if (to === undefined) continue; // a new timeline with nothing archived yet
      const gap = archive.firstMissing(leg.timeline, leg.from, to);
      if (gap === undefined) continue;
      const name = segmentName(leg.timeline, gap, size);
      const after = gap > 0n ? segmentName(leg.timeline, gap - 1n, size) : undefined;
      missing(name, backup, `WAL segment ${name} is missing: restores from backup ${backup.id} cannot go past ${after ?? 'its start'}` +
        ` (the archive continues to ${segmentName(leg.timeline, archive.lastSegment(leg.timeline) ?? gap, size)} on timeline ${leg.timeline})`);
      break;
    }
  }
  return problems;
}
