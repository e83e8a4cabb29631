// Look-ahead for restore_command: while PostgreSQL replays segment N, a background pgbk fetches the next ones in
// parallel into a spool inside pg_wal (pg_basebackup never copies pg_wal's contents), verified against their
// checksums. archive-get then only renames a spooled file into place, without even opening the repository.

import {spawn} from 'node:child_process';
import {existsSync} from 'node:fs';
import {mkdir, readdir, readFile, rename, rm, unlink, writeFile} from 'node:fs/promises';
import {join} from 'node:path';
import {WalNotFoundError} from '../errors.js';
import {acquirePidLock, lockHolderAlive, releasePidLock} from '../util/pid-lock.js';
import type {Repository} from '../storage/repository.js';
import {getWalFile} from './get.js';
import {recordBackgroundFailure} from './background-log.js';
import type {SegmentOwner} from './page-header.js';
import {parseWalFileName, segmentName, segmentNumberOf} from './name.js';

export const SPOOL_DIR = join('pg_wal', 'pgbk-spool');
const LOCK_NAME = '.prefetch.lock';
const REQUEST_NAME = '.requested';

export interface PrefetchSettings {
  /** Segments to keep fetched ahead of the one PostgreSQL asks for. */
  ahead: number;
  /** Fetches in flight at once. */
  parallel: number;
  segmentSize: number;
  /** The repository's cluster: segments of another database system are never spooled. */
  owner?: SegmentOwner;
}

export const DEFAULT_PREFETCH: PrefetchSettings = {ahead: 16, parallel: 4, segmentSize: 16 * 1024 * 1024};

/** The spool of a data directory, or undefined when `cwd` is not one (archive-get run by hand). */
export function spoolOf(cwd: string): string | undefined {
  return existsSync(join(cwd, 'PG_VERSION')) && existsSync(join(cwd, 'pg_wal')) ? join(cwd, SPOOL_DIR) : undefined;
}

/** Moves a spooled copy of `walFile` to `destPath`; false when there is none. */
export async function takeFromSpool(spool: string, walFile: string, destPath: string): Promise<boolean> {
  try {
    await rename(join(spool, walFile), destPath);
    return true;
  } catch {
    return false;
  }
}

/**
 * After PostgreSQL asked for `walFile`: records the request for the prefetcher, drops spooled segments PostgreSQL
 * has passed, and starts a prefetcher (for the segments after `walFile`) when none runs. Never fails the caller.
 */
export async function planPrefetch(spool: string, walFile: string, start: (requested: string) => void): Promise<void> {
  try {
    const name = parseWalFileName(walFile);
    if (name.kind !== 'segment') return;
    await mkdir(spool, {recursive: true, mode: 0o700});
    await writeFile(join(spool, REQUEST_NAME), walFile);
    // Segment names of one timeline sort in segment order: no need to know the segment size here.
    for (const entry of await readdir(spool)) {
      if (!/^[0-9A-F]{24}$/.test(entry)) continue;
      if (entry.slice(0, 8) !== walFile.slice(0, 8) || entry <= walFile) await unlink(join(spool, entry)).catch(() => undefined);
    }
    if (!(await prefetcherRunning(spool))) start(walFile);
  } catch {
    // Look-ahead is an optimisation: archive-get itself has already done its job.
  }
}

/** The data directory's WAL segment size, from pg_controldata (16 MiB when it cannot be read). */
export async function walSegmentSizeOf(dataDir: string, binDir: string | undefined): Promise<number> {
  try {
    const {controlData} = await import('../pg/controldata.js');
    const size = Number((await controlData(dataDir, binDir))('Bytes per WAL segment'));
    return size > 0 ? size : DEFAULT_PREFETCH.segmentSize;
  } catch {
    return DEFAULT_PREFETCH.segmentSize;
  }
}

/** Starts `pgbk archive-prefetch` detached, so PostgreSQL does not wait for it. */
export function spawnPrefetcher(argv: {execPath: string; script: string; policyArgs: string[]; cwd: string}, requested: string): void {
  const child = spawn(argv.execPath, [argv.script, 'archive-prefetch', requested, ...argv.policyArgs], {
    cwd: argv.cwd, detached: true, stdio: 'ignore',
  });
  child.unref();
}

