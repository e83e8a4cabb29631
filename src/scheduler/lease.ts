// Leases in the repository: one run of a job per policy at a time, across scheduler processes and hosts.
//
// S3 has no compare-and-swap we can rely on everywhere (conditional writes are recent and not in every
// S3-compatible service), so a lease is taken by "write, settle, read back" — last writer wins:
//   1. read locks/<job>.json; if it is held (not released, not expired) by someone else → busy;
//      if it already belongs to this cron slot (tick) or a later one → that slot was run by another scheduler;
//   2. write our claim (holder id + a random token + the tick + an expiry);
//   3. wait a settle delay (longer than the time between a competitor's read in step 1 and its write in step 2);
//   4. read it back: only the claim that is stored now may run; everyone else backs off.
// S3 (and MinIO, and the local driver) give read-after-write consistency, so after the settle delay every
// racer reads the same last claim and exactly one proceeds. A holder renews the expiry while its job runs,
// so a crashed holder blocks the job for at most one TTL. Release marks the lease released (keeping the tick,
// so a scheduler that comes late to the same slot does not run it a second time).

import {randomBytes} from 'node:crypto';
import {hostname} from 'node:os';
import {text} from 'node:stream/consumers';
import {ObjectNotFoundError} from '../errors.js';
import {lockKey} from '../storage/layout.js';
import type {Repository} from '../storage/repository.js';

export interface LeaseRecord {
  job: string;
  policy: string;
  /** hostname/pid/random: who holds it. */
  holder: string;
  /** Random per claim: two claims of one holder differ. */
  token: string;
  /** The cron slot this run belongs to (ISO 8601), if it was scheduled. */
  tick?: string;
  acquiredAt: string;
  expiresAt: string;
  releasedAt?: string;
}

export type AcquireResult =
  | {acquired: true; lease: LeaseRecord}
  | {acquired: false; reason: 'held' | 'tick-taken' | 'lost-race'; current?: LeaseRecord};

export interface LeaseOptions {
  holder: string;
  ttlMs: number;
  /** Wait between writing a claim and reading it back. */
  settleMs: number;
  now?: () => Date;
  sleep?: (ms: number) => Promise<void>;
}

/** hostname/pid/random — unique per scheduler process. */
export function holderId(): string {
  return `${hostname()}/${process.pid}/${randomBytes(4).toString('hex')}`;
}

export async function readLease(repo: Repository, job: string): Promise<LeaseRecord | undefined> {
  let body: string;
  try {
    body = await text(await repo.get(lockKey(job)));
  } catch (error) {
    if (error instanceof ObjectNotFoundError) return undefined;
    throw error;
  }
  try {
    const parsed = JSON.parse(body) as LeaseRecord;
    return typeof parsed?.holder === 'string' && typeof parsed.token === 'string' ? parsed : undefined;
  } catch {
    return undefined; // unreadable (should not happen: puts are atomic) — treated as free
  }
}

/** Held: not released and not expired at `now`. */
export function isHeld(lease: LeaseRecord | undefined, now: Date): lease is LeaseRecord {
  return lease !== undefined && !lease.releasedAt && Date.parse(lease.expiresAt) > now.getTime();
}

function sameClaim(a: LeaseRecord | undefined, b: LeaseRecord): boolean {
  return a !== undefined && a.holder === b.holder && a.token === b.token;
}

async function writeLease(repo: Repository, lease: LeaseRecord): Promise<void> {
  await repo.put(lockKey(lease.job), Buffer.from(`${JSON.stringify(lease)}\n`));
}

const defaultSleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Tries to take the lease of `job` (for the cron slot `tick`, when given). */
export async function acquireLease(
  repo: Repository, policy: string, job: string, options: LeaseOptions & {tick?: Date},
): Promise<AcquireResult> {
  const now = options.now ?? (() => new Date());
  const sleep = options.sleep ?? defaultSleep;
  const current = await readLease(repo, job);
  if (options.tick && current?.tick && Date.parse(current.tick) >= options.tick.getTime()) {
    return {acquired: false, reason: 'tick-taken', current};
  }
  if (isHeld(current, now())) return {acquired: false, reason: 'held', current};
  const start = now();
  const claim: LeaseRecord = {
    job,
    policy,
    holder: options.holder,
    token: randomBytes(8).toString('hex'),
    tick: options.tick?.toISOString(),
    acquiredAt: start.toISOString(),
    expiresAt: new Date(start.getTime() + options.ttlMs).toISOString(),
  };
  await writeLease(repo, claim);
  await sleep(options.settleMs);
  const stored = await readLease(repo, job);
  if (!sameClaim(stored, claim)) return {acquired: false, reason: 'lost-race', current: stored};
  return {acquired: true, lease: claim};
}

/** Extends the expiry; false (and nothing written) when the lease is no longer ours. */
export async function renewLease(repo: Repository, lease: LeaseRecord, ttlMs: number, now: Date = new Date()): Promise<boolean> {
  const stored = await readLease(repo, lease.job);
  if (!sameClaim(stored, lease)) return false;
  lease.expiresAt = new Date(now.getTime() + ttlMs).toISOString();
  await writeLease(repo, lease);
  return true;
}

/** Marks the lease released (when it is still ours); the record stays, with its tick. */
export async function releaseLease(repo: Repository, lease: LeaseRecord, now: Date = new Date()): Promise<boolean> {
  const stored = await readLease(repo, lease.job);
  if (!sameClaim(stored, lease)) return false;
  await writeLease(repo, {...lease, releasedAt: now.toISOString(), expiresAt: now.toISOString()});
  return true;
}
