import {describe, expect, it} from 'vitest';
import type {BackupManifest} from '../../../src/backup/manifest.js';
import {describeRetention, planExpire, walVerdict, type Retention} from '../../../src/retention/plan.js';

function base(id: string, stopTime: string, walStart: string, extra: Partial<BackupManifest> = {}): BackupManifest {
  return {
    formatVersion: 1, id, kind: 'base', policy: 'orders', strategy: 'pitr', label: `pgbk ${id}`,
    startTime: new Date(new Date(stopTime).getTime() - 60_000).toISOString(), stopTime,
    startLsn: '0/0', stopLsn: '0/0', timeline: Number.parseInt(walStart.slice(0, 8), 16), stopTimeline: Number.parseInt(walStart.slice(0, 8), 16),
    walStart, walStop: walStart, walSegmentSize: 16 * 1024 * 1024, systemId: '7300000000000000001', pgVersionNum: 160004,
    sourceBytes: 30_000_000, storedBytes: 4_000_000, durationMs: 60_000,
    objects: [{name: 'base.tar.gz', key: `backups/${id}/base.tar.gz`, sizeBytes: 4_000_000, sha256: 'a'.repeat(64), compression: 'gzip'}],
    ...extra,
  };
}

function dump(id: string, startTime: string): BackupManifest {
  return {
    ...base(id, new Date(new Date(startTime).getTime() + 30_000).toISOString(), '000000010000000000000001'),
    kind: 'dump', startTime, startLsn: undefined, stopLsn: undefined, timeline: undefined, stopTimeline: undefined,
    walStart: undefined, walStop: undefined, walSegmentSize: undefined, database: 'orders',
    objects: [{name: 'dump.pgdump', key: `backups/${id}/dump.pgdump`, sizeBytes: 1000, sha256: 'b'.repeat(64), compression: 'none'}],
  };
}

// One backup a day at 01:00, WAL starting further on each time; "now" is 2026-11-10 12:00.
const now = new Date('2026-11-10T12:00:00Z');
const b = (day: number, walStart: string, extra: Partial<BackupManifest> = {}) =>
  base(`202611${String(day).padStart(2, '0')}T010000Z`, `2026-11-${String(day).padStart(2, '0')}T01:00:30.000Z`, walStart, extra);
const b3 = b(3, '000000010000000000000003');
const b5 = b(5, '000000010000000000000010');
const b7 = b(7, '000000010000000000000020');
const b9 = b(9, '000000010000000100000002');
const daily = [b3, b5, b7, b9];

const kept = (catalog: BackupManifest[], retention: Retention, at = now) =>
  planExpire(catalog, retention, at).backups.filter((d) => d.keep).map((d) => d.id);

