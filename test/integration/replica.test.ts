// The replica strategy on real PostgreSQL: a primary and a streaming standby on loopback (standby made with
// pg_basebackup -R, archive_mode = always, so both nodes push the same segments into one local repository).
// Backups are read from the standby; restores to a point compare rows exactly; `restore --standby` seeds a new
// standby from the repository that then streams; a manual failover (pg_promote) keeps the archive going on
// timeline 2, and PITR works to points before and after the promotion.

import {appendFileSync, existsSync, readdirSync, readFileSync} from 'node:fs';
import {join} from 'node:path';
import {afterAll, beforeAll, describe, expect, inject, it} from 'vitest';
import {restoreAndStart, setupArchiving, snapshot, switchAndWaitArchived, type ArchivingSetup, type RowSnapshot} from '../helpers/pitr.js';
import {freePort, makeTempDir, pgBinDir, runAsPostgres, startExisting, waitFor, type Cluster} from '../helpers/cluster.js';

const nowText = `to_char(clock_timestamp() at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`;

/** Rows and the moment they were read, on a given server. */
async function point(cluster: Cluster): Promise<{rows: RowSnapshot; time: string}> {
  const rows = (await snapshot(cluster.url)) as RowSnapshot;
  const [at] = await cluster.query<{time: string}>(`select ${nowText} as time`);
  await new Promise((resolve) => setTimeout(resolve, 50));
  return {rows, time: at!.time};
}

/** Until the standby has replayed everything the primary has written so far (bounded). */
async function waitReplayed(primary: Cluster, standby: Cluster): Promise<void> {
  const [row] = await primary.query<{lsn: string}>(`select pg_current_wal_lsn()::text as lsn`);
  await waitFor(async () => {
    const [replay] = await standby.query<{ok: boolean}>(`select pg_last_wal_replay_lsn() >= $1::pg_lsn as ok`, [row!.lsn]);
    return replay!.ok;
  }, {timeoutMs: 60_000, intervalMs: 100, what: `replay of ${row!.lsn} on port ${standby.port}`});
}

async function archiverFailures(cluster: Cluster): Promise<{failed: number; archived: number; last: string | null}> {
  const [row] = await cluster.query<{failed: string; archived: string; last: string | null}>(
    `select failed_count::text as failed, archived_count::text as archived, last_archived_wal as last from pg_stat_archiver`);
  return {failed: Number(row!.failed), archived: Number(row!.archived), last: row!.last};
}

function manifestOf(setup: ArchivingSetup, id: string): Record<string, unknown> {
  return JSON.parse(readFileSync(join(setup.repoDir!, 'backups', id, 'manifest.json'), 'utf8'));
}

