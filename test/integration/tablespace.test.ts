// Issue 11 item 4, on real PostgreSQL and radosgw: a cluster with a user tablespace is backed up over the
// replication protocol (one tar per tablespace, each in pieces of at most backup.max_object_size), restored with
// --tablespace-map into a new directory with its rows, the restored pg_tblspc symlink pointing there; a map target
// that is not empty is refused (exit 2) with nothing written; a drill maps it into its scratch directory.

import {existsSync, readdirSync, readlinkSync, rmSync, statSync, writeFileSync} from 'node:fs';
import {join} from 'node:path';
import {afterAll, beforeAll, describe, expect, inject, it} from 'vitest';
import {restoreAndStart, setupArchiving, snapshot, switchAndWaitArchived, type ArchivingSetup, type RowSnapshot} from '../helpers/pitr.js';
import {spawnSync} from 'node:child_process';
import {chownToPostgres, isRoot, makeTempDir, postgresUser, startExisting, waitFor} from '../helpers/cluster.js';
import {baseEnv, pgbkBin} from '../helpers/cli.js';
import {loadPolicy} from '../../src/policy/load.js';
import {openRepository} from '../../src/storage/open.js';
import type {Repository} from '../../src/storage/repository.js';
import {readManifest, type BackupManifest} from '../../src/backup/manifest.js';

const CAP = 1024 * 1024;

