// Look-ahead for archive_command. PostgreSQL archives one segment at a time, each through a new pgbk process;
// with a backlog of .ready segments that caps throughput at one process start plus one upload per segment. So
// when archive-push sees a backlog it starts one background pusher that archives the other .ready segments in
// parallel and leaves a marker (the segment's SHA-256) for each once it is durably stored. When PostgreSQL then
// asks for such a segment, archive-push only checks the file against its marker — no repository access.

import {spawn} from 'node:child_process';
import {existsSync} from 'node:fs';
import {mkdir, readdir, readFile, rename, stat, unlink, writeFile} from 'node:fs/promises';
import {join} from 'node:path';
import type {Repository} from '../storage/repository.js';
import {acquirePidLock, lockHolderAlive, releasePidLock} from '../util/pid-lock.js';
import {checkNoConflict, fileFingerprint, pushWalFile, type PushOptions, type PushResult} from './push.js';
import {busyName, shellMarkerContext, shellMarkerLine, shellMarkerName} from './push-fast.js';
import {findArchivedMany} from './archive.js';
import {recordBackgroundFailure} from './background-log.js';

export const PUSHED_DIR = join('pg_wal', 'pgbk-spool', 'pushed');
const LOCK_NAME = '.pusher.lock';
const SEGMENT_RE = /^[0-9A-F]{24}$/;

export interface PushAheadSettings {
  parallel: number;
  /** Segments one pusher archives before it exits (the next archive-push starts another if needed). */
  max: number;
  /** How long an idle pusher waits for the next .ready segment before it exits (a burst keeps one pusher). */
  lingerMs: number;
}

export const DEFAULT_PUSH_AHEAD: PushAheadSettings = {parallel: 4, max: 1024, lingerMs: 3000};

/** The markers folder of the data directory archive_command runs in, or undefined outside one. */
export function pushedDirOf(cwd: string): string | undefined {
  return existsSync(join(cwd, 'PG_VERSION')) && existsSync(join(cwd, 'pg_wal', 'archive_status')) ? join(cwd, PUSHED_DIR) : undefined;
}

/** Which repository a marker vouches for: the repository's id and where it is (URL and endpoint). */
export interface MarkerBinding {
  repositoryId: string;
  location: string;
}

/** The location part of a binding: the policy's repository URL and endpoint, as configured. */
export function repositoryLocation(config: {url: string; endpoint?: string}): string {
  return config.endpoint ? `${config.url} at ${config.endpoint}` : config.url;
}

function markerText(sha256: string, binding: MarkerBinding, fingerprint: string): string {
  return `${sha256}\n${binding.repositoryId}\n${binding.location}\n${fingerprint}\n`;
}

/**
 * True when the background pusher already archived this very file (same SHA-256) into this very repository (same
 * location; same repository id when `repositoryId` is given); the marker is consumed. A marker that does not match
 * is removed, and the caller archives the file itself.
 */
export async function takePushedMarker(dir: string, walPath: string, walFile: string, location: string, repositoryId?: () => Promise<string>): Promise<boolean> {
  const marker = join(dir, walFile);
  const text = await readFile(marker, 'utf8').catch(() => undefined);
  if (text === undefined) return false;
  let matches = false;
  try {
    const [sha256, markedId, markedLocation, fingerprint] = text.split('\n');
    // The very file the pusher read and stored (same device, inode, size and mtime): a completed segment does not
    // change while it waits for archive_command, so there is nothing to re-read or re-hash.
    matches = Boolean(sha256 && fingerprint) && fingerprint === fileFingerprint(await stat(walPath, {bigint: true})) &&
      markedLocation === location && (repositoryId === undefined || markedId === (await repositoryId()));
  } catch {
    matches = false;
  }
  await Promise.all([marker, join(dir, shellMarkerName(walFile))].map((path) => unlink(path).catch(() => undefined)));
  return matches;
}

/**
 * archive-push started while the pusher is on this very segment: wait for the pusher's verdict (its marker, or its
 * giving up) instead of reading, compressing and uploading the same file a second time.
 */
