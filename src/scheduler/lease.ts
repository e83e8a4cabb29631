// Leases in the repository: one run of a job per policy at a time, across scheduler processes, hosts and
// manual `pgbk backup` runs.
//
// Where the store enforces conditional writes (repository.conditionalWrites(): local always; S3 when the probe
// found If-None-Match / If-Match honoured) a lease is a compare-and-swap on locks/<job>.json:
//   1. read it with its version; held by someone else (not released, not expired) → busy; already taken for
//      this cron slot (tick) or a later one → that slot was run by another scheduler;
//   2. write our claim create-only (no lease yet) or with If-Match on the version read; a 412 means another
//      claim landed in between → lost the race. No settle delay: the store decides, however slow it is.
//   3. renew and release with If-Match on the version we wrote: a lease taken over is never written again.
// Elsewhere (the documented safe path, README "Conditional writes") the claim is "write, settle, read back",
// last writer wins: after the settle delay every racer reads the same last claim and exactly one proceeds.
// That needs the store's answers within the settle delay; conditional writes do not.
// Clock skew: expiry is compared with the reader's clock; a holder renews every quarter of the TTL, so a live
// lease looks held to any host whose clock is off by less than three quarters of the TTL.

import {randomBytes} from 'node:crypto';
import {hostname} from 'node:os';
import {ObjectNotFoundError, PreconditionFailedError} from '../errors.js';
import {lockKey} from '../storage/layout.js';
import {processAlive} from '../util/process.js';
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
  /** What runs under it, for messages ("scheduled backup", "manual backup (pgbk backup)"). */
  purpose?: string;
}

/** A lease as held in memory: the record plus the store's version of it (not stored in the object). */
export interface HeldLease extends LeaseRecord {
  /** Version token of our last write (compare-and-swap); undefined on the safe path. */
  version?: string;
}

export type AcquireResult =
  | {acquired: true; lease: HeldLease}
  | {acquired: false; reason: 'held' | 'tick-taken' | 'lost-race'; current?: LeaseRecord};

export interface LeaseOptions {
  holder: string;
  ttlMs: number;
  /** Safe path only: wait between writing a claim and reading it back. */
  settleMs: number;
  now?: () => Date;
  sleep?: (ms: number) => Promise<void>;
  purpose?: string;
}

/** hostname/pid/random — unique per scheduler process. */
export function holderId(): string {
  return `${hostname()}/${process.pid}/${randomBytes(4).toString('hex')}`;
}

function parseLease(body: Buffer): LeaseRecord | undefined {
  try {
    const parsed = JSON.parse(body.toString('utf8')) as LeaseRecord;
    return typeof parsed?.holder === 'string' && typeof parsed.token === 'string' ? parsed : undefined;
  } catch {
    return undefined; // unreadable (should not happen: puts are atomic) — treated as free
  }
}

/** The stored lease and its version; version undefined when there is none. */
async function readVersioned(repo: Repository, job: string): Promise<{lease?: LeaseRecord; version?: string}> {
  try {
    const {body, version} = await repo.getVersioned(lockKey(job));
    return {lease: parseLease(body), version};
  } catch (error) {
    if (error instanceof ObjectNotFoundError) return {};
    throw error;
  }
}

export async function readLease(repo: Repository, job: string): Promise<LeaseRecord | undefined> {
  return (await readVersioned(repo, job)).lease;
}

/**
 * Held: not released, not expired at `now`, and its holder not known to be dead (a holder on this host whose
 * process is gone — a `pgbk backup` killed with SIGKILL — frees the lease at once instead of after its TTL).
 */
export function isHeld(lease: LeaseRecord | undefined, now: Date): lease is LeaseRecord {
  return lease !== undefined && !lease.releasedAt && Date.parse(lease.expiresAt) > now.getTime() && !holderDead(lease.holder);
}

/** The holder id names this host and a pid that is not running. */
export function holderDead(holder: string): boolean {
  const [host, pid] = holder.split('/');
  return host === hostname() && /^\d+$/.test(pid ?? '') && !processAlive(Number(pid));
}

export function sameClaim(a: LeaseRecord | undefined, b: Pick<LeaseRecord, 'holder' | 'token'>): boolean {
  return a !== undefined && a.holder === b.holder && a.token === b.token;
}

function bodyOf(lease: LeaseRecord): Buffer {
  const {version: _version, ...record} = lease as HeldLease;
  return Buffer.from(`${JSON.stringify(record)}\n`);
}

const defaultSleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

async function useCompareAndSwap(repo: Repository): Promise<boolean> {
  const support = await repo.conditionalWrites();
  return support.createOnly && support.compareAndSwap;
}

