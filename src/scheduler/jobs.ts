// One scheduled job run: `pgbk <job> --policy <file> --json` as a child process (a crash stays in the child,
// signals can be forwarded), its outcome, and the record of it kept in the repository (jobs/<job>/last.json).

import {spawn, type ChildProcess} from 'node:child_process';
import {readdirSync, readFileSync} from 'node:fs';
import {text} from 'node:stream/consumers';
import {fileURLToPath} from 'node:url';
import {ObjectNotFoundError} from '../errors.js';
import {unfinishedFolders} from '../backup/folders.js';
import {backupIdFor, jobResultKey} from '../storage/layout.js';
import type {Repository} from '../storage/repository.js';
import {lastLines} from './log.js';

export const JOBS = ['backup', 'expire', 'drill'] as const;
export type JobName = (typeof JOBS)[number];

/** bin/pgbk of this installation (dist/scheduler/jobs.js → ../../bin/pgbk; likewise from src/ under vitest). */
export const PGBK_BIN = fileURLToPath(new URL('../../bin/pgbk', import.meta.url));

/** What jobs/<job>/last.json holds: the last run of a job, as `pgbk status` on any host reads it. */
export interface JobResult {
  job: string;
  policy: string;
  /** The cron slot of the run (ISO 8601), when scheduled. */
  tick?: string;
  /** Which scheduler ran it (hostname/pid/random). */
  holder?: string;
  startedAt: string;
  finishedAt: string;
  ok: boolean;
  durationMs: number;
  exitCode: number | null;
  signal?: string;
  error?: string;
  /** The child's --json output, parsed, when it printed any. */
  output?: unknown;
  /** The last successful run (this one when ok), carried over from earlier results. */
  lastSuccessAt?: string;
  lastSuccessDurationMs?: number;
}

export interface RunningJob {
  child: ChildProcess;
  /** Resolves once the child has exited. */
  done: Promise<ChildOutcome>;
}

export interface ChildOutcome {
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** The child could not be started at all. */
  spawnError?: Error;
}

const MAX_CAPTURE = 1024 * 1024;

/**
 * Starts `node bin/pgbk <job> --policy <file> --json` in its own process group (a Ctrl-C at the terminal
 * reaches the scheduler only, which then decides), with the scheduler's environment.
 */
export function startJob(job: string, policyFile: string, options: {env: NodeJS.ProcessEnv; bin?: string; cwd?: string}): RunningJob {
  const child = spawn(process.execPath, [options.bin ?? PGBK_BIN, job, '--policy', policyFile, '--json'], {
    env: options.env,
    cwd: options.cwd,
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  let stdout = '';
  let stderr = '';
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
    if (stdout.length < MAX_CAPTURE) stdout += chunk;
  });
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
    stderr = (stderr + chunk).slice(-64 * 1024);
  });
  const done = new Promise<ChildOutcome>((resolve) => {
    let spawnError: Error | undefined;
    child.once('error', (error) => {
      spawnError = error;
      // 'close' may never come when spawning failed
      if (child.pid === undefined) resolve({exitCode: null, signal: null, stdout, stderr, spawnError});
    });
    child.once('close', (exitCode, signal) => resolve({exitCode, signal, stdout, stderr, spawnError}));
  });
  return {child, done};
}

/** The child's --json document, when stdout holds one. */
export function parseOutput(stdout: string): unknown {
  const trimmed = stdout.trim();
  if (!trimmed) return undefined;
  try {
    return JSON.parse(trimmed);
  } catch {
    return {text: trimmed.slice(0, 4000)};
  }
}

export function describeFailure(outcome: ChildOutcome, terminated: boolean): string {
  if (outcome.spawnError) return `could not start pgbk: ${outcome.spawnError.message}`;
  const how = outcome.signal ? `killed by ${outcome.signal}` : `exit ${outcome.exitCode}`;
  const why = lastLines(outcome.stderr);
  return `${terminated ? 'terminated by scheduler shutdown, ' : ''}${how}${why ? `: ${why}` : ''}`;
}

export async function readJobResult(repo: Repository, job: string): Promise<JobResult | undefined> {
  try {
    return JSON.parse(await text(await repo.get(jobResultKey(job)))) as JobResult;
  } catch (error) {
    if (error instanceof ObjectNotFoundError || error instanceof SyntaxError) return undefined;
    throw error;
  }
}

/** Writes jobs/<job>/last.json, carrying the last success over from the previous record. */
export async function writeJobResult(repo: Repository, result: JobResult): Promise<JobResult> {
  let record = result;
  if (result.ok) {
    record = {...result, lastSuccessAt: result.finishedAt, lastSuccessDurationMs: result.durationMs};
  } else {
    const previous = await readJobResult(repo, result.job).catch(() => undefined);
    if (previous?.lastSuccessAt) {
      record = {...result, lastSuccessAt: previous.lastSuccessAt, lastSuccessDurationMs: previous.lastSuccessDurationMs};
    }
  }
  await repo.put(jobResultKey(result.job), Buffer.from(`${JSON.stringify(record, null, 2)}\n`));
  return record;
}

/** Process ids below `pid` (children, grandchildren…), from /proc; empty where there is no /proc. */
export function descendants(pid: number): number[] {
  const parents = new Map<number, number[]>();
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return [];
  }
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      // pid (comm) state ppid …; comm may hold spaces and parentheses: split after the last ')'
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      parents.set(ppid, [...(parents.get(ppid) ?? []), Number(entry)]);
    } catch {
      // gone meanwhile
    }
  }
  const found: number[] = [];
  const queue = [pid];
  while (queue.length > 0) {
    for (const child of parents.get(queue.shift()!) ?? []) {
      found.push(child);
      queue.push(child);
    }
  }
  return found;
}

export function signalPids(pids: number[], signal: NodeJS.Signals): void {
  for (const pid of pids) {
    try {
      process.kill(pid, signal);
    } catch {
      // already gone
    }
  }
}

/**
 * After a backup child was killed: backup folders begun since `since` that hold objects but no manifest and
 * no live owner are leftovers of that run (a backup exists only once its manifest does; the killed run's owner
 * marker names a dead process); remove them so nothing half written stays. A folder a live run owns (a manual
 * `pgbk backup` elsewhere) is never touched.
 */
export async function removeUnfinishedBackups(repo: Repository, since: Date, now: Date = new Date()): Promise<string[]> {
  const firstId = backupIdFor(new Date(Math.floor(since.getTime() / 1000) * 1000));
  const removed: string[] = [];
  for await (const folder of unfinishedFolders(repo, now)) {
    if (folder.id < firstId || folder.live) continue;
    await repo.remove(folder.keys);
    removed.push(folder.id);
  }
  return removed;
}
