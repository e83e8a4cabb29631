// pgbk wal-receive: pg_receivewal streams the primary's WAL through a physical replication slot into a local spool
// directory; every flush_interval the segment being received (pg_receivewal's <segment>.partial, zero-padded to
// the segment size) is uploaded as a streamed object (receive-store.ts), so that a restore after the loss of the
// primary gets the WAL up to a second or so before it, not only up to the last segment archive_command shipped.
//
// archive_command stays the source of truth for complete segments, and the only writer of their keys: the
// receiver never creates a segment key, so it can never make archive-push see "different content" and block the
// server's archiving. When pg_receivewal completes a segment, the receiver uploads it whole as the segment's newest
// streamed object (it covers the time until archive_command has shipped it), and once the archive holds the
// segment it compares checksums: equal, the local file and the streamed objects of that segment are removed;
// different, it says so (the archived copy wins: archive-get only serves streamed data for segments that are not
// archived at the end of the archive) and removes its own.

import {mkdir, readdir, readFile, rm, stat} from 'node:fs/promises';
import {join} from 'node:path';
import type {Policy, WalStreamingConfig} from '../policy/types.js';
import type {Repository} from '../storage/repository.js';
import type {RepositoryIdentity} from '../identity/identity.js';
import {compressBuffer} from '../util/parallel-gzip.js';
import {sha256Hex} from '../util/streams.js';
import {splitPassword} from '../pg/conninfo.js';
import {runPg, spawnPg, toolError} from '../pg/run.js';
import {findArchived} from './archive.js';
import {LONG_PAGE_HEADER_BYTES, segmentMismatch} from './page-header.js';
import {findStreamed, receivedBytes, streamedKey} from './receive-store.js';
import {PgbkError} from '../errors.js';

export class ReceiverError extends PgbkError {
  readonly code = 'wal.receive';
}

export type ReceiveLog = (event: Record<string, unknown> & {event: string}) => void;

export interface ReceiveOptions {
  policy: Policy & {walStreaming: WalStreamingConfig};
  repo: Repository;
  identity: RepositoryIdentity;
  log: ReceiveLog;
  signal: AbortSignal;
}

const SEGMENT_RE = /^[0-9A-F]{24}$/;
const PARTIAL_RE = /^([0-9A-F]{24})\.partial$/;

/**
 * One run of pg_receivewal and the uploads beside it, until pg_receivewal exits (the server went away: it runs
 * with --no-loop, the caller restarts it with backoff) or `signal` aborts. The last received bytes are uploaded
 * once more after pg_receivewal has ended. Rejects with ReceiverError when pg_receivewal failed.
 */
export async function receiveOnce(options: ReceiveOptions): Promise<void> {
  const {policy, log, signal} = options;
  const config = policy.walStreaming;
  await mkdir(config.spoolDir, {recursive: true, mode: 0o700});
  const {url, env} = splitPassword(policy.postgres.url);
  const binDir = policy.postgres.binDir;
  try {
    await runPg('pg_receivewal', ['--create-slot', '--if-not-exists', '--slot', config.slot, '--dbname', url], {binDir, env});
  } catch (error) {
    throw new ReceiverError(`cannot create the replication slot ${config.slot}: ${(error as Error).message}`,
      'the role in postgres.url needs REPLICATION, pg_hba.conf a "replication" line for it, and max_replication_slots a free slot', {cause: error});
  }
  const child = spawnPg('pg_receivewal', ['--directory', config.spoolDir, '--slot', config.slot, '--dbname', url, '--no-loop', '--status-interval', '1'],
    {binDir, env, dieWithParent: true, cancelSignal: signal});
  let ended: {error?: unknown} | undefined;
  const done = child.then(() => { ended = {}; }, (error: unknown) => { ended = {error}; });
  log({event: 'receiving', policy: policy.name, slot: config.slot, spool: config.spoolDir, pid: child.pid});
  const uploader = new StreamUploader(options);
  try {
    while (!ended && !signal.aborted) {
      await uploader.round().catch((error: unknown) => log({event: 'upload-failed', level: 'warn', policy: policy.name, error: (error as Error).message}));
      await Promise.race([done, new Promise((resolve) => setTimeout(resolve, config.flushIntervalSeconds * 1000))]);
    }
  } finally {
    if (!ended) child.kill('SIGTERM');
    await done;
    // What pg_receivewal wrote last (it flushes on SIGTERM and on a lost connection).
    await uploader.round().catch((error: unknown) => log({event: 'upload-failed', level: 'warn', policy: policy.name, error: (error as Error).message}));
  }
  if (ended?.error && !signal.aborted) {
    throw new ReceiverError(toolError('pg_receivewal', ended.error).message);
  }
  if (!signal.aborted) throw new ReceiverError('pg_receivewal exited (the server closed the connection)');
}

/** Uploads the spool's partial segment when it changed, and settles complete segments with the archive. */
export class StreamUploader {
  private lastPartial?: {name: string; mtimeMs: number; size: number};
  /** Complete segments already uploaded as streamed objects (waiting for archive_command). */
  private readonly uploadedComplete = new Set<string>();
  /** Uploads of the growing segment are logged once a minute (one a second otherwise). */
  private loggedAt = 0;