describe('a cluster with a user tablespace (radosgw)', () => {
  let setup: ArchivingSetup;
  let repo: Repository;
  let manifest: BackupManifest;
  let location: string;
  let oid: string;
  let point: {fast: RowSnapshot; items: RowSnapshot; lsn: string};

  beforeAll(async () => {
    setup = await setupArchiving('s3', inject('s3'), {policy: {backup: {max_object_size: '1MiB'}}});
    repo = await openRepository((await loadPolicy({policy: setup.policyFile, env: process.env, cwd: process.cwd()})).repository);
    location = makeTempDir('pgbk-tablespace-');
    chownToPostgres(location);
    await setup.cluster.psql(`create tablespace fast location '${location}'`);
    // Rows that do not compress, so the tablespace's tar spans several 1 MiB objects; one table stays in pg_default.
    await setup.cluster.psql(`create table fast_items (id int primary key, label text not null) tablespace fast`);
    await setup.cluster.psql(`insert into fast_items select g, md5(random()::text) || md5(random()::text) from generate_series(1, 30000) g`);
    await setup.cluster.psql(`create table items (id int primary key, label text not null)`);
    await setup.cluster.psql(`insert into items select g, 'row ' || g from generate_series(1, 1000) g`);
    const [space] = await setup.cluster.query<{oid: string}>(`select oid::text as oid from pg_tablespace where spcname = 'fast'`);
    oid = space!.oid;
    const backup = await setup.pgbk(['backup']);
    expect(backup.exitCode, backup.stderr).toBe(0);
    manifest = await readManifest(repo, backup.stdout.trim());
    await setup.cluster.psql(`insert into fast_items select g, 'after the backup' from generate_series(40000, 40999) g`);
    const [at] = await setup.cluster.query<{lsn: string}>(`select pg_current_wal_lsn()::text as lsn`);
    point = {fast: (await snapshot(setup.cluster.url, 'fast_items')) as RowSnapshot, items: (await snapshot(setup.cluster.url)) as RowSnapshot, lsn: at!.lsn};
    // Changed after the point: only a restore brings the rows back.
    await setup.cluster.psql(`delete from fast_items where id % 2 = 0`);
    await setup.cluster.psql(`update items set label = 'changed'`);
    await switchAndWaitArchived(setup.cluster);
  }, 120_000);

  afterAll(async () => {
    await repo?.close();
    await setup?.destroy();
  });

  it('stores one tar per tablespace, the tablespace in pieces within the cap, and names the tablespace', async () => {
    expect(manifest.tablespaces).toEqual([{oid, name: 'fast', location}]);
    const tars = [...new Set(manifest.objects.map((object) => object.tar))].sort();
    expect(tars).toEqual([oid, 'base'].sort());
    const pieces = manifest.objects.filter((object) => object.tar === oid);
    expect(pieces.length).toBeGreaterThanOrEqual(2);
    expect(pieces.map((piece) => piece.part)).toEqual(pieces.map((_piece, index) => index + 1));
    expect(pieces[0]!.name).toMatch(new RegExp(`^${oid}\\.tar\\.(zst|gz)$`));
    for (const object of manifest.objects) {
      expect(object.sizeBytes).toBeLessThanOrEqual(CAP);
      expect((await repo.stat(object.key))?.sizeBytes).toBe(object.sizeBytes);
    }
    const verify = await setup.pgbk(['verify', '--backup', manifest.id]);
    expect(verify.exitCode, verify.stderr + verify.stdout).toBe(0);
    // check reports the tablespace and where a restore puts it
    const check = await setup.pgbk(['check', '--json']);
    const line = (JSON.parse(check.stdout).policies[0].checks as Array<{name: string; status: string; detail: string}>).find((result) => result.name === 'tablespaces');
    expect(line, check.stdout).toMatchObject({status: 'ok'});
    expect(line!.detail).toContain(`fast (oid ${oid}) at ${location}`);
  });

  it('refuses a --tablespace-map target that is not empty (exit 2), writing nothing', async () => {
    const busy = makeTempDir('pgbk-tablespace-busy-');
    writeFileSync(join(busy, 'keep.txt'), 'mine');
    chownToPostgres(join(busy, 'keep.txt'));
    const dataDir = join(makeTempDir('pgbk-tablespace-refused-'), 'data');
    const result = await setup.pgbk(['restore', '--to', dataDir, '--target-lsn', point.lsn, '--tablespace-map', `fast=${busy}`]);
    expect(result.exitCode, result.stderr).toBe(2);
    expect(result.stderr).toContain(`tablespace fast cannot be restored into ${busy}: it is not empty`);
    expect(existsSync(dataDir)).toBe(false);
    expect(readdirSync(busy)).toEqual(['keep.txt']);
    const dryRun = await setup.pgbk(['restore', '--to', dataDir, '--target-lsn', point.lsn, '--tablespace-map', `fast=${join(busy, 'new')}`, '--dry-run']);
    expect(dryRun.exitCode, dryRun.stderr).toBe(0);
    expect(dryRun.stdout).toContain(`tablespace fast (oid ${oid}): into ${join(busy, 'new')}`);
    expect(readdirSync(busy)).toEqual(['keep.txt']);
    const unknown = await setup.pgbk(['restore', '--to', dataDir, '--tablespace-map', `nosuch=${busy}`]);
    expect(unknown.exitCode).toBe(2);
    expect(unknown.stderr).toContain('--tablespace-map nosuch: backup');
  });

  it('restores with --tablespace-map into a new directory: rows compared, pg_tblspc points there', async () => {
    const mapped = join(makeTempDir('pgbk-tablespace-mapped-'), 'fast');
    const restored = await restoreAndStart(setup, ['--target-lsn', point.lsn], ['--tablespace-map', `${oid}=${mapped}`]);
    try {
      expect(readlinkSync(join(restored.dataDir, 'pg_tblspc', oid))).toBe(mapped);
      expect(readdirSync(mapped).some((entry) => /^PG_\d+_\d+$/.test(entry))).toBe(true);
      expect(await snapshot(restored.url, 'fast_items')).toEqual(point.fast);
      expect(await snapshot(restored.url)).toEqual(point.items);
    } finally {
      await restored.stop();
    }
  });

  it.runIf(isRoot)('as root: the tablespace directory and its files are given to the data directory\'s owner, and the server starts', async () => {
    const base = makeTempDir('pgbk-tablespace-root-');
    const dataDir = join(base, 'data');
    const mapped = join(base, 'deeper', 'fast');
    const result = spawnSync(process.execPath, [pgbkBin, 'restore', '--policy', setup.policyFile, '--to', dataDir, '--target-lsn', point.lsn, '--tablespace-map', `fast=${mapped}`],
      {env: baseEnv(), encoding: 'utf8', timeout: 120_000});
    expect(result.status, result.stderr).toBe(0);
    const {uid} = postgresUser();
    expect(statSync(mapped).uid).toBe(uid);
    expect(statSync(mapped).mode & 0o777).toBe(0o700);
    const version = readdirSync(mapped).find((entry) => entry.startsWith('PG_'))!;
    expect(statSync(join(mapped, version)).uid).toBe(uid);
    const restored = await startExisting(dataDir);
    try {
      await waitFor(async () => (await restored.query<{r: boolean}>('select pg_is_in_recovery() as r'))[0]!.r === false || undefined, {timeoutMs: 60_000});
      expect(await snapshot(restored.url, 'fast_items')).toEqual(point.fast);
    } finally {
      await restored.destroy();
    }
  });

  it('a backup broken off on the server leaves nothing behind, of any tablespace', async () => {
    const keys = async (): Promise<string[]> => {
      const found: string[] = [];
      for await (const object of repo.list('backups/')) found.push(object.key);
      return found.sort();
    };
    const before = await keys();
    // With archiving failing, BASE_BACKUP waits at its end (every tar sent and stored) for the last segment.
    await setup.cluster.psql(`alter system set archive_command = 'false'`);
    await setup.cluster.psql(`select pg_reload_conf()`);
    try {
      const running = setup.pgbk(['backup']);
      let pid: number | undefined;
      for (let tries = 0; tries < 300 && pid === undefined; tries++) {
        const [row] = await setup.cluster.query<{pid: number}>(`select pid from pg_stat_activity where backend_type = 'walsender' and wait_event = 'BackupWaitWalArchive'`);
        pid = row?.pid;
        if (pid === undefined) await new Promise((resolve) => setTimeout(resolve, 100));
      }
      expect(pid, 'the backup never waited for WAL archiving').toBeDefined();
      await setup.cluster.query(`select pg_terminate_backend($1)`, [pid]);
      const result = await running;
      expect(result.exitCode).toBe(1);
      expect(result.stderr).toContain('BASE_BACKUP failed');
      expect(result.stderr).not.toMatch(/\n\s+at /); // a clear message, no stack trace
      expect(await keys()).toEqual(before);
    } finally {
      await setup.cluster.psql(`alter system reset archive_command`);
      await setup.cluster.psql(`select pg_reload_conf()`);
    }
  });

  it('drills map the tablespace into their scratch directory', async () => {
    const drill = await setup.pgbk(['drill', '--latest', '--json', '--keep']);
    expect(drill.exitCode, drill.stderr).toBe(0);
    const report = JSON.parse(drill.stdout) as {keptDir: string; checks: Array<{name: string; ok: boolean}>};
    try {
      expect(report.checks).toContainEqual(expect.objectContaining({name: 'recovery reached the target', ok: true}));
      expect(readlinkSync(join(report.keptDir, 'data', 'pg_tblspc', oid))).toBe(join(report.keptDir, 'tablespaces', oid));
    } finally {
      rmSync(report.keptDir, {recursive: true, force: true});
    }
  });
});
