import {describe, expect, it} from 'vitest';
import {NothingToRestoreError, TargetError} from '../../../src/errors.js';
import type {BackupManifest} from '../../../src/backup/manifest.js';
import {planRestore} from '../../../src/restore/plan.js';
import {parseTarget, type Target} from '../../../src/restore/target.js';
import type {RecoverableWindow, WindowGap} from '../../../src/restore/window.js';
import {branchOf} from '../../../src/restore/branch.js';

function base(id: string, stopTime: string, stopLsn: string, walStart: string, extra: Partial<BackupManifest> = {}): BackupManifest {
  return {
    formatVersion: 1,
    id,
    kind: 'base',
    policy: 'orders',
    strategy: 'pitr',
    label: `pgbk ${id}`,
    startTime: new Date(new Date(stopTime).getTime() - 60_000).toISOString(),
    stopTime,
    startLsn: stopLsn,
    stopLsn,
    timeline: 1,
    stopTimeline: 1,
    walStart,
    walStop: walStart,
    walSegmentSize: 16 * 1024 * 1024,
    systemId: '7300000000000000001',
    pgVersionNum: 160004,
    sourceBytes: 30_000_000,
    storedBytes: 4_000_000,
    durationMs: 60_000,
    objects: [
      {name: 'base.tar.gz', key: `backups/${id}/base.tar.gz`, sizeBytes: 4_000_000, sha256: 'a'.repeat(64), compression: 'gzip'},
      {name: 'extra.bin', key: `backups/${id}/extra.bin`, sizeBytes: 123, sha256: 'b'.repeat(64), compression: 'none'},
    ],
    ...extra,
  };
}

const dump: BackupManifest = {
  ...base('20261126T000000Z', '2026-11-26T00:00:30Z', '0/1000000', '000000010000000000000001'),
  kind: 'dump',
  startLsn: undefined, stopLsn: undefined, walStart: undefined, walStop: undefined,
};

// Three base backups, oldest first (the order readCatalog returns), and a dump that must never be chosen.
const b1 = base('20261126T010000Z', '2026-11-26T01:00:30Z', '0/3000100', '000000010000000000000003', {nextXid: '1000'});
const b2 = base('20261126T020000Z', '2026-11-26T02:00:30Z', '0/7000100', '000000010000000000000007', {nextXid: '2000'});
const b3 = base('20261126T030000Z', '2026-11-26T03:00:30Z', '1/2000100', '000000010000000100000002', {nextXid: '5000'});
const catalog = [dump, b1, b2, b3];

const window: RecoverableWindow = {
  earliestTime: new Date(b1.stopTime),
  earliestLsn: b1.stopLsn,
  latestTime: new Date('2026-11-26T04:00:00Z'),
  latestLsn: '1/5000000',
  latestTimeline: 1,
  lastSegment: '000000010000000100000004',
  archivedSegments: 20,
  offBranch: [],
};

const at = (text: string): Target => parseTarget({targetTime: text});

function thrown(fn: () => unknown): Error {
  try {
    fn();
  } catch (error) {
    return error as Error;
  }
  throw new Error('expected an error');
}