describe('planExpire: which backups stay', () => {
  const cases: Array<[string, BackupManifest[], Retention, BackupManifest[]]> = [
    ['backups: 2 keeps the newest two', daily, {backups: 2}, [b7, b9]],
    ['backups: 1 keeps the newest', daily, {backups: 1}, [b9]],
    ['backups: 10 (more than there are) keeps all', daily, {backups: 10}, daily],
    // now - 2 days = Nov 8 12:00: b9 is inside; b7 is the newest before, needed to restore to Nov 8 12:00.
    ['days: 2 keeps those inside and the newest before the window', daily, {days: 2}, [b7, b9]],
    ['days: 4 (window starts Nov 6 12:00)', daily, {days: 4}, [b5, b7, b9]],
    ['days: 0.5 (window starts Nov 10 00:00): only the newest is needed', daily, {days: 0.5}, [b9]],
    ['days: 0 keeps the newest', daily, {days: 0}, [b9]],
    ['days: 100 keeps all', daily, {days: 100}, daily],
    ['days: 1 with every backup older than the window keeps the newest of them', [b3, b5], {days: 1}, [b5]],
    ['both: the union (backups: 3 wins)', daily, {backups: 3, days: 2}, [b5, b7, b9]],
    ['both: the union (days wins)', daily, {backups: 1, days: 4}, [b5, b7, b9]],
    ['none: everything is kept', daily, {}, daily],
    ['an empty catalog', [], {backups: 2}, []],
  ];
  it.each(cases)('%s', (_name, catalog, retention, expected) => {
    expect(kept(catalog, retention)).toEqual(expected.map((backup) => backup.id));
  });

  it('says why each backup stays or goes', () => {
    const plan = planExpire(daily, {backups: 1, days: 4}, now);
    const why = Object.fromEntries(plan.backups.map((d) => [d.id, d.reasons.join('; ')]));
    expect(why[b3.id]).toMatch(/not among the newest 1 base backups and not needed to restore to any time after 2026-11-06T12:00:00.000Z/);
    expect(why[b5.id]).toMatch(/newest base backup from before 2026-11-06T12:00:00.000Z/);
    expect(why[b7.id]).toMatch(/inside the last 4 days/);
    expect(why[b9.id]).toMatch(/one of the newest 1 base backups.*inside the last 4 days/);
    expect(plan.windowStart).toBe('2026-11-06T12:00:00.000Z');
  });

  it('says so when no retention is set, and removes no WAL', () => {
    const plan = planExpire(daily, {}, now);
    expect(plan.summary).toMatch(/no retention in the policy.*everything is kept/);
    expect(plan.backups.every((d) => d.keep && /no retention set/.test(d.reasons[0]!))).toBe(true);
    expect(plan.wal.expire).toBe(false);
    expect(walVerdict(plan.wal, '000000010000000000000001').remove).toBe(false);
    expect(describeRetention({backups: 7, days: 14})).toBe('keep the newest 7 backups and everything needed to restore to any time in the last 14 days (base backups and dumps counted apart), and the WAL they need');
  });

  it('orders by the time a backup restores to, not by id (a long backup finishing after a later one)', () => {
    const long = base('20261108T000000Z', '2026-11-09T06:00:00.000Z', '000000010000000000000030');
    const short = base('20261108T120000Z', '2026-11-08T12:30:00.000Z', '000000010000000000000028');
    expect(kept([b7, long, short], {backups: 1})).toEqual([long.id]);
  });
});

describe('planExpire: dumps follow the same rule among dumps', () => {
  const d2 = dump('20261102T020000Z', '2026-11-02T02:00:00.000Z');
  const d6 = dump('20261106T020000Z', '2026-11-06T02:00:00.000Z');
  const d8 = dump('20261108T020000Z', '2026-11-08T02:00:00.000Z');
  const d10 = dump('20261110T020000Z', '2026-11-10T02:00:00.000Z');
  const dumps = [d2, d6, d8, d10];
  it.each([
    [{backups: 2}, [d8, d10]],
    [{days: 3}, [d6, d8, d10]], // window from Nov 7 12:00: d8, d10 inside, d6 the newest before
    [{backups: 1, days: 1}, [d8, d10]], // window from Nov 9 12:00: d8 is the newest before it
  ] as Array<[Retention, BackupManifest[]]>)('%j', (retention, expected) => {
    expect(kept(dumps, retention)).toEqual(expected.map((d) => d.id));
  });

  it('counts base backups and dumps apart, and dumps never decide WAL', () => {
    const plan = planExpire([d2, b3, d6, b5, b7, d10], {backups: 1}, now);
    expect(plan.backups.filter((d) => d.keep).map((d) => d.id)).toEqual([b7.id, d10.id]);
    expect(plan.wal.keepPoints.map((p) => p.backupId)).toEqual([b7.id]);
    expect(planExpire(dumps, {backups: 1}, now).wal).toMatchObject({expire: false, reason: expect.stringMatching(/no base backup/)});
  });
});

