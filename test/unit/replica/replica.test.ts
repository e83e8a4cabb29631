// The replica strategy's pure parts: policy section, primary_conninfo without passwords, restore --standby
// options, standby lag, when the primary must switch WAL, where a backup is read from, status verdicts.

import {createServer} from 'node:net';
import {describe, expect, it} from 'vitest';
import {PolicyError, UsageError} from '../../../src/errors.js';
import {parsePolicy} from '../../../src/policy/load.js';
import {standbyConninfo, withoutPassword} from '../../../src/replica/conninfo.js';
import {checkStandbyOptions, redactConninfo, standbyRecovery} from '../../../src/replica/restore.js';
import {standbyLagSeconds} from '../../../src/replica/probe.js';
import {needsSwitch} from '../../../src/replica/backup.js';
import {resolveBackupSource} from '../../../src/backup/source.js';
import {evaluateStatus, type StatusFacts} from '../../../src/status/status.js';
import {parseTarget} from '../../../src/restore/target.js';

const FILE = '/etc/pgbk/policies/app.yaml';
const policyText = (replica: string, strategy = 'replica', url = 'postgresql://postgres@127.0.0.1:5432/app') => `strategy: ${strategy}
postgres:
  url: ${url}
repository:
  url: file:///var/backups/pgbk/app
${replica}`;

describe('policy: replica section', () => {
  it('reads standby_url, primary_conninfo and max_lag', () => {
    const policy = parsePolicy(policyText(`replica:
  standby_url: postgresql://postgres@10.0.0.2:5432/app
  primary_conninfo: host=10.0.0.1 user=replicator application_name=s2
  max_lag: 1m
`), FILE, {});
    expect(policy.replica).toEqual({standbyUrl: 'postgresql://postgres@10.0.0.2:5432/app', primaryConninfo: 'host=10.0.0.1 user=replicator application_name=s2', maxLagSeconds: 60});
    expect(Object.isFrozen(policy.replica)).toBe(true);
  });

  it('is optional, and every key in it too', () => {
    expect(parsePolicy(policyText(''), FILE, {}).replica).toBeUndefined();
    expect(parsePolicy(policyText('replica: {}\n'), FILE, {}).replica).toEqual({standbyUrl: undefined, primaryConninfo: undefined, maxLagSeconds: undefined});
  });

  it.each([
    ['a standby_url that is not a libpq URL', 'replica:\n  standby_url: db-standby:5432\n', `${FILE}:7: replica.standby_url: expected a libpq URL`],
    ['a max_lag that is not a duration', 'replica:\n  max_lag: soon\n', `${FILE}:7: replica.max_lag: expected a duration`],
    ['an unknown key', 'replica:\n  standby: x\n', `${FILE}:7: replica.standby: unknown key`],
  ])('refuses %s, naming the file, line and key', (_what, section, message) => {
    expect(() => parsePolicy(policyText(section), FILE, {})).toThrow(PolicyError);
    expect(() => parsePolicy(policyText(section), FILE, {})).toThrow(message);
  });
});