describe('planRestore: choosing the backup', () => {
  it.each([
    ['latest', {kind: 'latest'} as Target, b3],
    ['a restore point name', {kind: 'name', name: 'p'} as Target, b3],
    ['exactly the first stop time', at('2026-11-26T01:00:30Z'), b1],
    ['just before the second stop time', at('2026-11-26T02:00:29.999Z'), b1],
    ['between the second and third', at('2026-11-26 03:00:00+00'), b2],
    ['a time in another zone', at('2026-11-26 04:00:00+01:00'), b2],
    ['after the newest backup', at('2026-11-26T03:59:00Z'), b3],
    ['the first stop LSN', {kind: 'lsn', lsn: 0x3000100n} as Target, b1],
    ['an LSN between backups', {kind: 'lsn', lsn: 0x8000000n} as Target, b2],
    ['an LSN after the xlogid boundary', {kind: 'lsn', lsn: 0x1_0200_0100n} as Target, b3],
    ['an xid at the first backup\'s next xid', {kind: 'xid', xid: 1000n} as Target, b1],
    ['an xid between backups', {kind: 'xid', xid: 3000n} as Target, b2],
    ['an xid after the third', {kind: 'xid', xid: 6000n} as Target, b3],
  ])('for %s', (_what, target, expected) => {
    const plan = planRestore(catalog, target, {window});
    expect(plan.backup.id).toBe(expected.id);
    expect(plan.target).toBe(target);
    expect(plan.walFrom).toBe(expected.walStart);
    expect(plan.walTo).toBe('000000010000000100000004');
    expect(plan.fetchBytes).toBe(4_000_123);
  });

  it('honours --backup when it finished before the target', () => {
    expect(planRestore(catalog, at('2026-11-26T03:30:00Z'), {window, backupId: b1.id}).backup).toBe(b1);
    expect(planRestore(catalog, {kind: 'latest'}, {window, backupId: b2.id}).backup).toBe(b2);
    expect(planRestore(catalog, {kind: 'lsn', lsn: 0x7000100n}, {window, backupId: b2.id}).backup).toBe(b2);
  });

  it('refuses --backup that finished after the target', () => {
    const error = thrown(() => planRestore(catalog, at('2026-11-26T02:30:00Z'), {window, backupId: b3.id}));
    expect(error).toBeInstanceOf(TargetError);
    expect((error as TargetError).exitCode).toBe(2);
    expect(error.message).toBe(
      `backup ${b3.id} finished after time 2026-11-26 02:30:00+00:00 (it is consistent from ${b3.stopTime}, LSN ${b3.stopLsn})`,
    );
    const byLsn = thrown(() => planRestore(catalog, {kind: 'lsn', lsn: 0x70000ffn}, {window, backupId: b2.id}));
    expect(byLsn).toBeInstanceOf(TargetError);
    expect(byLsn.message).toMatch(/^backup 20261126T020000Z finished after LSN 0\/70000FF/);
  });

  it('refuses an unknown --backup, or a dump as --backup', () => {
    for (const id of ['20990101T000000Z', dump.id]) {
      const error = thrown(() => planRestore(catalog, {kind: 'latest'}, {window, backupId: id}));
      expect(error).toBeInstanceOf(NothingToRestoreError);
      expect((error as NothingToRestoreError).exitCode).toBe(2);
      expect(error.message).toBe(`--backup ${id}: no such backup`);
      expect((error as NothingToRestoreError).hint).toContain(`${b1.id}, ${b2.id}, ${b3.id}`);
    }
  });

  it('compares a 32-bit xid within the backup\'s epoch, a 64-bit one as is', () => {
    const epoch1 = [base('20261126T010000Z', '2026-11-26T01:00:30Z', '0/3000100', '000000010000000000000003', {nextXid: String(2n ** 32n + 100n)})];
    expect(planRestore(epoch1, {kind: 'xid', xid: 150n}, {window}).backup.id).toBe('20261126T010000Z');
    expect(planRestore(epoch1, {kind: 'xid', xid: 2n ** 32n + 150n}, {window}).backup.id).toBe('20261126T010000Z');
    expect(() => planRestore(epoch1, {kind: 'xid', xid: 50n}, {window})).toThrow(TargetError);
    expect(() => planRestore(epoch1, {kind: 'xid', xid: 2n ** 32n + 50n}, {window})).toThrow(/before the recoverable window/);
  });

  it('refuses an xid target when no backup recorded its next xid', () => {
    const noXid = [base('20261126T010000Z', '2026-11-26T01:00:30Z', '0/3000100', '000000010000000000000003')];
    expect(() => planRestore(noXid, {kind: 'xid', xid: 5000n}, {window})).toThrow(TargetError);
  });
});

