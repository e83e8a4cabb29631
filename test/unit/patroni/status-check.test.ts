import {describe, expect, it} from 'vitest';
import {parseCluster} from '../../../src/patroni/rest.js';
import {connectionRoleCheck, systemIdentifierVerdict} from '../../../src/patroni/check.js';
import {evaluatePatroni, renderPatroni, type PatroniStatus} from '../../../src/patroni/status.js';
import {stripPgbkRecoveryBlock} from '../../../src/patroni/create-replica.js';

const cluster = parseCluster({members: [
  {name: 'pg1', role: 'leader', state: 'running', host: '10.0.0.11', port: 5432, timeline: 2},
  {name: 'pg2', role: 'replica', state: 'streaming', host: '10.0.0.12', port: 5432, timeline: 2, lag: 0},
]}, 'http://10.0.0.11:8008');

describe('check: the policy connection reaches the leader', () => {
  it('ok through HAProxy when the server is the leader (by inet_server_addr/port)', () => {
    const result = connectionRoleCheck('postgresql://backup@haproxy:5000/app', {inRecovery: false, address: '10.0.0.11', port: 5432}, cluster);
    expect(result).toMatchObject({status: 'ok', detail: 'postgres.url reaches the leader pg1 through haproxy:5000 (Patroni REST API and pg_is_in_recovery() agree)'});
  });
  it('ok naming the leader directly', () => {
    expect(connectionRoleCheck('postgresql://backup@10.0.0.11:5432/app', {inRecovery: false, address: '10.0.0.11', port: 5432}, cluster).detail)
      .toBe('postgres.url reaches the leader pg1 (Patroni REST API and pg_is_in_recovery() agree)');
  });
  it('fails on a replica, with the fix', () => {
    const result = connectionRoleCheck('postgresql://backup@haproxy:5001/app', {inRecovery: true, address: '10.0.0.12', port: 5432}, cluster);
    expect(result.status).toBe('fail');
    expect(result.detail).toBe('postgres.url reaches replica pg2 through haproxy:5001; the patroni strategy expects the leader (pg1)');
    expect(result.fix).toMatch(/GET \/primary/);
  });
  it('fails on a primary Patroni does not list as leader', () => {
    const result = connectionRoleCheck('postgresql://backup@10.0.0.12/app', {inRecovery: false, address: '10.0.0.12', port: 5432}, cluster);
    expect(result).toMatchObject({status: 'fail'});
    expect(result.detail).toMatch(/reaches pg2, which is not in recovery but Patroni lists as replica streaming/);
  });
  it('a primary at an address the cluster does not list (NAT, Unix socket) is reported, not failed', () => {
    expect(connectionRoleCheck('postgresql://backup@/app', {inRecovery: false, address: null, port: null}, cluster))
      .toMatchObject({status: 'ok', detail: expect.stringMatching(/not an address GET \/cluster lists; the leader is pg1 \(10\.0\.0\.11:5432\)/)});
  });
});

describe('check: the members\' system identifiers', () => {
  const reports = (ids: Array<string | undefined>) => ids.map((systemId, index) => ({member: {name: `pg${index + 1}`}, base: `https://10.0.0.1${index + 1}:8008`, systemId}));
  it('ok when every member that reports one agrees with pg_control_system(), naming the silent ones', () => {
    expect(systemIdentifierVerdict(reports(['7300000000000000001', '7300000000000000001', undefined]), '7300000000000000001')).toEqual({
      name: 'patroni system identifier', status: 'ok',
      detail: '2 members report database system 7300000000000000001, as pg_control_system() does; not reported by pg3 (not running?)',
    });
  });
  it('fails naming the member of another system and both identifiers', () => {
    const result = systemIdentifierVerdict(reports(['7300000000000000001', '7399999999999999999']), '7300000000000000001');
    expect(result.status).toBe('fail');
    expect(result.detail).toMatch(/^Patroni member pg2 \(https:\/\/10\.0\.0\.12:8008\/patroni\) reports database system 7399999999999999999, but the server postgres\.url reaches is database system 7300000000000000001: refused as backup source/);
    expect(result.fix).toMatch(/patroni\.rest_api/);
  });
});

