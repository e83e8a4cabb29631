// Logical replication and restores: a publisher and a subscriber on loopback, both archiving into the S3
// repository. Drills and restore --start of either never consume the publisher's slot: while the real subscriber
// is stopped (its slot inactive, the moment a copy could take it), the publisher's slot does not move and no
// walsender serves it; the rows written meanwhile still reach the real subscriber when it comes back. The restored
// subscriber's subscription is disabled and detached, and its rows are the subscriber's.

import {afterAll, beforeAll, describe, expect, inject, it} from 'vitest';
import {mkdirSync} from 'node:fs';
import {restoreAndStart, setupArchiving, snapshot, switchAndWaitArchived, writePolicy, type ArchivingSetup, type RestoredServer} from '../helpers/pitr.js';
import {runPgbk} from '../helpers/cli.js';
import {join} from 'node:path';
import {chownToPostgres, pgBinDir, runAsPostgres, waitFor, queryAt} from '../helpers/cluster.js';

const s3 = inject('s3');

describe('logical replication: restores and drills of a publisher and a subscriber', () => {
  let pub: ArchivingSetup;
  let sub: ArchivingSetup;
  const restored: RestoredServer[] = [];

  const slotOf = async () => (await pub.cluster.query<{active: boolean; confirmed: string; restart: string}>(
    `select active, confirmed_flush_lsn::text as confirmed, restart_lsn::text as restart from pg_replication_slots where slot_name = 'sub'`))[0];
  const subscriberRows = async () => Number((await sub.cluster.query<{n: string}>('select count(*)::text as n from items'))[0]!.n);

  beforeAll(async () => {
    pub = await setupArchiving('s3', s3, {conf: {wal_level: 'logical', max_replication_slots: 4}});
    sub = await setupArchiving('s3', s3, {conf: {max_replication_slots: 4}});
    await pub.cluster.psql(`create table items (id int primary key, note text); insert into items select g, 'before ' || g from generate_series(1, 50) g;
      create publication pub for table items`);
    await sub.cluster.psql('create table items (id int primary key, note text)');
    await sub.cluster.psql(`create subscription sub connection 'host=127.0.0.1 port=${pub.cluster.port} user=postgres dbname=postgres' publication pub`);
    await waitFor(async () => (await subscriberRows()) === 50, {timeoutMs: 60_000, intervalMs: 200, what: 'the initial table copy'});
    for (const setup of [pub, sub]) {
      const backup = await setup.pgbk(['backup']);
      expect(backup.exitCode, backup.stderr).toBe(0);
    }
    await pub.cluster.psql(`insert into items select g, 'after ' || g from generate_series(51, 80) g`);
    await waitFor(async () => (await subscriberRows()) === 80, {timeoutMs: 60_000, intervalMs: 200, what: 'replication of rows 51-80'});
    await switchAndWaitArchived(pub.cluster);
    await switchAndWaitArchived(sub.cluster);
  }, 240_000);

  afterAll(async () => {
    for (const server of restored) await server.stop().catch(() => undefined);
    await sub?.destroy();
    await pub?.destroy();
  });

  it('status shows the subscription running and the publisher\'s slot with the WAL it retains', async () => {
    const subStatus = await sub.pgbk(['status', '--json', '--no-commit-times']);
    const subscriptions = JSON.parse(subStatus.stdout).policies[0].logical.subscriptions;
    expect(subscriptions).toEqual([expect.objectContaining({name: 'sub', database: 'postgres', enabled: true, running: true, slot: 'sub'})]);
    expect(subscriptions[0].lagSeconds).toBeGreaterThanOrEqual(0);
    const pubStatus = await pub.pgbk(['status', '--json', '--no-commit-times']);
    const slots = JSON.parse(pubStatus.stdout).policies[0].logical.slots;
    expect(slots).toEqual([expect.objectContaining({name: 'sub', type: 'logical', database: 'postgres', active: true})]);
    expect(slots[0].retainedBytes).toBeGreaterThan(0);
    const text = await sub.pgbk(['status', '--no-commit-times']);
    expect(text.stdout).toMatch(/subscription\s+sub \(database postgres\) running, slot sub/);
  });

  it('drills and restores of both never touch the publisher\'s slot; the copies\' subscriptions are disabled and detached', async () => {
    // The real subscriber goes away: its slot is free for any copy that would connect with the same slot name.
    await sub.cluster.stop('fast');
    await waitFor(async () => (await slotOf())?.active === false, {timeoutMs: 30_000, intervalMs: 200, what: 'the slot to become inactive'});
    await pub.cluster.psql(`insert into items select g, 'while away ' || g from generate_series(81, 90) g`);
    const before = await slotOf();

    const check = await pub.pgbk(['check']);
    expect(check.stdout).toMatch(/WARN\s+replication slots\s+sub \(logical\) is inactive and retains \d/);
    expect(check.exitCode, check.stdout).toBe(0);

    // The subscriber's data as archived: rows 1-80 (the subscriber stopped before 81-90 were written).
    const drillSub = await sub.pgbk(['drill', '--latest', '--json']);
    const subReport = JSON.parse(drillSub.stdout);
    expect(drillSub.exitCode, drillSub.stderr).toBe(0);
    expect(subReport.checks).toContainEqual({name: 'logical replication kept off', ok: true,
      detail: "subscription sub (database postgres) disabled and detached from the publisher's slot sub"});
    const drillPub = await pub.pgbk(['drill', '--latest', '--json']);
    expect(drillPub.exitCode, drillPub.stderr).toBe(0);

    const subCopy = await restoreAndStart(sub, ['--latest']);
    restored.push(subCopy);
    expect(subCopy.result.stdout).toContain("logical replication: subscription sub (database postgres) disabled and detached from the publisher's slot sub");
    const pubCopy = await restoreAndStart(pub, ['--latest']);
    restored.push(pubCopy);

    expect(await queryAt(subCopy.url, `select subenabled, subslotname from pg_subscription`)).toEqual([{subenabled: false, subslotname: null}]);
    expect(await snapshot(subCopy.url)).toEqual(await snapshotOf(pub, 'where id <= 80'));
    // Restarted with its own settings (logical replication workers allowed), the copy starts no apply worker:
    // its subscription stays disabled.
    const pgCtl = join(pgBinDir(), 'pg_ctl');
    expect((await runAsPostgres(pgCtl, ['-D', subCopy.dataDir, '-m', 'fast', '-w', 'stop'])).exitCode).toBe(0);
    const start = await runAsPostgres(pgCtl, ['-D', subCopy.dataDir, '-l', join(subCopy.dataDir, 'restart.log'), '-w', '-o', `-p ${subCopy.port} -c listen_addresses=127.0.0.1`, 'start']);
    expect(start.exitCode, start.stderr).toBe(0);
    expect(await queryAt(subCopy.url, `select current_setting('max_logical_replication_workers')::int > 0 as allowed, ` +
      `(select count(*)::int from pg_stat_subscription where pid is not null) as workers`)).toEqual([{allowed: true, workers: 0}]);
    // The publisher's copy: its publication and rows, no slot (pg_basebackup copies none).
    expect(await queryAt(pubCopy.url, `select pubname from pg_publication`)).toEqual([{pubname: 'pub'}]);
    expect(await queryAt(pubCopy.url, `select slot_name from pg_replication_slots`)).toEqual([]);
    expect(await snapshot(pubCopy.url)).toEqual(await snapshotOf(pub, ''));

    // The production slot: not moved, not in use, no walsender for it.
    expect(await slotOf()).toEqual(before);
    expect(await pub.cluster.query(`select application_name from pg_stat_replication where application_name = 'sub'`)).toEqual([]);

    // The real subscriber comes back and gets what was written while it was away: nothing was consumed by a copy.
    await sub.cluster.start();
    await waitFor(async () => (await subscriberRows()) === 90, {timeoutMs: 60_000, intervalMs: 200, what: 'rows 81-90 at the real subscriber'});
    await waitFor(async () => (await slotOf())?.active === true, {timeoutMs: 30_000, intervalMs: 200, what: 'the slot in use again'});
    expect(await snapshotOf(sub, '')).toEqual(await snapshotOf(pub, ''));
  }, 480_000);

  it('a dump of the subscriber: the drill and a restore detach the restored subscription, production keeps its own', async () => {
    const repoDir = join(sub.dir, 'dump-repo');
    mkdirSync(repoDir);
    chownToPostgres(repoDir);
    const policyFile = writePolicy(sub.dir, 'subdump', {strategy: 'dump', postgres: {url: sub.cluster.url, bin_dir: pgBinDir()}, repository: {url: `file://${repoDir}`}});
    const dump = (args: string[]) => runPgbk([...args, '--policy', policyFile], {timeoutMs: 150_000});
    expect((await dump(['backup'])).exitCode).toBe(0);

    const drill = await dump(['drill', '--latest', '--json']);
    expect(drill.exitCode, drill.stderr).toBe(0);
    expect(JSON.parse(drill.stdout).checks).toContainEqual(expect.objectContaining({name: 'logical replication kept off', ok: true,
      detail: expect.stringMatching(/^subscription sub \(database pgbk_drill_\w+\) disabled and detached from the publisher's slot$/)}));
    expect(await sub.cluster.query(`select datname from pg_database where datname like 'pgbk_drill_%'`)).toEqual([]);

    await sub.cluster.psql('create database copy');
    const restore = await dump(['restore', '--to-db', sub.cluster.urlFor('copy')]);
    expect(restore.exitCode, restore.stderr).toBe(0);
    expect(restore.stdout).toContain('logical replication: subscriptions sub disabled and detached');
    // The production subscription is untouched and still running on the publisher's slot.
    expect(await sub.cluster.query(`select d.datname, s.subenabled, s.subslotname from pg_subscription s join pg_database d on d.oid = s.subdbid order by 1`))
      .toEqual([{datname: 'copy', subenabled: false, subslotname: null}, {datname: 'postgres', subenabled: true, subslotname: 'sub'}]);
    expect((await slotOf())?.active).toBe(true);
    await pub.cluster.psql(`insert into items values (91, 'after the dump drill')`);
    await waitFor(async () => (await subscriberRows()) === 91, {timeoutMs: 60_000, intervalMs: 200, what: 'row 91 at the real subscriber'});
    expect(await sub.cluster.query(`select count(*)::int as n from items`, [], {database: 'copy'})).toEqual([{n: 90}]);
  }, 300_000);
});


/** Count and digest of items on a setup's server, optionally filtered (same digest as snapshot()). */
async function snapshotOf(setup: ArchivingSetup, where: string): Promise<{rows: number; digest: string}> {
  const [row] = await setup.cluster.query<{rows: number; digest: string}>(
    `select count(*)::int as rows, coalesce(md5(string_agg(t::text, ',' order by t::text)), '') as digest from items t ${where}`);
  return row!;
}
