import {Readable} from 'node:stream';
import {describe, expect, it} from 'vitest';
import type {BackupManifest} from '../../../src/backup/manifest.js';
import {applyExpire} from '../../../src/retention/apply.js';
import {planExpire} from '../../../src/retention/plan.js';
import {walObjectKey} from '../../../src/storage/layout.js';
import type {ConditionalWriteSupport, IncompleteUpload, PutResult, Repository, StoredObject} from '../../../src/storage/repository.js';

/** An in-memory repository that records every remove() call and counts objects listed. */
class MemoryRepository implements Repository {
  readonly description = 'memory://test';
  readonly objects = new Map<string, StoredObject>();
  readonly removeCalls: string[][] = [];
  add(key: string, sizeBytes = 100, modified = new Date('2026-01-01T00:00:00Z')): void {
    this.objects.set(key, {key, sizeBytes, modified});
  }
  async put(): Promise<PutResult> { throw new Error('not used'); }
  async get(): Promise<Readable> { return Readable.from([]); }
  async getVersioned(): Promise<{body: Buffer; version: string}> { throw new Error('not used'); }
  async conditionalWrites(): Promise<ConditionalWriteSupport> { return {createOnly: true, compareAndSwap: true, source: 'driver'}; }
  readonly cleanUpCalls: Date[] = [];
  incomplete: IncompleteUpload[] = [];
  async cleanUpIncomplete(olderThan: Date): Promise<IncompleteUpload[]> {
    this.cleanUpCalls.push(olderThan);
    const gone = this.incomplete.filter((upload) => upload.startedAt < olderThan);
    this.incomplete = this.incomplete.filter((upload) => upload.startedAt >= olderThan);
    return gone;
  }
  async stat(key: string) { return this.objects.get(key); }
  async *list(prefix: string): AsyncIterable<StoredObject> {
    for (const key of [...this.objects.keys()].sort()) if (key.startsWith(prefix) && this.objects.has(key)) yield this.objects.get(key)!;
  }
  async remove(keys: Iterable<string>): Promise<void> {
    const batch = [...keys];
    this.removeCalls.push(batch);
    for (const key of batch) this.objects.delete(key);
  }
  async create(): Promise<void> {}
  async serverTime(): Promise<Date | undefined> { return undefined; }
  async close(): Promise<void> {}
}

function manifest(id: string, stopTime: string, walStart: string): BackupManifest {
  return {
    formatVersion: 1, id, kind: 'base', policy: 'p', strategy: 'pitr', label: id, startTime: stopTime, stopTime,
    startLsn: '0/0', stopLsn: '0/0', timeline: 1, stopTimeline: 1, walStart, walStop: walStart, walSegmentSize: 16 << 20,
    systemId: '1', pgVersionNum: 160000, sourceBytes: 1, storedBytes: 1, durationMs: 1,
    objects: [{name: 'base.tar.gz', key: `backups/${id}/base.tar.gz`, sizeBytes: 1000, sha256: 'a'.repeat(64), compression: 'gzip'}],
  };
}

const seg = (n: number, tli = 1) => `${tli.toString(16).toUpperCase().padStart(8, '0')}00000000${n.toString(16).toUpperCase().padStart(8, '0')}`;
const sha = 'c'.repeat(64);

function fixture() {
  const repo = new MemoryRepository();
  const catalog = [
    manifest('20260101T000000Z', '2026-01-01T00:01:00.000Z', seg(3)),
    manifest('20260102T000000Z', '2026-01-02T00:01:00.000Z', seg(10)),
    manifest('20260103T000000Z', '2026-01-03T00:01:00.000Z', seg(20)),
  ];
  for (const backup of catalog) {
    repo.add(`backups/${backup.id}/base.tar.gz`, 1000);
    repo.add(`backups/${backup.id}/manifest.json`, 10);
  }
  repo.add(walObjectKey('00000001.history', sha));
  for (let n = 1; n <= 30; n++) repo.add(walObjectKey(seg(n), sha));
  repo.add(walObjectKey(`${seg(10)}.00000028.backup`, sha));
  repo.add(walObjectKey(`${seg(3)}.00000028.backup`, sha));
  repo.add(walObjectKey('00000002.history', sha));
  for (let n = 5; n <= 12; n++) repo.add(walObjectKey(seg(n, 2), sha));
  // A folder whose removal was interrupted long ago (manifest gone), and a backup being written right now.
  repo.add('backups/20251231T000000Z/base.tar.gz', 500);
  repo.add('backups/20260104T000000Z/base.tar.gz', 500, new Date());
  return {repo, catalog};
}

