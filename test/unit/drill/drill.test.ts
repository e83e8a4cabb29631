import {describe, expect, it} from 'vitest';
import {PolicyError} from '../../../src/errors.js';
import {parsePolicy} from '../../../src/policy/load.js';
import {judgeCheck} from '../../../src/drill/checks.js';
import {expectedPoint, parseXactRecords, readServerPoint, restoredSegments} from '../../../src/drill/proof.js';
import {drillIdFor, evaluateObjectives, failures, isPassing, renderReport, type DrillReport} from '../../../src/drill/report.js';
import {formatMicros, parsePgTimestamp, randomTargetIn, targetMicros} from '../../../src/drill/target.js';
import {parseTargetTime} from '../../../src/restore/target.js';
import {drillReportKey} from '../../../src/storage/layout.js';

const BASE = `strategy: pitr
postgres:
  url: postgresql://postgres@127.0.0.1:5432/orders
repository:
  url: file:///var/backups/pgbk/orders
`;

describe('policy drill section', () => {
  it('defaults: no checks, no heartbeat, an hour', () => {
    expect(parsePolicy(BASE, '/p/orders.yaml', {}).drill).toEqual({checks: [], heartbeat: false, timeoutSeconds: 3600});
  });
  it('reads checks with expected values and bounds', () => {
    const policy = parsePolicy(`${BASE}drill:
  heartbeat: true
  timeout: 10m
  checks:
    - name: orders exist
      sql: select count(*) from orders
      min: 1
    - sql: select current_setting('server_version_num')::int >= 120000
      expect: true
    - sql: select 42
      expect: 42
`, '/p/orders.yaml', {});
    expect(policy.drill).toEqual({
      heartbeat: true, timeoutSeconds: 600,
      checks: [
        {name: 'orders exist', sql: 'select count(*) from orders', min: 1},
        {name: 'check 2', sql: `select current_setting('server_version_num')::int >= 120000`, expect: 'true'},
        {name: 'check 3', sql: 'select 42', expect: '42'},
      ],
    });
  });
  it('refuses unknown keys, a check without sql, and expect together with bounds', () => {
    expect(() => parsePolicy(`${BASE}drill:\n  heartbeats: true\n`, '/p/o.yaml', {})).toThrow(/o\.yaml:7: drill\.heartbeats: unknown key/);
    expect(() => parsePolicy(`${BASE}drill:\n  checks:\n    - name: x\n`, '/p/o.yaml', {})).toThrow(PolicyError);
    expect(() => parsePolicy(`${BASE}drill:\n  checks:\n    - sql: select 1\n      expect: 1\n      min: 0\n`, '/p/o.yaml', {})).toThrow(/expect or min\/max/);
    expect(() => parsePolicy(`${BASE}drill:\n  timeout: soon\n`, '/p/o.yaml', {})).toThrow(/drill\.timeout: expected a duration/);
  });
});

describe('drill checks', () => {
  const check = {name: 'c', sql: 'select 1'};
  it('compares an exact value as text', () => {
    expect(judgeCheck({...check, expect: '42'}, 42).ok).toBe(true);
    expect(judgeCheck({...check, expect: 'true'}, true).ok).toBe(true);
    const failed = judgeCheck({...check, expect: '42'}, '41');
    expect(failed).toEqual({name: 'c', ok: false, detail: 'expected "42", got "41"'});
    expect(judgeCheck({...check, expect: '42'}, null).detail).toBe('expected "42", got NULL');
  });
  it('checks numeric bounds', () => {
    expect(judgeCheck({...check, min: 1}, '2000').ok).toBe(true);
    expect(judgeCheck({...check, min: 1}, '0')).toEqual({name: 'c', ok: false, detail: '0 (expected >= 1)'});
    expect(judgeCheck({...check, min: 1, max: 3}, 4).detail).toBe('4 (expected >= 1 and <= 3)');
    expect(judgeCheck({...check, max: 3}, 'abc').ok).toBe(false);
    expect(judgeCheck({...check, min: 0}, null).ok).toBe(false);
  });
});

describe('drill targets and times', () => {
  it('picks a random moment inside the window, microsecond precision', () => {
    const window = {earliestTime: new Date('2026-11-26T10:00:00Z'), latestTime: new Date('2026-11-26T11:00:00Z'), archivedSegments: 3};
    expect(randomTargetIn(window, () => 0).text).toBe('2026-11-26 10:00:00.000000+00:00');
    const half = randomTargetIn(window, () => 0.5);
    expect(half.time.toISOString()).toBe('2026-11-26T10:30:00.000Z');
    const odd = randomTargetIn(window, () => 0.123456789);
    expect(targetMicros(odd)).toBe(BigInt(Date.parse('2026-11-26T10:00:00Z')) * 1000n + BigInt(Math.floor(3_600_000_000 * 0.123456789)));
    expect(() => randomTargetIn({archivedSegments: 0})).toThrow(/no commit after the oldest backup/);
  });
  it('keeps the microseconds the user wrote', () => {
    expect(targetMicros(parseTargetTime('2026-11-26 10:41:00.123456+00'))).toBe(1795689660123456n);
    expect(targetMicros(parseTargetTime('2026-11-26T11:41:00.5+01:00'))).toBe(1795689660500000n);
    expect(formatMicros(1795689660123456n)).toBe('2026-11-26T10:41:00.123456Z');
  });
  it('reads PostgreSQL timestamps in UTC', () => {
    expect(parsePgTimestamp('2026-11-26 10:41:00.123456 UTC')).toBe(1795689660123456n);
    expect(parsePgTimestamp('2026-11-26 10:41:00.12+00')).toBe(1795689660120000n);
    expect(parsePgTimestamp('2026-11-26 10:41:00+00')).toBe(1795689660000000n);
    expect(parsePgTimestamp('2026-11-26 11:41:00+01')).toBeUndefined();
  });
});