/** Tries to take the lease of `job` (for the cron slot `tick`, when given). */
export async function acquireLease(
  repo: Repository, policy: string, job: string, options: LeaseOptions & {tick?: Date},
): Promise<AcquireResult> {
  const now = options.now ?? (() => new Date());
  const cas = await useCompareAndSwap(repo);
  const {lease: current, version} = await readVersioned(repo, job);
  if (options.tick && current?.tick && Date.parse(current.tick) >= options.tick.getTime()) {
    return {acquired: false, reason: 'tick-taken', current};
  }
  const lastTick = current?.tick;
  if (isHeld(current, now())) return {acquired: false, reason: 'held', current};
  const start = now();
  const claim: HeldLease = {
    job,
    policy,
    holder: options.holder,
    token: randomBytes(8).toString('hex'),
    // A run outside the schedule (manual backup) keeps the last slot run, so no late scheduler repeats it.
    tick: options.tick?.toISOString() ?? lastTick,
    acquiredAt: start.toISOString(),
    expiresAt: new Date(start.getTime() + options.ttlMs).toISOString(),
    purpose: options.purpose,
  };
  if (cas) {
    try {
      // An object that exists but cannot be parsed is replaced only as the version read, like any other.
      const written = await repo.put(lockKey(job), bodyOf(claim), version === undefined ? {ifNoneMatch: '*'} : {ifMatch: version});
      claim.version = written.version;
      return {acquired: true, lease: claim};
    } catch (error) {
      if (!(error instanceof PreconditionFailedError)) throw error;
      return {acquired: false, reason: 'lost-race', current: await readLease(repo, job).catch(() => undefined)};
    }
  }
  await repo.put(lockKey(job), bodyOf(claim));
  await (options.sleep ?? defaultSleep)(options.settleMs);
  const stored = await readLease(repo, job);
  if (!sameClaim(stored, claim)) return {acquired: false, reason: 'lost-race', current: stored};
  return {acquired: true, lease: claim};
}

/** Extends the expiry; false (and nothing written) when the lease is no longer ours. Errors (outage) reject. */
export async function renewLease(repo: Repository, lease: HeldLease, ttlMs: number, now: Date = new Date()): Promise<boolean> {
  const next: HeldLease = {...lease, expiresAt: new Date(now.getTime() + ttlMs).toISOString()};
  if (lease.version !== undefined) {
    try {
      lease.version = (await repo.put(lockKey(lease.job), bodyOf(next), {ifMatch: lease.version})).version;
    } catch (error) {
      if (error instanceof PreconditionFailedError) return false;
      throw error;
    }
    lease.expiresAt = next.expiresAt;
    return true;
  }
  const stored = await readLease(repo, lease.job);
  if (!sameClaim(stored, lease)) return false;
  await repo.put(lockKey(lease.job), bodyOf(next));
  lease.expiresAt = next.expiresAt;
  return true;
}

/** Marks the lease released (when it is still ours); the record stays, with its tick. */
export async function releaseLease(repo: Repository, lease: HeldLease, now: Date = new Date()): Promise<boolean> {
  const released: LeaseRecord = {...lease, releasedAt: now.toISOString(), expiresAt: now.toISOString()};
  if (lease.version !== undefined) {
    try {
      await repo.put(lockKey(lease.job), bodyOf(released), {ifMatch: lease.version});
      return true;
    } catch (error) {
      if (error instanceof PreconditionFailedError) return false;
      throw error;
    }
  }
  const stored = await readLease(repo, lease.job);
  if (!sameClaim(stored, lease)) return false;
  await repo.put(lockKey(lease.job), bodyOf(released));
  return true;
}

/**
 * Keeps `lease` alive every quarter of the TTL until stop(); calls onLost once when it is taken over, or
 * when renewals fail (outage) until its expiry has passed: then no one can be sure it is still ours.
 */
export function keepLeaseAlive(repo: Repository, lease: HeldLease, ttlMs: number, handlers: {
  onLost: (why: string) => void;
  onError?: (error: Error) => void;
  now?: () => Date;
}): {stop: () => void; readonly lost: boolean} {
  const now = handlers.now ?? (() => new Date());
  let lost = false;
  let busy = false;
  const lose = (why: string) => {
    if (lost) return;
    lost = true;
    clearInterval(timer);
    handlers.onLost(why);
  };
  const timer = setInterval(() => {
    if (busy || lost) return;
    busy = true;
    renewLease(repo, lease, ttlMs, now()).then(
      (ok) => {
        if (!ok) lose('the lease was taken over by another run');
      },
      (error: Error) => {
        handlers.onError?.(error);
        if (Date.parse(lease.expiresAt) <= now().getTime()) lose(`the lease expired while it could not be renewed: ${error.message}`);
      },
    ).finally(() => {
      busy = false;
    });
  }, Math.max(250, Math.floor(ttlMs / 4)));
  timer.unref?.();
  return {
    stop: () => clearInterval(timer),
    get lost() {
      return lost;
    },
  };
}