describe('primary_conninfo for restore --standby', () => {
  const policy = (url: string, primaryConninfo?: string) => ({postgres: {url}, replica: primaryConninfo ? {primaryConninfo} : undefined, name: 'app'});

  it('defaults to postgres.url without its password', () => {
    expect(standbyConninfo(policy('postgresql://postgres:s3cret@10.0.0.1:5432/app'))).toEqual(
      {conninfo: 'postgresql://postgres@10.0.0.1:5432/app', source: 'postgres.url', droppedPassword: true});
    expect(standbyConninfo(policy('postgresql://postgres@10.0.0.1/app?password=x&sslmode=require')).conninfo).toBe('postgresql://postgres@10.0.0.1/app?sslmode=require');
    expect(standbyConninfo(policy('postgresql://postgres@10.0.0.1/app')).droppedPassword).toBe(false);
  });

  it('takes replica.primary_conninfo, also without a password (key = value, quoted or not)', () => {
    expect(standbyConninfo(policy('postgresql://x@h/db', "host=10.0.0.1 password='a \\' b' user=replicator")))
      .toEqual({conninfo: 'host=10.0.0.1 user=replicator', source: 'replica.primary_conninfo', droppedPassword: true});
    expect(withoutPassword('host=h PASSWORD = secret port=5433')).toEqual({conninfo: 'host=h port=5433', dropped: true});
    expect(withoutPassword('host=h passfile=/var/lib/postgresql/.pgpass')).toEqual({conninfo: 'host=h passfile=/var/lib/postgresql/.pgpass', dropped: false});
  });

  it('keeps a password given explicitly in --primary-conninfo, and never prints it', () => {
    const chosen = standbyConninfo(policy('postgresql://x:y@h/db'), 'host=h user=r password=given');
    expect(chosen).toEqual({conninfo: 'host=h user=r password=given', source: '--primary-conninfo', droppedPassword: false});
    expect(redactConninfo('host=h user=r password=given')).toBe('host=h user=r password=***');
    expect(redactConninfo("host=h password='a b' user=r")).toBe('host=h password=*** user=r');
    expect(redactConninfo('postgresql://r:pw@h/db')).toBe('postgresql://r:***@h/db');
  });

  it('warns on stderr when it leaves a password out', () => {
    let err = '';
    const result = standbyRecovery(policy('postgresql://postgres:s3cret@h/db'), undefined, {stderr: {write: (text: string) => (err += text)} as never});
    expect(result.primaryConninfo).toBe('postgresql://postgres@h/db');
    expect(err).toMatch(/password in postgres.url of policy app is not written into postgresql.auto.conf; put it in ~postgres\/.pgpass/);
  });
});

describe('restore --standby options', () => {
  const latest = parseTarget({});
  it('refuses a recovery target, --start, --to-db, a timeline, and --primary-conninfo alone (exit 2)', () => {
    for (const [options, target, message] of [
      [{standby: true}, parseTarget({targetTime: '2026-11-26 10:00:00+00'}), /--standby takes no recovery target \(got time 2026-11-26 10:00:00\+00:00\)/],
      [{standby: true}, parseTarget({targetLsn: '0/3000000'}), /no recovery target/],
      [{standby: true, start: true}, latest, /--standby and --start cannot be combined/],
      [{standby: true, toDb: 'postgresql://h/db'}, latest, /not --to-db/],
      [{standby: true, targetTimeline: '2'}, latest, /--target-timeline 2/],
      [{primaryConninfo: 'host=h'}, latest, /--primary-conninfo needs --standby/],
    ] as const) {
      let error: unknown;
      try {
        checkStandbyOptions(options, target);
      } catch (caught) {
        error = caught;
      }
      expect(error).toBeInstanceOf(UsageError);
      expect((error as UsageError).exitCode).toBe(2);
      expect((error as Error).message).toMatch(message);
    }
  });

  it('accepts --standby with no target or --latest', () => {
    expect(() => checkStandbyOptions({standby: true, targetTimeline: 'latest'}, latest)).not.toThrow();
    expect(() => checkStandbyOptions({standby: true, primaryConninfo: 'host=h'}, parseTarget({latest: true}))).not.toThrow();
  });
});

describe('standby lag and the stop segment', () => {
  it('is 0 while streaming with everything received replayed, else the time since the last replayed commit', () => {
    expect(standbyLagSeconds('streaming', '0/5000000', '0/5000000', 900)).toBe(0);
    expect(standbyLagSeconds('streaming', '0/5000100', '0/5000000', 12.5)).toBe(12.5);
    expect(standbyLagSeconds(null, '0/5000000', '0/5000000', 900)).toBe(900);
    expect(standbyLagSeconds('streaming', '0/5000100', '0/5000000', null)).toBeNull();
    expect(standbyLagSeconds('streaming', '0/5000100', '0/5000000', -0.2)).toBe(0);
  });

  it('switches WAL on the primary only while it still writes at or before the segment the backup ends in', () => {
    expect(needsSwitch('000000010000000000000005', '000000010000000000000005')).toBe(true);
    expect(needsSwitch('000000010000000000000004', '000000010000000000000005')).toBe(true);
    expect(needsSwitch('000000010000000000000006', '000000010000000000000005')).toBe(false);
    expect(needsSwitch('0000000100000001000000A0', '00000001000000000000FFFF')).toBe(false);
  });
});