describe('status: the cluster', () => {
  const status = (overrides: Partial<PatroniStatus & {reachable: true}> = {}): PatroniStatus => ({
    reachable: true, source: 'http://10.0.0.11:8008', paused: false, leader: 'pg1', maximumLagOnFailover: 1024,
    backupSource: {member: 'pg2', role: 'replica', reason: 'replica pg2 is healthy and 0 bytes behind (at most 1024)'},
    members: [
      {name: 'pg1', role: 'leader', state: 'running', host: '10.0.0.11', port: 5432, timeline: 2, lagBytes: 0, systemId: '7300000000000000001'},
      {name: 'pg2', role: 'replica', state: 'streaming', host: '10.0.0.12', port: 5432, timeline: 2, lagBytes: 0, systemId: '7300000000000000001'},
    ],
    repositorySystemId: '7300000000000000001', refused: [],
    ...overrides,
  });

  it('a healthy cluster: no problem, rendered as a table', () => {
    expect(evaluatePatroni(status())).toEqual({problems: [], warnings: []});
    expect(renderPatroni(status())).toEqual([
      'cluster from http://10.0.0.11:8008/cluster',
      'MEMBER  ROLE     STATE      HOST            TL  LAG  SYSTEM',
      'pg1     leader   running    10.0.0.11:5432  2        7300000000000000001',
      'pg2     replica  streaming  10.0.0.12:5432  2   0 B  7300000000000000001',
      'backups read from replica pg2: replica pg2 is healthy and 0 bytes behind (at most 1024)',
    ]);
  });

  it('a member of another database system is a problem naming it and both identifiers, and marked in the table', () => {
    const reason = 'Patroni member pg2 (http://10.0.0.12:8008/patroni) reports database system 7399999999999999999, but the repository is database system 7300000000000000001: refused as backup source. ...';
    const members = [
      {name: 'pg1', role: 'leader', state: 'running', host: '10.0.0.11', port: 5432, timeline: 2, lagBytes: 0, systemId: '7300000000000000001'},
      {name: 'pg2', role: 'replica', state: 'streaming', host: '10.0.0.12', port: 5432, timeline: 2, lagBytes: 0, systemId: '7399999999999999999'},
    ];
    const refused = status({members, refused: [{member: 'pg2', reason}], backupSource: null});
    expect(evaluatePatroni(refused).problems).toEqual([reason]);
    expect(renderPatroni(refused)[3]).toBe('pg2     replica  streaming  10.0.0.12:5432  2   0 B  7399999999999999999 (other system)');
  });

  it('unreachable REST API and a missing leader are problems', () => {
    expect(evaluatePatroni({reachable: false, error: 'no Patroni REST API answered'}).problems).toEqual(['Patroni REST API unreachable: no Patroni REST API answered']);
    expect(evaluatePatroni(status({leader: null})).problems[0]).toMatch(/^the Patroni cluster has no leader/);
  });

  it('lag beyond maximum_lag_on_failover, a stopped member, another timeline, pause: warnings', () => {
    const members = [
      {name: 'pg1', role: 'leader', state: 'running', host: 'a', port: 1, timeline: 3, lagBytes: 0, systemId: '1'},
      {name: 'pg2', role: 'replica', state: 'streaming', host: 'b', port: 1, timeline: 2, lagBytes: 5000, systemId: '1'},
      {name: 'pg3', role: 'replica', state: 'stopped', host: 'c', port: 1, timeline: null, lagBytes: null, systemId: null},
    ];
    const {problems, warnings} = evaluatePatroni(status({members, paused: true}));
    expect(problems).toEqual([]);
    expect(warnings).toEqual([
      'Patroni member pg2 is 5000 bytes behind the leader (maximum_lag_on_failover 1024): it would not be promoted, nor backed up from',
      'Patroni member pg2 is on timeline 2, the leader on 3',
      'Patroni member pg3 is stopped',
      'the Patroni cluster is paused (maintenance mode): no automatic failover',
    ]);
  });
});

describe('create-replica leaves recovery settings to Patroni', () => {
  it('removes the block pgbk restore appends to postgresql.auto.conf, and nothing else', () => {
    const original = '# Do not edit this file manually!\n# It will be overwritten by the ALTER SYSTEM command.\nwork_mem = \'8MB\'\n';
    const appended = `${original}\n# Added by pgbk restore at 2026-01-01T00:00:00.000Z: backup X, target latest.\n` +
      '# PostgreSQL removes recovery.signal when recovery ends; these settings then have no effect.\n' +
      "restore_command = '/usr/bin/node /opt/pgbk/bin/pgbk archive-get --policy /p.yaml %f %p'\nrecovery_target_timeline = 'latest'\n";
    expect(stripPgbkRecoveryBlock(appended)).toBe(original);
    expect(stripPgbkRecoveryBlock(original)).toBe(original);
  });
});