describe('walVerdict: the WAL no kept backup needs', () => {
  it('removes, on one timeline, everything before the oldest kept backup (segments, .backup, .partial), never history', () => {
    const {wal} = planExpire(daily, {backups: 2}, now); // b7 (…0020) and b9 kept
    const verdict = (name: string) => walVerdict(wal, name).remove;
    expect(verdict('000000010000000000000003')).toBe(true);
    expect(verdict('00000001000000000000001F')).toBe(true);
    expect(verdict('00000001000000000000000F.00000028.backup')).toBe(true);
    expect(verdict('00000001000000000000001F.partial')).toBe(true);
    expect(verdict('000000010000000000000020')).toBe(false);
    expect(verdict('000000010000000000000020.00000028.backup')).toBe(false);
    expect(verdict('0000000100000001000000FF')).toBe(false);
    expect(verdict('00000001.history')).toBe(false);
    expect(walVerdict(wal, '000000010000000000000021').neededBy).toBe(b7.id);
    expect(verdict('not a wal name')).toBe(false);
  });

  it('follows timelines: a segment on T is needed when a kept backup is on a timeline <= T and starts at or before it', () => {
    // Kept: b7 on timeline 1 from …0020; c on timeline 3 from …0040. Timeline 2 branched (from an older restore).
    const c = base('20261110T010000Z', '2026-11-10T01:00:30.000Z', '000000030000000000000040');
    const {wal} = planExpire([b3, b5, b7, c], {backups: 2}, now);
    const verdict = (name: string) => walVerdict(wal, name).remove;
    expect(verdict('00000001000000000000001F')).toBe(true);
    expect(verdict('000000010000000000000020')).toBe(false);
    expect(verdict('000000010000000000000050')).toBe(false); // timeline 1 after b7: kept
    // Timeline 2 (>= b7's timeline 1): kept from b7's start on, removed before it.
    expect(verdict('000000020000000000000010')).toBe(true);
    expect(verdict('000000020000000000000025')).toBe(false);
    expect(verdict('00000002.history')).toBe(false);
    // Timeline 3: needed from b7's start (b7 may follow onto it), so kept even before c's start.
    expect(verdict('000000030000000000000030')).toBe(false);
    expect(verdict('000000030000000000000010')).toBe(true);
    expect(verdict('00000003.history')).toBe(false);
  });

  it('removes older timelines entirely when every kept backup is on a later one (history files stay)', () => {
    const t2a = base('20261109T010000Z', '2026-11-09T01:00:30.000Z', '000000020000000000000030');
    const t2b = base('20261110T010000Z', '2026-11-10T01:00:30.000Z', '000000020000000000000038');
    const {wal} = planExpire([b3, b5, b7, t2a, t2b], {backups: 2}, now);
    expect(walVerdict(wal, '000000010000000000000040').remove).toBe(true);
    expect(walVerdict(wal, '000000010000000000000030.partial').remove).toBe(true);
    expect(walVerdict(wal, '00000001.history').remove).toBe(false);
    expect(walVerdict(wal, '00000002.history').remove).toBe(false);
    expect(walVerdict(wal, '00000002000000000000002F').remove).toBe(true);
    expect(walVerdict(wal, '000000020000000000000030').remove).toBe(false);
  });

  it('keeps all WAL when a kept backup does not say where its WAL starts', () => {
    const odd = b(9, '000000010000000100000002', {walStart: undefined, id: '20261109T020000Z'});
    const plan = planExpire([b3, b5, odd], {backups: 1}, now);
    expect(plan.backups.filter((d) => d.keep).map((d) => d.id)).toEqual([odd.id]);
    expect(plan.wal.expire).toBe(false);
    expect(plan.wal.reason).toMatch(/does not record where its WAL starts/);
    expect(walVerdict(plan.wal, '000000010000000000000003').remove).toBe(false);
  });

  it('compares log and segment numbers across the 32-bit boundary of the name', () => {
    const {wal} = planExpire(daily, {backups: 1}, now); // b9 from 00000001 00000001 00000002
    expect(walVerdict(wal, '0000000100000000000000FF').remove).toBe(true);
    expect(walVerdict(wal, '000000010000000100000001').remove).toBe(true);
    expect(walVerdict(wal, '000000010000000100000002').remove).toBe(false);
    expect(walVerdict(wal, '000000010000000200000000').remove).toBe(false);
  });
});