export async function awaitPusher(dir: string, walFile: string, timeoutMs = 120_000): Promise<void> {
  const busy = join(dir, busyName(walFile));
  const deadline = Date.now() + timeoutMs;
  while (existsSync(busy) && !existsSync(join(dir, walFile)) && Date.now() < deadline) {
    if (!(await pusherRunning(dir))) {
      await unlink(busy).catch(() => undefined);
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/**
 * Segments waiting for archive_command (.ready) after `after` (the one PostgreSQL is archiving now: it archives
 * in order), oldest first, without those already pushed ahead.
 */
export async function readyBacklog(cwd: string, after: string): Promise<string[]> {
  const status = join(cwd, 'pg_wal', 'archive_status');
  const dir = join(cwd, PUSHED_DIR);
  const pushed = new Set(await readdir(dir).catch(() => [] as string[]));
  return (await readdir(status).catch(() => [] as string[]))
    .filter((entry) => entry.endsWith('.ready'))
    .map((entry) => entry.slice(0, -'.ready'.length))
    .filter((name) => SEGMENT_RE.test(name) && name > after && !pushed.has(name))
    .sort();
}

export async function pusherRunning(dir: string): Promise<boolean> {
  return lockHolderAlive(join(dir, LOCK_NAME));
}

export function spawnPusher(argv: {execPath: string; script: string; policyArgs: string[]; cwd: string}, after: string): void {
  spawn(argv.execPath, [argv.script, 'archive-push-ahead', after, ...argv.policyArgs], {cwd: argv.cwd, detached: true, stdio: 'ignore'}).unref();
}

/** What the shell fast path compares a marker with (see push-fast.ts); without it only Node markers are written. */
export interface ShellMarkers {
  policyFile: string;
}

/**
 * The background pusher: keeps `parallel` .ready segments in flight, oldest first, and marks each once durable and
 * listed without another content (one listing for whatever completed together). Stops after `max` segments, when
 * no segment became ready for `lingerMs`, or at the first failure (archive_command then reports it itself).
 */
export async function runPusher(repo: Repository, cwd: string, after: string, binding: MarkerBinding, options: PushOptions,
  settings: PushAheadSettings = DEFAULT_PUSH_AHEAD, shell?: ShellMarkers): Promise<number> {
  const dir = join(cwd, PUSHED_DIR);
  await mkdir(dir, {recursive: true, mode: 0o700});
  const lock = join(dir, LOCK_NAME);
  if (!(await acquirePidLock(lock))) return 0;
  let pushed = 0;
  let started = 0;
  let failed = false;
  const inflight = new Map<string, Promise<void>>();
  const completed: PushResult[] = [];
  const seen = new Set<string>();
  try {
    await removeStaleMarkers(cwd, dir);
    const context = shell ? await shellMarkerContext(cwd, shell.policyFile) : undefined;
    const mark = async (results: PushResult[]) => {
      // One listing for what completed together, after writing it: another copy with other content leaves that
      // segment unmarked, and archive-push then reports the conflict.
      const copies = await findArchivedMany(repo, results.map((result) => result.walFile)).catch(() => undefined);
      for (const result of results) {
        try {
          if (!copies) throw new Error('the batch could not be listed');
          await checkNoConflict(repo, result, result.created ?? true, copies.get(result.walFile) ?? []);
          await writeAtomically(join(dir, result.walFile), markerText(result.sha256, binding, result.fingerprint));
          if (context) {
            const segment = await stat(join(cwd, 'pg_wal', result.walFile), {bigint: true});
            if (fileFingerprint(segment) === result.fingerprint) {
              await writeAtomically(join(dir, shellMarkerName(result.walFile)), `${shellMarkerLine(context.pid, segment, context.policy)}\n`);
            }
          }
          pushed++;
        } catch (error) {
          failed = true;
          await recordBackgroundFailure(cwd, 'archive-push-ahead', `${result.walFile} archived ahead but not confirmed: ${(error as Error).message}`);
        }
      }
      await Promise.all(results.map((result) => unlink(join(dir, busyName(result.walFile))).catch(() => undefined)));
    };
    let idleSince = Date.now();
    while (!failed) {
      if (started < settings.max && inflight.size < settings.parallel) {
        const backlog = (await readyBacklog(cwd, after)).filter((name) => !seen.has(name)).slice(0, settings.parallel - inflight.size);
        for (const walFile of backlog) {
          seen.add(walFile);
          started++;
          await writeFile(join(dir, busyName(walFile)), '');
          inflight.set(walFile, pushWalFile(repo, join(cwd, 'pg_wal', walFile), {...options, deferConflictCheck: true}).then(
            (result) => { completed.push(result); },
            async (error) => {
              // Archived meanwhile and recycled by PostgreSQL (file gone), or a real failure: either way archive-push
              // handles this segment itself and reports what is wrong. A real failure is also logged for the operator.
              failed = true;
              await unlink(join(dir, busyName(walFile))).catch(() => undefined);
              if ((error as NodeJS.ErrnoException).code !== 'ENOENT') {
                await recordBackgroundFailure(cwd, 'archive-push-ahead', `cannot archive ${walFile} ahead: ${(error as Error).message}`);
              }
            },
          ).finally(() => inflight.delete(walFile)));
        }
      }
      if (inflight.size > 0) {
        await Promise.race(inflight.values());
        if (completed.length > 0) await mark(completed.splice(0));
        idleSince = Date.now();
        continue;
      }
      if (started >= settings.max || Date.now() - idleSince > settings.lingerMs) break;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    await Promise.allSettled(inflight.values());
    if (completed.length > 0) await mark(completed.splice(0));
  } finally {
    await removeStaleMarkers(cwd, dir).catch(() => undefined);
    await releasePidLock(lock);
  }
  return pushed;
}

async function writeAtomically(path: string, content: string): Promise<void> {
  const temp = `${path}.tmp`;
  await writeFile(temp, content);
  await rename(temp, path);
}

/** Markers of segments PostgreSQL has finished with (.done, or the file recycled). */
async function removeStaleMarkers(cwd: string, dir: string): Promise<void> {
  for (const entry of await readdir(dir).catch(() => [] as string[])) {
    const segment = entry.split('.')[0]!;
    if (!SEGMENT_RE.test(segment)) continue;
    // Busy files are the running pusher's; any left at start are a dead pusher's.
    if (entry.endsWith('.busy') || !existsSync(join(cwd, 'pg_wal', 'archive_status', `${segment}.ready`))) {
      await unlink(join(dir, entry)).catch(() => undefined);
    }
  }
}