describe('planRestore: refusing what cannot be reached', () => {
  it.each([
    ['an empty catalog', []],
    ['a catalog of dumps only', [dump]],
  ])('%s → NothingToRestoreError, exit code 2', (_what, backups) => {
    const error = thrown(() => planRestore(backups, {kind: 'latest'}, {window: {archivedSegments: 0, offBranch: []}}));
    expect(error).toBeInstanceOf(NothingToRestoreError);
    expect((error as NothingToRestoreError).exitCode).toBe(2);
    expect((error as NothingToRestoreError).code).toBe('restore.nothing');
    expect(error.message).toBe('the repository holds no base backup');
  });

  it.each([
    ['a time before the oldest backup', at('2026-11-26T01:00:29Z'), 'time 2026-11-26 01:00:29+00:00'],
    ['an LSN before the oldest backup', {kind: 'lsn', lsn: 0x30000ffn} as Target, 'LSN 0/30000FF'],
    ['an xid before the oldest backup', {kind: 'xid', xid: 999n} as Target, 'transaction 999'],
  ])('refuses %s', (_what, target, described) => {
    const error = thrown(() => planRestore(catalog, target, {window}));
    expect(error).toBeInstanceOf(TargetError);
    expect((error as TargetError).exitCode).toBe(2);
    expect(error.message).toBe(
      `${described} is before the recoverable window: the oldest backup, ${b1.id}, is consistent from ${b1.stopTime} (LSN ${b1.stopLsn})`,
    );
  });

  it('refuses a time after the newest commit in the archive', () => {
    const error = thrown(() => planRestore(catalog, at('2026-11-26T04:00:00.001Z'), {window}));
    expect(error).toBeInstanceOf(TargetError);
    expect(error.message).toBe(
      'time 2026-11-26 04:00:00.001+00:00 is after the recoverable window: the newest commit in the archive is at 2026-11-26T04:00:00.000Z',
    );
    // exactly the newest commit is fine
    expect(planRestore(catalog, at('2026-11-26T04:00:00Z'), {window}).backup).toBe(b3);
  });

  it('refuses a time target when the archive holds no commit after the newest backup', () => {
    const noCommit: RecoverableWindow = {...window, latestTime: undefined};
    const error = thrown(() => planRestore(catalog, at('2026-11-26T03:30:00Z'), {window: noCommit}));
    expect(error).toBeInstanceOf(TargetError);
    expect(error.message).toMatch(/cannot be reached: the archive holds no commit after the newest backup/);
  });

  it('refuses an LSN after the end of the archived WAL', () => {
    const error = thrown(() => planRestore(catalog, {kind: 'lsn', lsn: 0x1_0500_0001n}, {window}));
    expect(error).toBeInstanceOf(TargetError);
    expect(error.message).toBe('LSN 1/5000001 is after the end of the archived WAL (1/5000000)');
    expect(planRestore(catalog, {kind: 'lsn', lsn: 0x1_0500_0000n}, {window}).backup).toBe(b3);
  });

  describe('with a gap in the archive', () => {
    const gap: WindowGap = {
      missing: '000000010000000100000005', after: '000000010000000100000004', missingSegments: ['000000010000000100000005', '000000010000000100000006'],
      missingCount: 2, resumesAt: '000000010000000100000007', lastReachableLsn: '1/5000000', lastReachableTime: new Date('2026-11-26T04:00:00Z'),
    };
    const gapped: RecoverableWindow = {...window, gap};
    const described = 'segments 000000010000000100000005 and 000000010000000100000006 are missing (archived up to 000000010000000100000004, resuming at 000000010000000100000007)';

    it('refuses --latest, naming the missing segments and the last reachable point', () => {
      const error = thrown(() => planRestore(catalog, {kind: 'latest'}, {window: gapped}));
      expect(error).toBeInstanceOf(TargetError);
      expect(error.message).toBe(`the end of the archived WAL (latest) lies past a gap in the WAL archive: ${described}; ` +
        'the last reachable point is the commit at 2026-11-26T04:00:00.000Z (WAL continuous up to LSN 1/5000000)');
      expect(error.hint).toBe('restore to an earlier target, e.g. --target-time 2026-11-26T04:00:00.000Z (the last commit before the gap); ' +
        'or put the missing segments back into the archive (pgbk list names them)');
    });

    it('refuses an LSN or a time past it, and plans one before it', () => {
      expect(thrown(() => planRestore(catalog, {kind: 'lsn', lsn: 0x1_0500_0001n}, {window: gapped})).message).toMatch(/^LSN 1\/5000001 lies past a gap/);
      expect(thrown(() => planRestore(catalog, at('2026-11-26T04:00:00.001Z'), {window: gapped})).message).toMatch(/lies past a gap in the WAL archive: segments 000000010000000100000005 and/);
      expect(planRestore(catalog, {kind: 'lsn', lsn: 0x1_0500_0000n}, {window: gapped}).backup).toBe(b3);
      expect(planRestore(catalog, at('2026-11-26T03:59:59Z'), {window: gapped}).backup).toBe(b3);
    });

    it('refuses a time target when no commit before the gap is known', () => {
      const error = thrown(() => planRestore(catalog, at('2026-11-26T03:30:00Z'), {window: {...gapped, gap: {...gap, lastReachableTime: undefined}}}));
      expect(error.message).toMatch(/lies past a gap .*; the last reachable point is before LSN 1\/5000000 \(no commit archived before the gap\)$/);
      expect(error.hint).toMatch(/^restore to an earlier target \(a --target-time or --target-lsn before LSN 1\/5000000\)/);
    });

    it('warns for targets it cannot place (xid, restore point)', () => {
      const plan = planRestore(catalog, {kind: 'xid', xid: 6000n}, {window: gapped});
      expect(plan.warnings).toEqual([`the WAL archive has a gap: ${described}. If transaction 6000 lies after 1/5000000, recovery stops there with an error (archive-get refuses to skip the gap)`]);
    });
  });

  describe('along a branch', () => {
    // Timeline 2 forked from timeline 1 at 0/8000000: b3 (timeline 1, after the fork) is not on timeline 2's branch.
    const branch2 = branchOf(2, [{parent: 1, switchLsn: 0x8000000n, reason: 'no recovery target specified'}]);
    const t2 = base('20261126T025000Z', '2026-11-26T02:50:30Z', '0/9000100', '000000020000000000000009', {timeline: 2, nextXid: '3000'});

    it('uses only backups on the branch', () => {
      const along2: RecoverableWindow = {...window, branch: branch2};
      expect(planRestore([...catalog, t2], {kind: 'latest'}, {window: along2}).backup).toBe(t2);
      expect(planRestore([...catalog, t2], at('2026-11-26T02:40:00Z'), {window: along2}).backup).toBe(b2);
      expect(planRestore([...catalog, t2], {kind: 'latest'}, {window: along2}).timeline).toBe(2);
      const along1: RecoverableWindow = {...window, branch: branchOf(1, [])};
      expect(planRestore([dump, b1, b2, t2], {kind: 'latest'}, {window: along1}).backup).toBe(b2);
    });

    it('refuses --backup of another branch', () => {
      const error = thrown(() => planRestore([...catalog, t2], {kind: 'latest'}, {window: {...window, branch: branch2}, backupId: b3.id}));
      expect(error).toBeInstanceOf(TargetError);
      expect(error.message).toBe(`backup ${b3.id} (timeline 1, LSN 1/2000100) is not on the history of timeline 2`);
    });
  });

  it('checks the window even when --backup is given', () => {
    expect(() => planRestore(catalog, at('2026-11-27T00:00:00Z'), {window, backupId: b1.id})).toThrow(/after the recoverable window/);
  });
});