const WALDUMP = `rmgr: Transaction len (rec/tot):     34/    34, tx:        744, lsn: 0/03000100, prev 0/030000C8, desc: COMMIT 2026-11-26 10:40:59.900000 UTC
rmgr: Transaction len (rec/tot):     34/    34, tx:        745, lsn: 0/03000200, prev 0/03000100, desc: ABORT 2026-11-26 10:41:00.000001 UTC
rmgr: Transaction len (rec/tot):     34/    34, tx:        746, lsn: 0/03000300, prev 0/03000200, desc: COMMIT 2026-11-26 10:41:00.500000 UTC; inval msgs: catcache 7
pg_waldump: error: error in WAL record at 0/3000400: invalid record length at 0/3000428: wanted 24, got 0
`;

describe('the WAL proof', () => {
  const records = parseXactRecords(WALDUMP);
  it('parses commit and abort records in WAL order', () => {
    expect(records.map((r) => [r.xid, r.kind, r.lsn])).toEqual([['744', 'commit', '0/03000100'], ['745', 'abort', '0/03000200'], ['746', 'commit', '0/03000300']]);
  });
  it('expects recovery to stop before the first record after the target and to have replayed the one before', () => {
    const point = expectedPoint(records, 1795689660000000n); // 10:41:00.000000
    expect(point.last?.xid).toBe('744');
    expect(point.stop?.xid).toBe('745');
    expect(expectedPoint(records, 1795689660000001n).stop?.xid).toBe('746'); // a record exactly at the target is replayed
    expect(expectedPoint(records, undefined)).toEqual({last: records[2]});
    expect(expectedPoint(records, 1795689600000000n)).toEqual({last: undefined, stop: records[0]});
  });
  it('reads where the server stopped from its log', () => {
    const log = [
      'LOG:  restored log file "000000010000000000000002" from archive',
      'LOG:  restored log file "000000010000000000000003" from archive',
      'LOG:  recovery stopping before abort of transaction 745, time 2026-11-26 10:41:00.000001+00',
      'LOG:  last completed transaction was at log time 2026-11-26 10:40:59.9+00',
      'LOG:  restored log file "000000010000000000000003" from archive',
    ].join('\n');
    expect(restoredSegments(log)).toEqual(['000000010000000000000002', '000000010000000000000003']);
    expect(readServerPoint(log)).toEqual({
      stopKind: 'abort', stopXid: '745', stopText: '2026-11-26 10:41:00.000001+00', stopMicros: 1795689660000001n,
      lastText: '2026-11-26 10:40:59.9+00', lastMicros: 1795689659900000n,
    });
  });
});

describe('the drill report', () => {
  const report: DrillReport = {
    formatVersion: 1, id: drillIdFor(new Date('2026-11-26T04:00:00.123Z')), policy: 'orders', strategy: 'pitr',
    startedAt: '2026-11-26T04:00:00.123Z', finishedAt: '2026-11-26T04:01:10.000Z', ok: true,
    target: {kind: 'time', time: '2026-11-25T20:13:07.123456Z', chosen: 'random'}, backupId: '20261125T020000Z',
    lastReplayedCommit: '2026-11-25T20:13:05.000000Z', stoppedBefore: 'commit of transaction 746 at 2026-11-25T20:13:08.000000Z',
    phases: {planMs: 800, fetchMs: 40_000, startMs: 1_200, replayMs: 20_000},
    rtoSeconds: 62, rpoSeconds: 2.123456, objectives: evaluateObjectives(62, 2.123456, {rpoSeconds: 300, rtoSeconds: 1800}),
    checks: [{name: 'pg_amcheck', ok: true, detail: 'no corruption found'}], errors: [],
  };
  it('ids sort as time and name the stored object', () => {
    expect(report.id).toBe('20261126T040000.123Z');
    expect(drillReportKey(report.id)).toBe('drills/20261126T040000.123Z.json');
    expect(drillIdFor(new Date('2026-11-26T04:00:00.124Z')) > report.id).toBe(true);
  });
  it('passes only when every check passed and both objectives were met', () => {
    expect(isPassing(report)).toBe(true);
    expect(failures(report)).toEqual([]);
    const slow = {...report, objectives: evaluateObjectives(4000, 2, {rpoSeconds: 300, rtoSeconds: 1800})};
    expect(isPassing(slow)).toBe(false);
    expect(failures({...slow, rtoSeconds: 4000})).toEqual(['RTO 4000.0s misses the objective of 30m']);
    const failed = {...report, checks: [{name: 'orders exist', ok: false, detail: '0 (expected >= 1)'}]};
    expect(failures(failed)).toEqual(['check "orders exist" failed: 0 (expected >= 1)']);
    expect(evaluateObjectives(null, null, {rpoSeconds: 1, rtoSeconds: 1})).toMatchObject({rpoMet: false, rtoMet: false});
  });
  it('renders a human summary', () => {
    const text = renderReport(report);
    expect(text).toContain('drill 20261126T040000.123Z of policy orders: PASSED');
    expect(text).toContain('RTO:         62.0s (objective 30m: met) = plan 0.8s + fetch 40.0s + start 1.2s + replay 20.0s');
    expect(text).toContain('RPO:         2.1s (objective 5m: met)');
    expect(text).toContain('ok   pg_amcheck: no corruption found');
  });
});
