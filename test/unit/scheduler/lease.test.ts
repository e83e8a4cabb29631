import {mkdtempSync, rmSync} from 'node:fs';
import {tmpdir} from 'node:os';
import {hostname} from 'node:os';
import {join} from 'node:path';
import {afterEach, beforeEach, describe, expect, it} from 'vitest';
import {acquireLease, isHeld, keepLeaseAlive, readLease, releaseLease, renewLease} from '../../../src/scheduler/lease.js';
import type {Repository} from '../../../src/storage/repository.js';
import {LocalRepository} from '../../../src/storage/local/local-repository.js';
import {lockKey} from '../../../src/storage/layout.js';

let dir: string;
let repo: LocalRepository;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'pgbk-lease-'));
  repo = new LocalRepository(dir);
});
afterEach(() => rmSync(dir, {recursive: true, force: true}));

const base = {ttlMs: 60_000, settleMs: 50};
const tick = new Date('2026-11-26T02:00:00Z');

describe('leases in the repository', () => {
  it('is taken when free, stored under locks/<job>.json, and blocks a second holder until released', async () => {
    const first = await acquireLease(repo, 'orders', 'backup', {...base, holder: 'a'});
    expect(first.acquired).toBe(true);
    expect(await repo.stat(lockKey('backup'))).toBeDefined();
    const second = await acquireLease(repo, 'orders', 'backup', {...base, holder: 'b'});
    expect(second).toMatchObject({acquired: false, reason: 'held', current: {holder: 'a'}});
    expect(first.acquired && await releaseLease(repo, first.lease)).toBe(true);
    const stored = await readLease(repo, 'backup');
    expect(stored?.releasedAt).toBeDefined();
    expect(isHeld(stored, new Date())).toBe(false);
    expect((await acquireLease(repo, 'orders', 'backup', {...base, holder: 'b'})).acquired).toBe(true);
  });

  it('treats an expired lease as free (a crashed holder blocks for one TTL at most)', async () => {
    let now = new Date('2026-11-26T02:00:00Z');
    const clock = () => now;
    expect((await acquireLease(repo, 'orders', 'backup', {...base, holder: 'crashed', now: clock})).acquired).toBe(true);
    now = new Date(now.getTime() + 30_000);
    expect((await acquireLease(repo, 'orders', 'backup', {...base, holder: 'b', now: clock})).acquired).toBe(false);
    now = new Date(now.getTime() + 31_000);
    expect((await acquireLease(repo, 'orders', 'backup', {...base, holder: 'b', now: clock})).acquired).toBe(true);
  });

  it('lets exactly one of many racers for the same tick run (write, settle, read back)', async () => {
    const racers = await Promise.all(['a', 'b', 'c', 'd', 'e'].map((holder) =>
      acquireLease(repo, 'orders', 'backup', {...base, settleMs: 200, holder, tick})));
    expect(racers.filter((result) => result.acquired)).toHaveLength(1);
    const winner = racers.find((result) => result.acquired);
    expect(winner?.acquired && (await readLease(repo, 'backup'))?.holder).toBe(winner?.acquired && winner.lease.holder);
    expect(racers.filter((result) => !result.acquired).every((result) => !result.acquired && ['lost-race', 'held', 'tick-taken'].includes(result.reason))).toBe(true);
  });

  it('does not run a tick again after it was run and released (a late scheduler backs off)', async () => {
    const first = await acquireLease(repo, 'orders', 'backup', {...base, holder: 'a', tick});
    expect(first.acquired && await releaseLease(repo, first.lease)).toBe(true);
    const late = await acquireLease(repo, 'orders', 'backup', {...base, holder: 'b', tick});
    expect(late).toMatchObject({acquired: false, reason: 'tick-taken'});
    const next = await acquireLease(repo, 'orders', 'backup', {...base, holder: 'b', tick: new Date(tick.getTime() + 5000)});
    expect(next.acquired).toBe(true);
  });

  it('keeps the jobs apart: backup and expire have their own lease', async () => {
    expect((await acquireLease(repo, 'orders', 'backup', {...base, holder: 'a'})).acquired).toBe(true);
    expect((await acquireLease(repo, 'orders', 'expire', {...base, holder: 'b'})).acquired).toBe(true);
  });

  it('renews and releases only its own claim', async () => {
    let now = new Date('2026-11-26T02:00:00Z');
    const clock = () => now;
    const mine = await acquireLease(repo, 'orders', 'backup', {...base, holder: 'a', now: clock});
    if (!mine.acquired) throw new Error('not acquired');
    now = new Date(now.getTime() + 50_000);
    expect(await renewLease(repo, mine.lease, 60_000, now)).toBe(true);
    expect((await readLease(repo, 'backup'))?.expiresAt).toBe(new Date(now.getTime() + 60_000).toISOString());
    // Taken over after expiry: the old holder can neither renew nor release it.
    now = new Date(now.getTime() + 61_000);
    const other = await acquireLease(repo, 'orders', 'backup', {...base, holder: 'b', now: clock});
    expect(other.acquired).toBe(true);
    expect(await renewLease(repo, mine.lease, 60_000, now)).toBe(false);
    expect(await releaseLease(repo, mine.lease, now)).toBe(false);
    expect((await readLease(repo, 'backup'))?.holder).toBe('b');
  });

  it('with compare-and-swap: exactly one racer wins even when the store answers slower than the settle delay', async () => {
    // Every request takes 0-400 ms, far beyond settleMs (not used on this path).
    const slow = withDelays(repo, 400);
    for (let round = 0; round < 4; round++) {
      const roundTick = new Date(tick.getTime() + round * 60_000);
      const racers = await Promise.all(['a', 'b', 'c', 'd', 'e'].map((holder) =>
        acquireLease(slow, 'orders', 'backup', {...base, settleMs: 1, holder, tick: roundTick})));
      const winners = racers.filter((result) => result.acquired);
      expect(winners, `round ${round}`).toHaveLength(1);
      const winner = winners[0]!;
      expect(winner.acquired && winner.lease.version).toBeTruthy();
      expect((await readLease(repo, 'backup'))?.holder).toBe(winner.acquired && winner.lease.holder);
      expect(winner.acquired && await releaseLease(slow, winner.lease)).toBe(true);
    }
  }, 60_000);

  it('safe path (store without conditional writes): write, settle, read back — one racer wins', async () => {
    const plain = withoutConditionalWrites(repo);
    const racers = await Promise.all(['a', 'b', 'c', 'd'].map((holder) =>
      acquireLease(plain, 'orders', 'backup', {...base, settleMs: 200, holder, tick})));
    expect(racers.filter((result) => result.acquired)).toHaveLength(1);
    const winner = racers.find((result) => result.acquired)!;
    expect(winner.acquired && winner.lease.version).toBeUndefined();
    expect(winner.acquired && await renewLease(plain, winner.lease, 60_000)).toBe(true);
    expect(winner.acquired && await releaseLease(plain, winner.lease)).toBe(true);
  });

  it('clock skew within the TTL: a host whose clock runs ahead still sees a renewed lease as held', async () => {
    const start = new Date('2026-11-26T02:00:00Z');
    let elapsed = 0;
    const holderClock = () => new Date(start.getTime() + elapsed);
    const aheadClock = () => new Date(start.getTime() + elapsed + 40_000); // 40 s ahead, TTL 60 s
    const mine = await acquireLease(repo, 'orders', 'backup', {...base, holder: 'a', now: holderClock});
    if (!mine.acquired) throw new Error('not acquired');
    for (elapsed = 0; elapsed <= 120_000; elapsed += 15_000) {
      // The holder renews every quarter of the TTL...
      expect(await renewLease(repo, mine.lease, 60_000, holderClock())).toBe(true);
      // ...so the skewed host always finds it held.
      expect(await acquireLease(repo, 'orders', 'backup', {...base, holder: 'b', now: aheadClock}), `at ${elapsed}`)
        .toMatchObject({acquired: false, reason: 'held'});
    }
  });

  it('keepLeaseAlive renews, and reports the lease lost once it was taken over', async () => {
    const mine = await acquireLease(repo, 'orders', 'backup', {...base, ttlMs: 1000, holder: 'a'});
    if (!mine.acquired) throw new Error('not acquired');
    const lost: string[] = [];
    const keeper = keepLeaseAlive(repo, mine.lease, 1000, {onLost: (why) => lost.push(why)});
    try {
      const before = mine.lease.expiresAt;
      await new Promise((resolve) => setTimeout(resolve, 700));
      expect(mine.lease.expiresAt > before).toBe(true);
      expect((await readLease(repo, 'backup'))?.expiresAt).toBe(mine.lease.expiresAt);
      // Someone else overwrites it (an operator, or a holder after expiry): the next renewal fails.
      await repo.put(lockKey('backup'), Buffer.from(JSON.stringify({...mine.lease, holder: 'b', token: 'x'})));
      await new Promise((resolve) => setTimeout(resolve, 700));
      expect(lost).toEqual(['the lease was taken over by another run']);
      expect(keeper.lost).toBe(true);
      expect((await readLease(repo, 'backup'))?.holder).toBe('b');
    } finally {
      keeper.stop();
    }
  });

  it('frees at once a lease whose holder on this host is gone; a live or remote holder keeps it', async () => {
    const {spawnSync} = await import('node:child_process');
    const deadPid = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))']).stdout.toString();
    for (const [holder, held] of [
      [`${hostname()}/${deadPid}/abcd`, false],
      [`${hostname()}/${process.pid}/abcd`, true],
      [`elsewhere.example/${deadPid}/abcd`, true],
    ] as const) {
      await repo.put(lockKey('backup'), Buffer.from(JSON.stringify({
        job: 'backup', policy: 'orders', holder, token: 't', acquiredAt: new Date().toISOString(),
        expiresAt: new Date(Date.now() + 60_000).toISOString(),
      })));
      const result = await acquireLease(repo, 'orders', 'backup', {...base, holder: 'b'});
      expect(result.acquired, holder).toBe(!held);
      if (result.acquired) await releaseLease(repo, result.lease);
    }
  });

  it('treats an unreadable lease object as free', async () => {
    await repo.put(lockKey('backup'), Buffer.from('{not json'));
    expect(await readLease(repo, 'backup')).toBeUndefined();
    expect((await acquireLease(repo, 'orders', 'backup', {...base, holder: 'a'})).acquired).toBe(true);
  });
});

/** The same repository, every call delayed by a random 0..maxMs. */
function withDelays(inner: Repository, maxMs: number): Repository {
  const delay = () => new Promise((resolve) => setTimeout(resolve, Math.random() * maxMs));
  return new Proxy(inner, {
    get(target, name, receiver) {
      const value = Reflect.get(target, name, receiver);
      if (typeof value !== 'function' || name === 'list') return value;
      return async (...args: unknown[]) => {
        await delay();
        const result = await (value as (...a: unknown[]) => Promise<unknown>).apply(target, args);
        await delay();
        return result;
      };
    },
  });
}

/** The same repository as a store without conditional writes would present it. */
function withoutConditionalWrites(inner: Repository): Repository {
  return new Proxy(inner, {
    get(target, name, receiver) {
      if (name === 'conditionalWrites') return async () => ({createOnly: false, compareAndSwap: false, source: 'probe'});
      const value = Reflect.get(target, name, receiver);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}