describe('applyExpire', () => {
  it('object lock: never removes a backup, leftover or WAL file still locked, and says until when', async () => {
    const now = new Date('2026-01-05T00:00:00Z');
    const {repo, catalog} = fixture();
    const before = repo.objects.size;
    const plan = planExpire(catalog, {backups: 2}, now);
    // Every object was written 2026-01-01: locked 7 days, until 2026-01-08.
    const locked = await applyExpire(plan, repo, {now, objectLockDays: 7});
    expect(repo.objects.size).toBe(before);
    expect(repo.removeCalls.flat()).toEqual([]);
    expect(locked.backups).toEqual([]);
    expect(locked.locked).toEqual([{id: '20260101T000000Z', kind: 'base', until: '2026-01-08T00:00:00.000Z'}]);
    expect(locked.leftovers).toEqual([]);
    expect(locked.wal).toMatchObject({removedFiles: 0, lockedFiles: 15, lockedUntil: '2026-01-08T00:00:00.000Z'});
    // Locked 3 days: over on 2026-01-04, so this expire removes what retention lets go.
    const over = await applyExpire(plan, repo, {now, objectLockDays: 3});
    expect(over.locked).toEqual([]);
    expect(over.backups.map((backup) => backup.id)).toEqual(['20260101T000000Z']);
    expect(over.wal).toMatchObject({removedFiles: 15, lockedFiles: 0});
  });

  it('dry run: reports what goes, removes nothing', async () => {
    const {repo, catalog} = fixture();
    const before = repo.objects.size;
    const plan = planExpire(catalog, {backups: 2}, new Date('2026-01-05T00:00:00Z'));
    const outcome = await applyExpire(plan, repo, {dryRun: true, now: new Date('2026-01-05T00:00:00Z')});
    expect(repo.removeCalls).toEqual([]);
    expect(repo.objects.size).toBe(before);
    expect(outcome.backups).toEqual([{id: '20260101T000000Z', kind: 'base', objects: 2, bytes: 1010}]);
    expect(outcome.leftovers.map((l) => l.id)).toEqual(['20251231T000000Z']);
    // Timeline 1: 1..9 and the 3's .backup; timeline 2: 5..9 (before the oldest kept start, 10).
    expect(outcome.wal.ranges).toEqual([
      {timeline: 1, first: seg(1), last: seg(9), files: 10, bytes: 1000},
      {timeline: 2, first: seg(5, 2), last: seg(9, 2), files: 5, bytes: 500},
    ]);
    expect(outcome.wal.removedFiles).toBe(15);
  });

  it('removes the manifest before the objects, WAL in batches, and keeps history files and what kept backups need', async () => {
    const {repo, catalog} = fixture();
    const plan = planExpire(catalog, {backups: 2}, new Date('2026-01-05T00:00:00Z'));
    const outcome = await applyExpire(plan, repo, {batchSize: 4, now: new Date('2026-01-05T00:00:00Z')});
    expect(repo.removeCalls[0]).toEqual(['backups/20260101T000000Z/manifest.json']);
    expect(repo.removeCalls[1]).toEqual(['backups/20260101T000000Z/base.tar.gz']);
    expect(repo.removeCalls[2]).toEqual(['backups/20251231T000000Z/base.tar.gz']);
    const walCalls = repo.removeCalls.slice(3);
    expect(walCalls.every((call) => call.length <= 4)).toBe(true);
    expect(walCalls.flat()).toHaveLength(15);
    expect(outcome.wal.removedFiles).toBe(15);
    const left = [...repo.objects.keys()];
    expect(left).toContain(walObjectKey('00000001.history', sha));
    expect(left).toContain(walObjectKey('00000002.history', sha));
    expect(left).toContain(walObjectKey(seg(10), sha));
    expect(left).toContain(walObjectKey(`${seg(10)}.00000028.backup`, sha));
    expect(left).toContain(walObjectKey(seg(10, 2), sha));
    expect(left).not.toContain(walObjectKey(seg(9), sha));
    expect(left).toContain('backups/20260104T000000Z/base.tar.gz'); // being written: never touched
    expect(left.filter((key) => key.startsWith('backups/20260101'))).toEqual([]);
  });

  it('aborts incomplete uploads begun more than a day ago (not in a dry run)', async () => {
    const {repo, catalog} = fixture();
    const now = new Date('2026-01-05T00:00:00Z');
    const old = {key: 'backups/20260103T000000Z/base.tar.gz', startedAt: new Date('2026-01-03T23:00:00Z')};
    const recent = {key: 'wal/00000001/0000000100000000/000000010000000000000020-x.gz', startedAt: new Date('2026-01-04T12:00:00Z')};
    repo.incomplete = [old, recent];
    const plan = planExpire(catalog, {backups: 2}, now);
    expect((await applyExpire(plan, repo, {dryRun: true, now})).incompleteUploads).toEqual([]);
    expect(repo.cleanUpCalls).toEqual([]);
    const outcome = await applyExpire(plan, repo, {now});
    expect(repo.cleanUpCalls).toEqual([new Date('2026-01-04T00:00:00Z')]);
    expect(outcome.incompleteUploads).toEqual([old]);
    expect(repo.incomplete).toEqual([recent]);
  });

  it('with no retention set removes nothing at all', async () => {
    const {repo, catalog} = fixture();
    const plan = planExpire(catalog, {}, new Date('2026-01-05T00:00:00Z'));
    const outcome = await applyExpire(plan, repo, {now: new Date('2026-01-05T00:00:00Z')});
    expect(outcome.backups).toEqual([]);
    expect(outcome.wal.removedFiles).toBe(0);
    expect(outcome.leftovers).toEqual([]);
    expect(repo.removeCalls).toEqual([]);
  });
});