describe('replica strategy: primary + streaming standby', () => {
  let setup: ArchivingSetup;
  let primary: Cluster;
  let standby: Cluster;
  let backupId: string;
  let afterBackup: {rows: RowSnapshot; time: string};

  beforeAll(async () => {
    const standbyPort = await freePort();
    setup = await setupArchiving('local', inject('s3'), {
      strategy: 'replica',
      conf: {max_wal_senders: 10, wal_keep_size: '256MB', cluster_name: 'primary'},
      policy: {replica: {standby_url: `postgresql://postgres@127.0.0.1:${standbyPort}/postgres`, max_lag: '5m'}},
    });
    primary = setup.cluster;
    await primary.psql(`create table items (id int primary key, label text not null, qty int not null)`);
    await primary.psql(`insert into items select g, 'before backup ' || g, g % 17 from generate_series(1, 2000) g`);

    // The standby, as an operator makes one: pg_basebackup -R from the primary (trust auth on loopback:
    // initdb --auth=trust gives `host replication all 127.0.0.1/32 trust`).
    const dataDir = join(makeTempDir('pgbk-standby-'), 'data');
    const made = await runAsPostgres(join(pgBinDir(), 'pg_basebackup'),
      ['-h', '127.0.0.1', '-p', String(primary.port), '-U', 'postgres', '-D', dataDir, '-R', '-X', 'stream', '--checkpoint', 'fast', '--no-sync']);
    expect(made.stderr).toBe('');
    expect(made.exitCode).toBe(0);
    // The same archive_command as the primary (copied with postgresql.conf), archiving on the standby too.
    appendFileSync(join(dataDir, 'postgresql.conf'), `archive_mode = always\ncluster_name = 'standby1'\n`);
    standby = await startExisting(dataDir, standbyPort);
    await waitFor(async () => (await primary.query(`select 1 from pg_stat_replication where application_name = 'standby1' and state = 'streaming'`)).length === 1,
      {timeoutMs: 60_000, what: 'standby1 streaming'});
    await waitReplayed(primary, standby);
  });

  afterAll(async () => {
    await standby?.destroy();
    await setup?.destroy();
  });

  it('takes the backup from the standby: manifest says standby, timeline 1', async () => {
    const backup = await setup.pgbk(['backup']);
    expect(backup.exitCode, backup.stderr).toBe(0);
    expect(backup.stderr).toBe('');
    backupId = backup.stdout.trim();
    const manifest = manifestOf(setup, backupId);
    expect(manifest.backupFrom).toBe('standby');
    expect(manifest.timeline).toBe(1);
    expect(manifest.strategy).toBe('replica');
    // The standby ran pg_basebackup's walsender, not the primary.
    expect(standby.log()).not.toMatch(/FATAL/);

    afterBackup = await point(primary);
    await primary.psql(`update items set qty = qty + 100 where id % 4 = 0`);
    await primary.psql(`insert into items select g, 'after A', 1 from generate_series(5000, 5499) g`);
    await switchAndWaitArchived(primary);

    const status = await setup.pgbk(['status', '--json']);
    const doc = JSON.parse(status.stdout);
    const policy = Array.isArray(doc) ? doc[0] : (doc.policies?.[0] ?? doc);
    const standbys = policy.replication.standbys as Array<{applicationName: string; state: string; lagBytes: number | null}>;
    const one = standbys.find((row) => row.applicationName === 'standby1');
    expect(one?.state).toBe('streaming');
    expect(typeof one?.lagBytes).toBe('number');
    expect(policy.backupStandby.probe.reachable).toBe(true);
    expect(policy.backupStandby.probe.inRecovery).toBe(true);
  });

  it('restores the standby backup to a point in time, rows exactly', async () => {
    const restored = await restoreAndStart(setup, ['--target-time', afterBackup.time, '--archive-mode', 'off']);
    try {
      expect(restored.result.stdout).toContain(`restored backup ${backupId}`);
      expect(await snapshot(restored.url)).toEqual(afterBackup.rows);
    } finally {
      await restored.stop();
    }
  });

  it('restore --standby: refuses a target, builds a standby that catches up by archive and streaming', async () => {
    const dataDir = join(makeTempDir('pgbk-standby2-'), 'data');
    const refused = await setup.pgbk(['restore', '--standby', '--to', dataDir, '--target-time', afterBackup.time]);
    expect(refused.exitCode).toBe(2);
    expect(refused.stderr).toMatch(/--standby takes no recovery target/);
    expect(existsSync(dataDir)).toBe(false);

    const result = await setup.pgbk(['restore', '--standby', '--to', dataDir]);
    expect(result.exitCode).toBe(0);
    expect(result.stdout).toContain('standby of postgresql://postgres@127.0.0.1');
    expect(existsSync(join(dataDir, 'standby.signal'))).toBe(true);
    expect(existsSync(join(dataDir, 'recovery.signal'))).toBe(false);
    const auto = readFileSync(join(dataDir, 'postgresql.auto.conf'), 'utf8');
    const added = auto.slice(auto.lastIndexOf('# Added by pgbk restore'));
    expect(added).toContain(`primary_conninfo = 'postgresql://postgres@127.0.0.1:${primary.port}/postgres'`);
    expect(added).toContain(`recovery_target_timeline = 'latest'`);
    expect(added).toMatch(/restore_command = '.*archive-get --policy/);
    expect(added).not.toMatch(/recovery_target_(time|lsn|xid|name|action) =/);

    const second = await startExisting(dataDir, undefined, {serverOptions: `-c cluster_name=standby2`});
    try {
      await primary.psql(`insert into items select g, 'seen by standby2', 2 from generate_series(7000, 7099) g`);
      await waitFor(async () => (await primary.query(`select 1 from pg_stat_replication where application_name = 'standby2' and state = 'streaming'`)).length === 1,
        {timeoutMs: 90_000, what: 'standby2 streaming from the primary'});
      await waitReplayed(primary, second);
      expect(await snapshot(second.url)).toEqual(await snapshot(primary.url));
      const [row] = await second.query<{r: boolean}>(`select pg_is_in_recovery() as r`);
      expect(row!.r).toBe(true);
      expect((await archiverFailures(second)).failed).toBe(0);
    } finally {
      await second.destroy();
    }
  });

  it('archive_mode = always on the standby: both nodes push the same segments, no failure on either', async () => {
    let last = '';
    for (let round = 0; round < 2; round++) {
      await primary.psql(`insert into items select g, 'round ${round}', 3 from generate_series(${8000 + round * 100}, ${8099 + round * 100}) g`);
      last = await switchAndWaitArchived(primary);
    }
    await waitFor(async () => ((await archiverFailures(standby)).last ?? '') >= last, {timeoutMs: 60_000, intervalMs: 200, what: `standby archiving ${last}`});
    const onPrimary = await archiverFailures(primary);
    const onStandby = await archiverFailures(standby);
    expect(onPrimary.failed).toBe(0);
    expect(onStandby.failed).toBe(0);
    expect(onStandby.archived).toBeGreaterThan(0);
    // Each segment is stored once, whoever pushed it first.
    const folder = join(setup.repoDir!, 'wal', '00000001', last.slice(0, 16));
    expect(readdirSync(folder).filter((name) => name.startsWith(last)).length).toBe(1);
  });

  it('manual failover: promoted standby archives timeline 2; PITR before and after the promotion', async () => {
    await primary.psql(`update items set label = label || ' B' where id % 9 = 0`);
    const before = await point(primary);
    await primary.psql(`delete from items where id % 5 = 0`);
    await switchAndWaitArchived(primary);
    await waitReplayed(primary, standby);
    await primary.stop('fast');

    await standby.query(`select pg_promote(true, 60)`);
    await standby.waitUntilPromoted(60_000);
    const [tli] = await standby.query<{tli: string}>(`select substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8) as tli`);
    expect(tli!.tli).toBe('00000002');
    await standby.psql(`insert into items select g, 'timeline 2', 4 from generate_series(9000, 9199) g`);
    const after = await point(standby);
    await standby.psql(`update items set qty = -1`);
    await switchAndWaitArchived(standby);
    expect(readdirSync(join(setup.repoDir!, 'wal', '00000002')).some((name) => name.startsWith('00000002.history-'))).toBe(true);
    expect((await archiverFailures(standby)).failed).toBe(0);

    const restoredBefore = await restoreAndStart(setup, ['--target-time', before.time, '--archive-mode', 'off']);
    try {
      expect(await snapshot(restoredBefore.url)).toEqual(before.rows);
    } finally {
      await restoredBefore.stop();
    }
    const restoredAfter = await restoreAndStart(setup, ['--target-time', after.time, '--target-timeline', '2', '--archive-mode', 'off']);
    try {
      expect(restoredAfter.result.stdout).toContain(`restored backup ${backupId}`);
      expect(restoredAfter.result.stdout).toMatch(/promoted on timeline 3/);
      expect(await snapshot(restoredAfter.url)).toEqual(after.rows);
    } finally {
      await restoredAfter.stop();
    }

    // The archive is whole across the timeline switch, and the promoted node (old primary gone) is backed up as
    // the primary it now is.
    const verified = await setup.pgbk(['verify']);
    expect(verified.exitCode, `${verified.stdout}${verified.stderr}`).toBe(0);
    const next = await setup.pgbk(['backup']);
    expect(next.exitCode, next.stderr).toBe(0);
    expect(next.stderr).toMatch(/\(replica\.standby_url\) is not in recovery: it was promoted; taking the backup from it as a primary/);
    const manifest = manifestOf(setup, next.stdout.trim());
    expect(manifest.backupFrom).toBe('primary');
    expect(manifest.timeline).toBe(2);
  });
});
