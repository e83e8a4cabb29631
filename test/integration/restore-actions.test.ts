// restore --target-action pause|shutdown, --target immediate, --target-exclusive, --target-time with a zone name,
// --target-xid beyond the archive, and --start on a free port — against a source whose postgresql.conf logs in
// German (lc_messages, a locale built with localedef under LOCPATH): pgbk must read the restored server's state
// from postmaster.pid, pg_control and SQL (or a log it made speak C), so restore --start and drill still work.

import {appendFileSync, existsSync, readFileSync, writeFileSync} from 'node:fs';
import {join} from 'node:path';
import {execa} from 'execa';
import pg from 'pg';
import {afterAll, beforeAll, describe, expect, inject, it} from 'vitest';
import {chownToPostgres, makeTempDir, pgBinDir, runAsPostgres, startExisting} from '../helpers/cluster.js';
import {setupArchiving, snapshot, switchAndWaitArchived, type ArchivingSetup, type RowSnapshot} from '../helpers/pitr.js';

/** A German locale under a private LOCPATH (no system change), or undefined when localedef cannot build one. */
async function germanLocale(): Promise<string | undefined> {
  const dir = makeTempDir('pgbk-locale-');
  const built = await execa('localedef', ['-i', 'de_DE', '-f', 'UTF-8', join(dir, 'de_DE.UTF-8')], {reject: false});
  if (!existsSync(join(dir, 'de_DE.UTF-8'))) return undefined;
  void built;
  chownToPostgres(dir);
  return dir;
}

async function query<R>(url: string, sql: string): Promise<R> {
  const client = new pg.Client({connectionString: url});
  await client.connect();
  try {
    return (await client.query(sql)).rows[0] as R;
  } finally {
    await client.end();
  }
}

