import {mkdtempSync, rmSync} from 'node:fs';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import {afterEach, beforeEach, describe, expect, it} from 'vitest';
import {acquireLease, isHeld, readLease, releaseLease, renewLease} from '../../../src/scheduler/lease.js';
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

  it('treats an unreadable lease object as free', async () => {
    await repo.put(lockKey('backup'), Buffer.from('{not json'));
    expect(await readLease(repo, 'backup')).toBeUndefined();
    expect((await acquireLease(repo, 'orders', 'backup', {...base, holder: 'a'})).acquired).toBe(true);
  });
});