async function prefetcherRunning(spool: string): Promise<boolean> {
  return lockHolderAlive(join(spool, LOCK_NAME));
}

/**
 * The prefetcher: keeps the `ahead` segments after the last one PostgreSQL asked for in the spool, fetching
 * `parallel` at a time and stopping at the first one not archived (the end of the archive, or a timeline switch;
 * asked again a few seconds later). It ends when recovery has ended (recovery.signal gone: then it removes the
 * spool, so no copy is left in pg_wal), when the data directory is gone, or after a minute without requests.
 */
export async function runPrefetcher(repo: Repository, dataDir: string, requested: string, options: Partial<PrefetchSettings> = {}): Promise<number> {
  const settings: PrefetchSettings = {...DEFAULT_PREFETCH, ...options};
  const fromSegment = segmentName(Number.parseInt(requested.slice(0, 8), 16), segmentNumberOf(requested, settings.segmentSize) + 1n, settings.segmentSize);
  const spool = join(dataDir, SPOOL_DIR);
  await mkdir(spool, {recursive: true, mode: 0o700});
  const lock = join(spool, LOCK_NAME);
  if (!(await acquirePidLock(lock))) return 0;
  let fetched = 0;
  const notArchivedUntil = new Map<string, number>();
  const timeline = Number.parseInt(fromSegment.slice(0, 8), 16);
  let lastRequest = '';
  let lastRequestAt = Date.now();
  // Each distinct failure once per run (the same one comes back at every round).
  const recorded = new Set<string>();
  try {
    for (;;) {
      if (!existsSync(join(dataDir, 'PG_VERSION'))) return fetched;
      if (!existsSync(join(dataDir, 'recovery.signal')) && !existsSync(join(dataDir, 'standby.signal'))) {
        await rm(spool, {recursive: true, force: true});
        return fetched;
      }
      const request = (await readFile(join(spool, REQUEST_NAME), 'utf8').catch(() => '')).trim();
      if (request !== lastRequest) {
        lastRequest = request;
        lastRequestAt = Date.now();
        // restore_command moves spooled segments out itself (no pgbk process): drop any it passed by.
        if (/^[0-9A-F]{24}$/.test(request)) {
          for (const entry of await readdir(spool).catch(() => [] as string[])) {
            if (/^[0-9A-F]{24}$/.test(entry) && entry.slice(0, 8) === request.slice(0, 8) && entry <= request) await unlink(join(spool, entry)).catch(() => undefined);
          }
        }
      } else if (Date.now() - lastRequestAt > 60_000) {
        return fetched;
      }
      const base = /^[0-9A-F]{24}$/.test(request) && request.slice(0, 8) === fromSegment.slice(0, 8)
        ? segmentNumberOf(request, settings.segmentSize) + 1n
        : segmentNumberOf(fromSegment, settings.segmentSize);
      let next = base;
      let stop = false;
      const worker = async () => {
        while (!stop && next < base + BigInt(settings.ahead)) {
          const name = segmentName(timeline, next++, settings.segmentSize);
          if (existsSync(join(spool, name))) continue;
          if ((notArchivedUntil.get(name) ?? 0) > Date.now()) {
            stop = true;
            continue;
          }
          try {
            await getWalFile(repo, name, join(spool, name), {attempts: 2, owner: settings.owner});
            fetched++;
          } catch (error) {
            // Not archived (yet): stop there and ask again later. Other failures: archive-get reports them.
            stop = true;
            if (error instanceof WalNotFoundError) notArchivedUntil.set(name, Date.now() + 5_000);
            else if (!recorded.has((error as Error).message)) {
              recorded.add((error as Error).message);
              await recordBackgroundFailure(dataDir, 'archive-prefetch', `cannot fetch ${name} ahead: ${(error as Error).message}`);
            }
          }
        }
      };
      await Promise.all(Array.from({length: settings.parallel}, worker));
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  } finally {
    await releasePidLock(lock);
  }
}