describe('restore: target actions, immediate, zone names, free port (source logging in another language)', () => {
  let setup: ArchivingSetup;
  let locpath: string | undefined;
  let env: Record<string, string>;
  let atBackup: RowSnapshot;
  let atTarget: RowSnapshot;
  let targetLocal: string;
  let targetXid: string;
  const stops: string[] = [];

  beforeAll(async () => {
    locpath = await germanLocale();
    env = locpath ? {LOCPATH: locpath} : {};
    setup = await setupArchiving('s3', inject('s3'));
    // In the backup's postgresql.conf: every restored server would log in German, or (no locale) to a collector
    // file pgbk does not read.
    setup.cluster.appendConf(locpath ? {lc_messages: 'de_DE.UTF-8'} : {logging_collector: 'on'});
    await setup.cluster.query('create table items (id int primary key, note text)');
    await setup.cluster.query(`insert into items select g, 'before the backup' from generate_series(1, 50) g`);
    atBackup = (await snapshot(setup.cluster.url)) as RowSnapshot;
    const backup = await setup.pgbk(['backup'], {env});
    expect(backup.exitCode, backup.stderr).toBe(0);
    const [row] = await setup.cluster.query<{xid: string}>(`
      with ins as (insert into items select g, 'after' from generate_series(51, 80) g returning 1) select txid_current()::text as xid from ins limit 1`);
    targetXid = row!.xid;
    atTarget = (await snapshot(setup.cluster.url)) as RowSnapshot;
    const [at] = await setup.cluster.query<{local: string}>(`
      select to_char(clock_timestamp() at time zone 'Asia/Kolkata', 'YYYY-MM-DD HH24:MI:SS.US') || ' Asia/Kolkata' as local`);
    targetLocal = at!.local;
    await new Promise((resolve) => setTimeout(resolve, 20));
    await setup.cluster.query(`insert into items select g, 'too late' from generate_series(81, 200) g`);
    await setup.cluster.query(`delete from items where id <= 10`);
    await switchAndWaitArchived(setup.cluster);
  }, 180_000);

  afterAll(async () => {
    for (const dataDir of stops) {
      await runAsPostgres(join(pgBinDir(), 'pg_ctl'), ['-D', dataDir, '-m', 'immediate', '-w', 'stop'], {timeoutMs: 30_000});
    }
    await setup?.destroy();
  });

  const restoreDir = () => join(makeTempDir('pgbk-ra-'), 'data');
  const portOf = (stdout: string) => Number(/^port: (\d+) \(free on 127\.0\.0\.1/m.exec(stdout)?.[1]);

  it('pauses at a zone-named target time, in recovery with exactly the target\'s rows, on a free port; resume promotes', async () => {
    const dataDir = restoreDir();
    stops.push(dataDir);
    const result = await setup.pgbk(['restore', '--to', dataDir, '--target-time', targetLocal, '--target-action', 'pause', '--start'], {env});
    expect(result.exitCode, result.stderr + result.stdout).toBe(0);
    const port = portOf(result.stdout);
    expect(port).toBeGreaterThan(0);
    expect(port).not.toBe(5432);
    expect(result.stdout).toMatch(/paused at the target, in recovery/);
    expect(result.stdout).toMatch(/point reached: recovery stopping before commit of transaction \d+/);
    const url = `postgresql://postgres@127.0.0.1:${port}/postgres`;
    const state = await query<{r: boolean; s: string}>(url, 'select pg_is_in_recovery() as r, pg_get_wal_replay_pause_state() as s');
    expect(state).toEqual({r: true, s: 'paused'});
    expect(await snapshot(url)).toEqual(atTarget);
    if (locpath) expect(readFileSync(join(dataDir, 'postgresql.conf'), 'utf8')).toMatch(/lc_messages = 'de_DE\.UTF-8'/);
    await query(url, 'select pg_wal_replay_resume()');
    const deadline = Date.now() + 60_000;
    while ((await query<{r: boolean}>(url, 'select pg_is_in_recovery() as r')).r && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 200));
    expect((await query<{r: boolean}>(url, 'select pg_is_in_recovery() as r')).r).toBe(false);
    expect(await snapshot(url)).toEqual(atTarget);
  });

  it('shuts down at an exclusive xid target, leaving the server stopped; promoted later it holds the rows before that transaction', async () => {
    const dataDir = restoreDir();
    const result = await setup.pgbk(['restore', '--to', dataDir, '--target-xid', targetXid, '--target-exclusive', '--target-action', 'shutdown', '--start'], {env});
    expect(result.exitCode, result.stderr + result.stdout).toBe(0);
    expect(result.stdout).toMatch(/server shut down at the target/);
    expect(existsSync(join(dataDir, 'postmaster.pid'))).toBe(false);
    expect(existsSync(join(dataDir, 'recovery.signal'))).toBe(true);
    const control = await runAsPostgres(join(pgBinDir(), 'pg_controldata'), ['-D', dataDir], {env: {LC_ALL: 'C'}});
    expect(control.stdout).toMatch(/Database cluster state:\s+shut down in recovery/);
    const conf = readFileSync(join(dataDir, 'postgresql.auto.conf'), 'utf8');
    expect(conf).toMatch(/recovery_target_inclusive = 'off'/);
    appendFileSync(join(dataDir, 'postgresql.auto.conf'), "recovery_target_action = 'promote'\n");
    // Started by the harness, without the private LOCPATH: back to the C locale's messages.
    const confFile = join(dataDir, 'postgresql.conf');
    writeFileSync(confFile, readFileSync(confFile, 'utf8').replace(/^lc_messages = .*$/gm, ''));
    const server = await startExisting(dataDir);
    try {
      await server.waitUntilPromoted(120_000);
      expect(await snapshot(server.url)).toEqual(atBackup);
    } finally {
      await server.destroy();
    }
  });

  it('--target immediate stops as soon as the backup is consistent', async () => {
    const dataDir = restoreDir();
    stops.push(dataDir);
    const result = await setup.pgbk(['restore', '--to', dataDir, '--target', 'immediate', '--start'], {env});
    expect(result.exitCode, result.stderr + result.stdout).toBe(0);
    expect(readFileSync(join(dataDir, 'postgresql.auto.conf'), 'utf8')).toMatch(/recovery_target = 'immediate'/);
    expect(result.stdout).toMatch(/promoted on timeline 2/);
    expect(await snapshot(`postgresql://postgres@127.0.0.1:${portOf(result.stdout)}/postgres`)).toEqual(atBackup);
  });

  it('refuses a --target-xid the server has not assigned yet, and a local time the zone skipped, before writing anything', async () => {
    const [row] = await setup.cluster.query<{next: string}>('select txid_snapshot_xmax(txid_current_snapshot())::text as next');
    const dataDir = restoreDir();
    const beyond = await setup.pgbk(['restore', '--to', dataDir, '--target-xid', String(BigInt(row!.next) + 1000n)], {env});
    expect(beyond.exitCode).toBe(2);
    expect(beyond.stderr).toMatch(/is beyond the archive: .* has not assigned that transaction id yet/);
    expect(existsSync(dataDir)).toBe(false);
    const gap = await setup.pgbk(['restore', '--to', dataDir, '--target-time', '2026-03-29 02:30 Europe/Berlin'], {env});
    expect(gap.exitCode).toBe(2);
    expect(gap.stderr).toMatch(/does not exist: in Europe\/Berlin the clocks jumped from 2026-03-29 02:00:00\+01:00 to 2026-03-29 03:00:00\+02:00/);
    expect(existsSync(dataDir)).toBe(false);
  });

  it('drill proves the target although the backup\'s postgresql.conf sets another lc_messages', async () => {
    const drill = await setup.pgbk(['drill', '--json'], {env});
    expect(drill.exitCode, drill.stderr + drill.stdout).toBe(0);
    const report = JSON.parse(drill.stdout);
    expect(report.ok).toBe(true);
    const proof = report.checks.find((check: {name: string}) => check.name === 'recovery reached the target');
    expect(proof.ok, proof.detail).toBe(true);
  });
});
