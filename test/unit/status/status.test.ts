import {describe, expect, it} from 'vitest';
import {archiverFailing, evaluateStatus, gapMessage, type StatusFacts} from '../../../src/status/status.js';

const now = new Date('2026-11-26T12:00:00Z');
const ago = (seconds: number) => new Date(now.getTime() - seconds * 1000).toISOString();

function facts(overrides: Partial<StatusFacts> = {}): StatusFacts {
  return {
    strategy: 'pitr',
    objectives: {rpoSeconds: 300, rtoSeconds: 1800},
    lastBackup: {id: '20261126T020000Z', kind: 'base', startTime: ago(36000), stopTime: ago(35990)},
    repository: {reachable: true},
    lastArchived: {walFile: '000000010000000000000010', time: ago(30)},
    server: {
      reachable: true, inRecovery: false,
      archiver: {archivedCount: 16, lastArchivedWal: '000000010000000000000010', lastArchivedTime: new Date(ago(30)), failedCount: 0, lastFailedWal: null, lastFailedTime: null},
      replication: {role: 'primary', standbys: []},
    },
    jobs: {},
    ...overrides,
  };
}

describe('evaluateStatus', () => {
  it('meets the RPO when the newest archived WAL is young enough; RTO unknown without a drill is no failure', () => {
    const result = evaluateStatus(facts(), now);
    expect(result.ok).toBe(true);
    expect(result.rpo).toMatchObject({status: 'met', actualSeconds: 30, targetSeconds: 300});
    expect(result.rto).toMatchObject({status: 'unknown'});
    expect(result.problems).toEqual([]);
    expect(result.warnings).toEqual([]);
  });

  it('misses the RPO when the newest archived WAL is older than the objective', () => {
    const result = evaluateStatus(facts({lastArchived: {walFile: '000000010000000000000010', time: ago(600)}}), now);
    expect(result.ok).toBe(false);
    expect(result.rpo.status).toBe('missed');
    expect(result.problems).toEqual([expect.stringMatching(/^RPO 5m missed: newest archived WAL .* is 10m old/)]);
  });

  it('an old segment is no risk when the server reports all its WAL archived (idle server)', () => {
    const result = evaluateStatus(facts({lastArchived: {walFile: '000000010000000000000010', time: ago(86400)}, walFullyArchived: true}), now);
    expect(result.rpo).toMatchObject({status: 'met', actualSeconds: 0});
    expect(result.ok).toBe(true);
  });

  it('a failing archiver (failure newer than the last success) misses the RPO', () => {
    const server = facts().server as Extract<StatusFacts['server'], {reachable: true}>;
    const failing = {...server, archiver: {...server.archiver!, failedCount: 3, lastFailedWal: '000000010000000000000011', lastFailedTime: new Date(ago(5))}};
    const result = evaluateStatus(facts({server: failing}), now);
    expect(result.archiverFailing).toBe(true);
    expect(result.rpo.status).toBe('missed');
    expect(result.problems[0]).toMatch(/^archiver failing: 000000010000000000000011 failed at 2026-11-26T11:59:55Z \(3 failures\)/);
  });

  it('an old failure followed by a success is not pending', () => {
    expect(archiverFailing({archivedCount: 5, lastArchivedWal: 'b', lastArchivedTime: new Date(ago(10)), failedCount: 1, lastFailedWal: 'a', lastFailedTime: new Date(ago(100))})).toBe(false);
    expect(archiverFailing({archivedCount: 0, lastArchivedWal: null, lastArchivedTime: null, failedCount: 1, lastFailedWal: 'a', lastFailedTime: new Date(ago(100))})).toBe(true);
    expect(archiverFailing(undefined)).toBe(false);
  });

  it('a gap reports "point-in-time recovery broken since" and misses the RPO', () => {
    const gap = {missing: '00000001000000000000000C', after: '00000001000000000000000B', since: '2026-11-26T10:00:00.000Z'};
    const result = evaluateStatus(facts({gap}), now);
    expect(result.problems).toContain('point-in-time recovery broken since 2026-11-26T10:00:00Z: WAL segment 00000001000000000000000C is missing from the archive');
    expect(result.rpo.status).toBe('missed');
    expect(gapMessage({...gap, untilBackup: '20261126T110000Z'})).toMatch(/broken since 2026-11-26T10:00:00Z until backup 20261126T110000Z/);
  });

  it('a hole before the newest backup is a problem but leaves the RPO to the newest WAL', () => {
    const hole = {missing: '000000010000000000000004', after: '000000010000000000000003', since: ago(7200), untilBackup: '20261126T110000Z'};
    const result = evaluateStatus(facts({hole}), now);
    expect(result.ok).toBe(false);
    expect(result.rpo.status).toBe('met');
  });

  it('no base backup, an unreachable server or repository are problems', () => {
    expect(evaluateStatus(facts({lastBackup: undefined}), now).rpo.reason).toMatch(/no base backup/);
    const down = evaluateStatus(facts({server: {reachable: false, error: 'cannot connect to postgresql://x: ECONNREFUSED'}}), now);
    expect(down.ok).toBe(false);
    expect(down.problems[0]).toMatch(/^server unreachable: cannot connect/);
    expect(down.rpo.status).toBe('met'); // judged from the repository alone
    const noRepo = evaluateStatus(facts({repository: {reachable: false, error: 's3://b/p: timeout'}}), now);
    expect(noRepo.problems[0]).toBe('repository unreachable: s3://b/p: timeout');
    expect(noRepo.rpo.status).toBe('missed');
  });

  it('dump strategy: the RPO is the age of the newest dump', () => {
    const dump = {id: '20261125T020000Z', kind: 'dump', startTime: ago(3600), stopTime: ago(3500)};
    expect(evaluateStatus(facts({strategy: 'dump', objectives: {rpoSeconds: 86400, rtoSeconds: 14400}, lastBackup: dump, lastArchived: undefined}), now).rpo)
      .toMatchObject({status: 'met', actualSeconds: 3600});
    expect(evaluateStatus(facts({strategy: 'dump', objectives: {rpoSeconds: 1800, rtoSeconds: 14400}, lastBackup: dump}), now).rpo.status).toBe('missed');
    expect(evaluateStatus(facts({strategy: 'dump', lastBackup: undefined}), now).rpo.reason).toBe('no dump in the repository');
  });

  it('RTO: met, over, failed, not measured', () => {
    expect(evaluateStatus(facts({lastDrill: {ok: true, finishedAt: ago(60), rtoSeconds: 600}}), now).rto).toMatchObject({status: 'met', actualSeconds: 600});
    const over = evaluateStatus(facts({lastDrill: {ok: true, finishedAt: ago(60), rtoSeconds: 3600}}), now);
    expect(over.rto.status).toBe('missed');
    expect(over.problems).toContain(`RTO 30m missed: the last drill at ${ago(60).replace(/\.\d+Z$/, 'Z')} restored in 60m`);
    expect(evaluateStatus(facts({lastDrill: {ok: false, finishedAt: ago(60), rtoSeconds: null as unknown as number, errors: ['check failed']}}), now).rto)
      .toMatchObject({status: 'missed', reason: expect.stringMatching(/failed: check failed$/)});
    expect(evaluateStatus(facts({lastDrill: {ok: true, finishedAt: ago(60)}}), now).rto.status).toBe('unknown');
    // a drill run that failed after the last report
    const failedRun = evaluateStatus(facts({lastDrill: {ok: true, finishedAt: ago(86400), rtoSeconds: 60}, jobs: {drill: {ok: false, finishedAt: ago(60), error: 'exit 1'}}}), now);
    expect(failedRun.rto.status).toBe('missed');
  });

  it('replica strategy: no streaming standby, or one too far behind, is a problem; elsewhere lag is only shown', () => {
    const replica = {strategy: 'replica' as const, objectives: {rpoSeconds: 30, rtoSeconds: 300}};
    const server = facts().server as Extract<StatusFacts['server'], {reachable: true}>;
    expect(evaluateStatus(facts(replica), now).problems).toContain('no standby is streaming from the primary (pg_stat_replication)');
    const behind = {...server, replication: {role: 'primary' as const, standbys: [{applicationName: 's1', clientAddr: null, state: 'streaming', lagBytes: 1e6, replayLagSeconds: 120}]}};
    expect(evaluateStatus(facts({...replica, server: behind}), now).problems.join()).toMatch(/standby s1 replays 2m behind \(RPO 30s\)/);
    expect(evaluateStatus(facts({server: behind}), now).ok).toBe(true);
  });

  it('failed backup and expire jobs are warnings', () => {
    const result = evaluateStatus(facts({jobs: {backup: {ok: false, finishedAt: ago(60), error: 'exit 1: pg_basebackup failed'}}}), now);
    expect(result.ok).toBe(true);
    expect(result.warnings[0]).toMatch(/^last backup job failed at .*: exit 1: pg_basebackup failed$/);
  });
});