describe('resolveBackupSource', () => {
  const closedPort = () => new Promise<number>((resolve) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const port = (server.address() as {port: number}).port;
      server.close(() => resolve(port));
    });
  });

  it('pitr and dump: the policy server', async () => {
    for (const strategy of ['pitr', 'dump']) {
      const policy = parsePolicy(policyText('replica:\n  standby_url: postgresql://postgres@127.0.0.1:1/app\n', strategy), FILE, {});
      expect(await resolveBackupSource(policy)).toEqual({url: 'postgresql://postgres@127.0.0.1:5432/app', role: 'primary'});
    }
  });

  it('replica without a standby named: the policy server', async () => {
    expect(await resolveBackupSource(parsePolicy(policyText(''), FILE, {}))).toEqual({url: 'postgresql://postgres@127.0.0.1:5432/app', role: 'primary'});
  });

  it('replica with its standby down: the primary, said as a warning', async () => {
    const port = await closedPort();
    const policy = parsePolicy(policyText(`replica:\n  standby_url: postgresql://postgres:pw@127.0.0.1:${port}/app\n`), FILE, {});
    const warnings: string[] = [];
    expect(await resolveBackupSource(policy, {warn: (line) => warnings.push(line)})).toEqual({url: 'postgresql://postgres@127.0.0.1:5432/app', role: 'primary'});
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(new RegExp(`^standby postgresql://postgres:\\*\\*\\*@127.0.0.1:${port}/app is unreachable \\(.*\\); taking the backup from the primary postgresql://postgres@127.0.0.1:5432/app$`));
  });
});

describe('status of the standby backups are read from', () => {
  const now = new Date('2026-11-26T12:00:00Z');
  const base: StatusFacts = {
    strategy: 'replica',
    objectives: {rpoSeconds: 30, rtoSeconds: 300},
    lastBackup: {id: '20261126T110000Z', kind: 'base', startTime: '2026-11-26T11:00:00Z', stopTime: '2026-11-26T11:00:10Z'},
    repository: {reachable: true},
    lastArchived: {walFile: '000000010000000000000010', time: '2026-11-26T11:59:50Z'},
    server: {
      reachable: true, inRecovery: false,
      replication: {role: 'primary', standbys: [{applicationName: 's1', clientAddr: '10.0.0.2', state: 'streaming', lagBytes: 0, replayLagSeconds: 0.1}]},
    },
    jobs: {},
  };
  const probe = {reachable: true as const, inRecovery: true, receiver: 'streaming', receiveLsn: '0/5000000', replayLsn: '0/5000000', lagSeconds: 0};

  it('a healthy named standby adds nothing', () => {
    const result = evaluateStatus({...base, backupStandby: {url: 'postgresql://postgres@s1/app', probe}}, now);
    expect(result.problems).toEqual([]);
    expect(result.warnings).toEqual([]);
  });

  it('unreachable or promoted is a warning (backups fall back), behind max_lag a problem', () => {
    expect(evaluateStatus({...base, backupStandby: {url: 'u', probe: {reachable: false, error: 'connection refused'}}}, now).warnings)
      .toEqual(['standby u (replica.standby_url) is unreachable: connection refused; backups fall back to the primary']);
    expect(evaluateStatus({...base, backupStandby: {url: 'u', probe: {...probe, inRecovery: false}}}, now).warnings[0]).toMatch(/is not in recovery: it was promoted/);
    const behind = evaluateStatus({...base, maxLagSeconds: 10, backupStandby: {url: 'u', probe: {...probe, lagSeconds: 45}}}, now);
    expect(behind.ok).toBe(false);
    expect(behind.problems).toEqual(['standby u (replica.standby_url) replays 45s behind (replica.max_lag 10s); backups fall back to the primary']);
  });

  it('holds pg_stat_replication lag to replica.max_lag when set, else the RPO', () => {
    const slow = {...base, server: {...base.server, replication: {role: 'primary' as const, standbys: [{applicationName: 's1', clientAddr: null, state: 'streaming', lagBytes: 5e6, replayLagSeconds: 20}]}}} as StatusFacts;
    expect(evaluateStatus(slow, now).problems).toEqual([]);
    expect(evaluateStatus({...slow, maxLagSeconds: 10}, now).problems).toEqual(['standby s1 replays 20s behind (replica.max_lag 10s)']);
  });
});