  constructor(private readonly options: Pick<ReceiveOptions, 'policy' | 'repo' | 'identity' | 'log'>) {}

  async round(): Promise<void> {
    const {spoolDir} = this.options.policy.walStreaming;
    const names = (await readdir(spoolDir)).sort();
    for (const name of names) {
      if (SEGMENT_RE.test(name)) await this.settleComplete(name);
    }
    const partial = names.filter((name) => PARTIAL_RE.test(name)).at(-1);
    if (partial) await this.uploadPartial(partial);
  }

  private async uploadPartial(name: string): Promise<void> {
    const path = join(this.options.policy.walStreaming.spoolDir, name);
    const info = await stat(path).catch(() => undefined);
    if (!info) return; // completed (renamed) meanwhile: the next round settles it
    if (this.lastPartial && this.lastPartial.name === name && this.lastPartial.mtimeMs === info.mtimeMs && this.lastPartial.size === info.size) return;
    const segment = PARTIAL_RE.exec(name)![1]!;
    await this.upload(segment, await readFile(path));
    this.lastPartial = {name, mtimeMs: info.mtimeMs, size: info.size};
  }

  /** A segment pg_receivewal completed: upload it whole until the archive has it, then compare and clean up. */
  private async settleComplete(segment: string): Promise<void> {
    const {repo, policy, log} = this.options;
    const path = join(policy.walStreaming.spoolDir, segment);
    const copies = await findArchived(repo, segment);
    if (copies.length === 0) {
      if (!this.uploadedComplete.has(segment)) {
        await this.upload(segment, await readFile(path));
        this.uploadedComplete.add(segment);
      }
      return;
    }
    const sha256 = sha256Hex(await readFile(path));
    if (copies.every((copy) => copy.sha256 === sha256)) {
      log({event: 'segment-agrees', policy: policy.name, segment, sha256});
    } else {
      log({event: 'segment-differs', level: 'warn', policy: policy.name, segment, streamed: sha256, archived: copies.map((copy) => copy.sha256),
        message: `${segment} as streamed differs from the archived copy: the archived one is kept (archive_command is the source of truth)`});
    }
    const streamed = await findStreamed(repo, segment);
    if (streamed.length > 0) await repo.remove(streamed.map((object) => object.key));
    await rm(path, {force: true});
    this.uploadedComplete.delete(segment);
  }

  /** One streamed object for `segment`; then the older ones of that segment go. */
  private async upload(segment: string, data: Buffer): Promise<void> {
    const {repo, policy, identity} = this.options;
    const mismatch = segmentMismatch(data.subarray(0, LONG_PAGE_HEADER_BYTES), segment, identity);
    if (mismatch) throw new ReceiverError(`refusing to upload streamed ${segment}: ${mismatch}`);
    const sha256 = sha256Hex(data);
    const end = receivedBytes(data);
    const key = streamedKey(segment, end, sha256, policy.compression.codec);
    const before = await findStreamed(repo, segment);
    if (!before.some((object) => object.key === key)) await repo.put(key, await compressBuffer(data, policy.compression));
    const older = before.filter((object) => object.key !== key);
    if (older.length > 0) await repo.remove(older.map((object) => object.key));
    if (end === data.length || Date.now() - this.loggedAt >= 60_000) {
      this.loggedAt = Date.now();
      this.options.log({event: 'uploaded', policy: policy.name, segment, bytes: end, complete: end === data.length, key});
    }
  }
}

/**
 * Runs the receiver until `signal` aborts, restarting it after each failure with a backoff (1 s doubling to 30 s;
 * back to 1 s once a run lasted a minute). One receiver per spool directory (a pid lock in it).
 */
export async function superviseReceiver(options: ReceiveOptions): Promise<void> {
  const {policy, log, signal} = options;
  const {acquirePidLock, releasePidLock} = await import('../util/pid-lock.js');
  await mkdir(policy.walStreaming.spoolDir, {recursive: true, mode: 0o700});
  const lock = join(policy.walStreaming.spoolDir, 'pgbk-wal-receive.pid');
  if (!(await acquirePidLock(lock))) {
    throw new ReceiverError(`another pgbk wal-receive runs for ${policy.walStreaming.spoolDir} (${lock})`, 'one receiver per policy: stop the other one first');
  }
  let delayMs = 1000;
  try {
    while (!signal.aborted) {
      const started = Date.now();
      try {
        await receiveOnce(options);
      } catch (error) {
        if (signal.aborted) break;
        if (Date.now() - started > 60_000) delayMs = 1000;
        log({event: 'receiver-failed', level: 'error', policy: policy.name, error: (error as Error).message, retryInMs: delayMs});
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, delayMs);
          signal.addEventListener('abort', () => { clearTimeout(timer); resolve(); }, {once: true});
        });
        delayMs = Math.min(delayMs * 2, 30_000);
      }
    }
  } finally {
    await releasePidLock(lock);
  }
  log({event: 'stopped', policy: policy.name});
}
