// The exact, schema-independent proof that recovery reached its target: the commit records in the archived WAL
// (read with pg_waldump from the repository, checksum-verified) say which transaction recovery must have replayed
// last and which one it must have stopped before; the server log and the restored cluster's commit log must agree.

import {mkdtemp, rm} from 'node:fs/promises';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import {runPg} from '../pg/run.js';
import type {Repository} from '../storage/repository.js';
import {getWalFile} from '../wal/get.js';
import {parsePgTimestamp} from './target.js';

export interface XactRecord {
  xid: string;
  lsn: string;
  kind: 'commit' | 'abort';
  /** Microseconds since the epoch, as recorded in the WAL. */
  micros: bigint;
  text: string;
}

const XACT_RE = /tx:\s+(\d+), lsn: ([0-9A-F]+\/[0-9A-F]+), prev [0-9A-F]+\/[0-9A-F]+, desc: (COMMIT|ABORT)(?:_PREPARED)? (\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(?:\.\d+)? UTC)/;

/** Commit and abort records of pg_waldump --rmgr=Transaction output, in WAL order (pure). */
export function parseXactRecords(output: string): XactRecord[] {
  const records: XactRecord[] = [];
  for (const line of output.split('\n')) {
    const match = XACT_RE.exec(line);
    if (!match) continue;
    const micros = parsePgTimestamp(match[4]!);
    if (micros === undefined) continue;
    records.push({xid: match[1]!, lsn: match[2]!, kind: match[3] === 'COMMIT' ? 'commit' : 'abort', micros, text: match[4]!});
  }
  return records;
}

/** Segments PostgreSQL restored from the archive, in the order it asked for them (from its log). */
export function restoredSegments(log: string): string[] {
  const names: string[] = [];
  for (const match of log.matchAll(/restored log file "([0-9A-F]{24})" from archive/g)) if (!names.includes(match[1]!)) names.push(match[1]!);
  return names;
}

export interface ExpectedPoint {
  /** The last commit/abort recovery must replay. */
  last?: XactRecord;
  /** Time targets: the first commit/abort after the target, which recovery must stop before. */
  stop?: XactRecord;
  /** Segments read to find them. */
  segments: string[];
}

/**
 * Where recovery must end (pure): for a time target, the first record later than the target in WAL order is the
 * stop (recovery_target_inclusive) and the record before it is the last one replayed; for latest, the last record.
 */
export function expectedPoint(records: XactRecord[], targetMicros: bigint | undefined): {last?: XactRecord; stop?: XactRecord} {
  if (targetMicros === undefined) return {last: records[records.length - 1]};
  const index = records.findIndex((record) => record.micros > targetMicros);
  if (index < 0) return {last: records[records.length - 1]};
  return {last: index > 0 ? records[index - 1] : undefined, stop: records[index]};
}

/**
 * Reads restored segments backwards from the last one until the expected point is established: a stop record
 * (time targets) with a replayed record before it, or (latest) a last record.
 */
export async function findExpectedPoint(repo: Repository, segments: string[], targetMicros: bigint | undefined, binDir?: string): Promise<ExpectedPoint> {
  const dir = await mkdtemp(join(tmpdir(), 'pgbk-drill-wal-'));
  try {
    let records: XactRecord[] = [];
    const read: string[] = [];
    for (let index = segments.length - 1; index >= 0; index--) {
      const segment = segments[index]!;
      // streamed: the newest segment may have come from pgbk wal-receive (archive-get serves it at the end of the archive).
      await getWalFile(repo, segment, join(dir, segment), {streamed: true});
      let output: string;
      try {
        ({stdout: output} = await runPg('pg_waldump', ['--rmgr=Transaction', join(dir, segment)], {binDir, env: {TZ: 'UTC'}}));
      } catch (error) {
        // pg_waldump exits non-zero at the end of valid WAL in a partly filled segment; what it printed counts.
        output = String((error as {cause?: {stdout?: unknown}}).cause?.stdout ?? '');
      }
      await rm(join(dir, segment), {force: true});
      read.unshift(segment);
      records = [...parseXactRecords(output), ...records];
      const point = expectedPoint(records, targetMicros);
      if (point.last !== undefined) return {...point, segments: read};
    }
    return {...expectedPoint(records, targetMicros), segments: read};
  } finally {
    await rm(dir, {recursive: true, force: true});
  }
}

export interface ServerPoint {
  /** "recovery stopping before commit of transaction 745, time 2026-..." */
  stopXid?: string;
  stopKind?: 'commit' | 'abort';
  stopMicros?: bigint;
  stopText?: string;
  /** "last completed transaction was at log time ..." */
  lastMicros?: bigint;
  lastText?: string;
}

/** What the restored server says about where it stopped (its log, log_timezone = UTC) (pure). */
export function readServerPoint(log: string): ServerPoint {
  const point: ServerPoint = {};
  const stop = /recovery stopping before (commit|abort) of transaction (\d+), time ([^\n]+)/.exec(log);
  if (stop) {
    point.stopKind = stop[1] as 'commit' | 'abort';
    point.stopXid = stop[2]!;
    point.stopText = stop[3]!.trim();
    point.stopMicros = parsePgTimestamp(point.stopText);
  }
  const matches = [...log.matchAll(/last completed transaction was at log time ([^\n]+)/g)];
  const last = matches[matches.length - 1]?.[1]?.trim();
  if (last) {
    point.lastText = last;
    point.lastMicros = parsePgTimestamp(last);
  }
  return point;
}
