import {describe, expect, it} from 'vitest';
import {archiveCommandProblem, expectedArchiveCommand, expectedRestoreCommand, settingChecks} from '../../../src/status/check.js';
import type {ServerSettings} from '../../../src/pg/status-queries.js';

const policy = {name: 'orders', file: '/srv/pgbk/orders.yaml', postgres: {url: 'postgresql://postgres@db/orders'}};
const good: ServerSettings = {
  inRecovery: false, versionNum: 160004, walLevel: 'replica', archiveMode: 'on',
  archiveCommand: 'pgbk archive-push --policy orders %p', archiveLibrary: '', maxWalSenders: 10,
  currentUser: 'postgres', superuser: true, replication: true, replicationRoles: ['postgres'],
};
const byName = (results: ReturnType<typeof settingChecks>) => Object.fromEntries(results.map((result) => [result.name, result]));

describe('archive_command', () => {
  it.each([
    'pgbk archive-push --policy orders %p',
    '/usr/bin/pgbk archive-push --policy=orders "%p"',
    'PGBK_POLICY=orders pgbk archive-push %p',
    'pgbk archive-push --policy /srv/pgbk/orders.yaml %p',
    'pgbk archive-push --policy /etc/pgbk/policies/orders.yaml %p',
  ])('accepts %s', (command) => {
    expect(archiveCommandProblem(command, policy)).toBeUndefined();
  });

  it.each([
    ['', /is empty/],
    ['(disabled)', /is empty/],
    ['cp %p /mnt/archive/%f', /does not call pgbk archive-push/],
    ['pgbk archive-push --policy orders2 %p', /does not name the policy orders/],
    ['pgbk archive-push --policy reports %p', /does not name the policy orders/],
    ['pgbk archive-push --policy orders', /does not pass the WAL file/],
  ])('refuses %j', (command, message) => {
    expect(archiveCommandProblem(command, policy)).toMatch(message);
  });

  it('recommends archive-push by absolute paths (Node.js and bin/pgbk) and the policy file, behind the shell fast path', () => {
    const runtime = {pgbkBin: '/usr/lib/node_modules/pgbk/bin/pgbk', nodePath: '/usr/bin/node', nodeVersion: 'v24.0.0'};
    const command = expectedArchiveCommand({name: 'orders', file: '/etc/pgbk/policies/orders.yaml'}, runtime);
    expect(command).toMatch(/^m=pg_wal\/pgbk-spool\/pushed\/%f; /);
    expect(command).toContain('exec /usr/bin/node /usr/lib/node_modules/pgbk/bin/pgbk archive-push --policy /etc/pgbk/policies/orders.yaml %p; fi');
    expect(command).not.toContain("'");
    expect(expectedArchiveCommand(policy, runtime)).toContain('archive-push --policy /srv/pgbk/orders.yaml %p');
    expect(expectedRestoreCommand({name: 'orders', file: '/etc/pgbk/policies/orders.yml'}, runtime)).toBe('/usr/lib/node_modules/pgbk/bin/pgbk archive-get --policy orders %f %p');
    expect(expectedRestoreCommand(policy, runtime)).toBe('/usr/lib/node_modules/pgbk/bin/pgbk archive-get --policy /srv/pgbk/orders.yaml %f %p');
  });

  it('quotes a Node.js path with a space (the server may not find node on its PATH), and passes its own test', () => {
    const runtime = {pgbkBin: '/opt/pgbk/bin/pgbk', nodePath: '/opt/node 24/bin/node', nodeVersion: 'v24.0.0'};
    expect(expectedArchiveCommand(policy, runtime)).toContain('exec "/opt/node 24/bin/node" /opt/pgbk/bin/pgbk archive-push --policy /srv/pgbk/orders.yaml %p');
    expect(archiveCommandProblem(expectedArchiveCommand(policy, runtime), policy)).toBeUndefined();
  });
});

describe('settingChecks', () => {
  it('passes a server set up for archiving', () => {
    const results = settingChecks('pitr', good, policy, []);
    expect(results.map((result) => [result.name, result.status])).toEqual([
      ['wal_level', 'ok'], ['archive_mode', 'ok'], ['archive_command', 'ok'], ['max_wal_senders', 'ok'], ['backup role', 'ok'],
    ]);
  });

  it('says which postgresql.conf line or SQL fixes each failure', () => {
    const results = byName(settingChecks('pitr', {
      ...good, walLevel: 'minimal', archiveMode: 'off', archiveCommand: '', maxWalSenders: 0, superuser: false, replication: false, currentUser: 'backup',
    }, policy, [], {pgbkBin: '/opt/pgbk/bin/pgbk', nodePath: '/usr/bin/node', nodeVersion: 'v24.0.0'}));
    expect(results.wal_level!.fix).toMatch(/wal_level = replica .*ALTER SYSTEM SET wal_level = 'replica'.*restart/);
    expect(results.archive_mode!.fix).toMatch(/^in postgresql.conf: archive_mode = on/);
    expect(results.archive_command!.fix).toMatch(/archive_command = 'm=pg_wal\/pgbk-spool\/pushed\/%f; .*exec \/usr\/bin\/node \/opt\/pgbk\/bin\/pgbk archive-push --policy \/srv\/pgbk\/orders.yaml %p; fi'/);
    expect(results.archive_command!.fix).toMatch(/ALTER SYSTEM SET archive_command = 'm=.*archive-push --policy \/srv\/pgbk\/orders.yaml %p; fi'; SELECT pg_reload_conf\(\);/);
    expect(results.max_wal_senders!.fix).toMatch(/max_wal_senders = 10/);
    expect(results['backup role']!.fix).toMatch(/^SQL: ALTER ROLE backup REPLICATION;/);
  });

  it('an archive_library overrides archive_command', () => {
    expect(byName(settingChecks('pitr', {...good, archiveLibrary: 'basic_archive'}, policy, [])).archive_command)
      .toMatchObject({status: 'fail', detail: expect.stringMatching(/archive_library = 'basic_archive'/)});
  });

  it('replica: needs a replication role and a streaming standby', () => {
    const none = byName(settingChecks('replica', {...good, replicationRoles: []}, policy, []));
    expect(none['replication role']).toMatchObject({status: 'fail', fix: expect.stringMatching(/CREATE ROLE replicator LOGIN REPLICATION/)});
    expect(none.standby).toMatchObject({status: 'fail', detail: 'no standby in pg_stat_replication'});
    const streaming = byName(settingChecks('replica', good, policy, [{applicationName: 'standby1', clientAddr: '10.0.0.2', state: 'streaming', lagBytes: 0, replayLagSeconds: 0}]));
    expect(streaming.standby).toMatchObject({status: 'ok', detail: 'streaming: standby1'});
  });

  it('dump: no server setting matters', () => {
    expect(settingChecks('dump', {...good, archiveMode: 'off', walLevel: 'minimal'}, policy, [])).toEqual([]);
  });

  it('a standby: archiving is the primary\'s business', () => {
    const results = byName(settingChecks('pitr', {...good, inRecovery: true, archiveMode: 'on'}, policy, []));
    expect(results.archive_mode!.status).toBe('skip');
  });
});
