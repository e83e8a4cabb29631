// Faults during backup, expire and restore on an S3 repository behind the fault proxy: 5xx and resets on the
// upload, kill -9 of pgbk while pg_basebackup streams and between the data and the manifest, kill -9 of expire
// mid deletion and of restore mid unpack, corrupt and failing answers while restoring. After each fault the
// invariants hold: what PostgreSQL archived comes back, nothing half-written is listed, verify is clean (or names
// exactly the damage), and a restore brings back exactly the committed rows.
import {readdirSync} from 'node:fs';
import {join} from 'node:path';
import {afterAll, afterEach, beforeAll, describe, expect, inject, it} from 'vitest';
import {makeTempDir, waitFor} from '../helpers/cluster.js';
import {livePostmasterPid} from '../helpers/cleanup.js';
import {checkInvariants, firstJson, restoreLatest} from './invariants.js';
import {FaultRig, hitWithin, killHard, pgbkProcesses, processesMatching, rowsOf} from './rig.js';

const s3 = inject('s3');

describe('backup, expire and restore under faults (real PostgreSQL, S3 behind a fault proxy)', () => {
  let rig: FaultRig;
  /** Backups a test killed before their manifest: folders the invariants accept without one. */
  const orphans: string[] = [];

  beforeAll(async () => {
    rig = await FaultRig.create('s3', s3, {label: 'fault-backup'});
    await rig.commitAndArchive('seed', 2000);
  });

  afterAll(async () => {
    await rig?.destroy();
  });

  // A failed test must not leave its rules, held requests or pgbk processes behind for the next one.
  afterEach(async () => {
    rig?.proxy?.clear();
    rig?.proxy?.release();
    const leftovers = rig ? pgbkProcesses(rig.dir).filter((process) => ['backup', 'expire', 'restore'].some((command) => process.argv.includes(command))) : [];
    for (const process of leftovers) await killHard(process.pid);
  });

  function pgBasebackups(): Array<{pid: number; cmdline: string}> {
    return processesMatching('pg_basebackup').filter((process) => process.cmdline.includes(`:${rig.cluster.port}/`));
  }

  function backupFolders(keys: string[]): string[] {
    return [...new Set(keys.filter((key) => key.startsWith('backups/')).map((key) => key.split('/')[1]!))];
  }

  const tarPut = {method: 'PUT', key: /^backups\/[^/]+\/base\.tar\.(?:gz|zst)$/} as const;
  const manifestPut = {method: 'PUT', key: /^backups\/[^/]+\/manifest\.json$/} as const;

  it('a 503 on the data upload, a reset on the manifest PUT: the backup succeeds and restores exactly', async () => {
    const proxy = rig.proxy!;
    const part = proxy.inject({...tarPut, fault: '503'});
    const manifest = proxy.inject({...manifestPut, fault: 'reset-request'});
    const backup = await rig.pgbk(['backup']);
    expect(backup.exitCode, backup.stderr).toBe(0);
    expect([part.fired, manifest.fired]).toEqual([1, 1]);
    proxy.clear();
    await rig.commit('after first backup');
    await checkInvariants(rig, {pitr: true});
  });

  it('an outage during the upload: the backup fails, leaves nothing listed or stored, no pg_basebackup behind', async () => {
    const proxy = rig.proxy!;
    const listedBefore = await rig.listedBackups();
    const outage = proxy.inject({...tarPut, fault: '500', times: Infinity});
    const backup = await rig.pgbk(['backup']);
    proxy.clear();
    expect(backup.exitCode).toBe(1);
    expect(backup.stderr).toMatch(/cannot write backups\/\d{8}T\d{6}Z[^/]*\/base\.tar/);
    expect(outage.fired).toBeGreaterThan(0);
    expect(await rig.listedBackups()).toEqual(listedBefore);
    await waitFor(() => pgBasebackups().length === 0, {timeoutMs: 10_000, what: 'pg_basebackup to end'});
    await checkInvariants(rig);
  });

  it('kill -9 while pg_basebackup streams: no pg_basebackup left, nothing listed, the next backup works', async () => {
    const proxy = rig.proxy!;
    const listedBefore = await rig.listedBackups();
    const foldersBefore = backupFolders(await rig.rawKeys());
    // ~40 MB of incompressible rows, for this test only: the upload spans several 8 MiB parts, more than the
    // upload buffers hold, so while the first part is held pg_basebackup is still streaming (blocked on its pipe).
    await rig.cluster.psql(`create extension if not exists pgcrypto`);
    await rig.cluster.psql(`create table filler (id int primary key, noise bytea not null)`);
    await rig.cluster.psql(`alter table filler alter column noise set storage external`);
    await rig.cluster.psql(`insert into filler select g, gen_random_bytes(1024) || gen_random_bytes(1024) || gen_random_bytes(1024) || gen_random_bytes(1024) from generate_series(1, 10000) g`);
    // Hold the first part of the upload: the upload buffers fill up and pg_basebackup blocks on its pipe.
    const stall = proxy.inject({...tarPut, fault: 'stall-request'});
    const backup = rig.spawn(['backup']);
    await hitWithin(stall.hit, 'the first part of base.tar');
    expect(pgBasebackups().length, 'pg_basebackup runs while the upload is held').toBeGreaterThan(0);
    await killHard(backup.pid);
    proxy.release();
    proxy.clear();
    await backup.result;
    expect(await rig.listedBackups()).toEqual(listedBefore);
    // A killed pgbk must not leave pg_basebackup running (issue 9 item 4); it dies on its broken pipe at the latest.
    await waitFor(() => pgBasebackups().length === 0, {timeoutMs: 15_000, what: 'pg_basebackup to end after pgbk was killed'});
    const [active] = await rig.cluster.query<{n: number}>(`select count(*)::int as n from pg_stat_activity where backend_type = 'walsender'`);
    expect(active!.n).toBe(0);
    await rig.cluster.psql(`drop table filler`);
    // Whatever the killed backup left in its folder (an owner marker, say) is an orphan now, never listed.
    orphans.push(...backupFolders(await rig.rawKeys()).filter((id) => !foldersBefore.includes(id)));
    // The killed backup's folder holds at most an incomplete multipart upload: nothing visible.
    const again = await rig.pgbk(['backup']);
    expect(again.exitCode, again.stderr).toBe(0);
    await rig.commit('after killed streaming');
    await checkInvariants(rig, {orphanBackups: orphans, allowProblems: orphans.map((id) => new RegExp(id))});
  });

  it('kill -9 after the data upload, before the manifest: not listed; verify names at most that folder', async () => {
    const proxy = rig.proxy!;
    const listedBefore = await rig.listedBackups();
    const stall = proxy.inject({...manifestPut, fault: 'stall-request', afterBytes: -1});
    const backup = rig.spawn(['backup']);
    const held = await hitWithin(stall.hit, 'the manifest PUT', 120_000);
    await killHard(backup.pid);
    proxy.release();
    proxy.clear();
    await backup.result;
    const id = held.key.split('/')[1]!;
    orphans.push(id);
    expect(await rig.listedBackups()).toEqual(listedBefore);
    expect((await rig.rawKeys()).some((key) => /^backups\/[^/]+\/base\.tar\.(?:gz|zst)$/.test(key) && key.startsWith(`backups/${id}/`))).toBe(true);
    await rig.commit('after killed manifest');
    // verify may report the folder as abandoned (issue 9 item 4); nothing else.
    await checkInvariants(rig, {orphanBackups: orphans, allowProblems: orphans.map((orphan) => new RegExp(orphan))});
  });

  describe('restore', () => {
    it('kill -9 mid unpack: the half-written directory is refused without --force; a fresh restore is exact', async () => {
      const proxy = rig.proxy!;
      const stall = proxy.inject({method: 'GET', key: /^backups\/[^/]+\/base\.tar\.(?:gz|zst)$/, fault: 'stall-response', afterBytes: 6 * 1024 * 1024});
      const dir = join(makeTempDir('pgbk-fault-unpack-'), 'data');
      const restore = rig.spawn(['restore', '--to', dir, '--latest']);
      await hitWithin(stall.hit, 'the base.tar.gz download');
      await waitFor(() => {
        try {
          return readdirSync(dir).length > 0;
        } catch {
          return false;
        }
      }, {what: 'the unpack to begin'});
      await killHard(restore.pid);
      proxy.release();
      proxy.clear();
      await restore.result;
      const before = readdirSync(dir).sort();
      const again = await rig.pgbk(['restore', '--to', dir, '--latest']);
      expect(again.exitCode, again.stderr).toBe(2);
      expect(again.stderr).toContain(dir);
      expect(readdirSync(dir).sort()).toEqual(before);
      await rig.commit('after killed restore');
      await checkInvariants(rig, {orphanBackups: orphans, allowProblems: orphans.map((id) => new RegExp(id)), pitr: true});
    });

    it('a corrupt base.tar.gz answer (every time): restore fails, starts nothing', async () => {
      const proxy = rig.proxy!;
      proxy.inject({method: 'GET', key: /^backups\/[^/]+\/base\.tar\.(?:gz|zst)$/, fault: 'corrupt', times: Infinity});
      try {
        const newest = (await rig.listedBackups()).at(-1)!;
        const restored = await restoreLatest(rig);
        const running = livePostmasterPid(restored.dataDir);
        await restored.stop();
        expect(restored.result.exitCode, restored.result.stdout).toBe(1);
        expect(running, 'a server was started from a corrupt backup').toBeUndefined();
        // Which backup could not be restored, and that its stored object is damaged (not just that tar failed).
        expect(restored.result.stderr).toContain(newest);
        expect(restored.result.stderr).toMatch(/backup object backups\/[^ ]+\/base\.tar\.(?:gz|zst) (?:is damaged|is not valid|does not match)|checksum mismatch/);
      } finally {
        proxy.clear();
      }
    });

    it('a truncated base backup download (once): the restore either retries to an exact result or fails; never a wrong server', async () => {
      const proxy = rig.proxy!;
      const cut = proxy.inject({method: 'GET', key: /^backups\/[^/]+\/base\.tar\.(?:gz|zst)$/, fault: 'truncate'});
      const restored = await restoreLatest(rig);
      try {
        expect(cut.fired).toBe(1);
        if (restored.result.exitCode === 0) {
          expect(await rowsOf(restored.url)).toEqual(rig.expectedRows);
        } else {
          expect(restored.result.stderr).toMatch(/base\.tar/);
        }
      } finally {
        await restored.stop();
      }
    });

    it('a WAL segment that cannot be fetched (503 every time): restore --start fails instead of stopping short', async () => {
      const proxy = rig.proxy!;
      const listed = await rig.listedBackups();
      const manifest = await rig.manifest(listed.at(-1)!);
      await rig.commit('needs a later segment');
      const wal = await rig.switchWal();
      await rig.waitArchived(wal);
      // A segment after the newest backup's first one: recovery needs it to reach --latest.
      const needed = (await rig.acknowledged()).filter((name) => name > manifest.walStart).at(-1)!;
      const rule = proxy.inject({method: 'GET', key: needed, fault: '503', times: Infinity});
      try {
        const restored = await restoreLatest(rig);
        let rows: unknown = 'not started';
        if (restored.result.exitCode === 0) rows = await rowsOf(restored.url).catch(() => 'unreachable');
        await restored.stop();
        expect(rule.fired).toBeGreaterThan(0);
        expect(restored.result.exitCode, `restore reported success with rows ${JSON.stringify(rows)} (expected ${JSON.stringify(rig.expectedRows)})`).not.toBe(0);
      } finally {
        proxy.clear();
      }
    });
  });

  describe('expire', () => {
    it('kill -9 mid deletion (backups, then WAL): nothing listed is broken; a second run finishes; restore is exact', async () => {
      const proxy = rig.proxy!;
      const backups = await rig.listedBackups();
      expect(backups.length).toBeGreaterThanOrEqual(2);
      const policy = rig.policyWith('keep-one', {retention: {backups: 1}});
      const dry = await rig.spawn(['expire', '--dry-run', '--json'], {policyFile: policy}).result;
      expect(dry.exitCode, dry.stderr).toBe(0);
      const plan = firstJson(dry.stdout) as {backups: Array<{id: string; keep: boolean}>};
      const removed = plan.backups.filter((decision) => !decision.keep).map((decision) => decision.id);
      const kept = plan.backups.filter((decision) => decision.keep).map((decision) => decision.id);
      expect(kept).toEqual([backups.at(-1)]);
      const fromWal = (await rig.manifest(kept[0]!)).walStart;

      // Deletes go: per removed backup its manifest, then its objects. Kill on the second (the first one's objects).
      const stall = proxy.inject({method: 'POST', query: /delete/, fault: 'stall-request', nth: 2});
      const first = rig.spawn(['expire'], {policyFile: policy});
      await hitWithin(stall.hit, 'the second DeleteObjects');
      await killHard(first.pid);
      proxy.release();
      proxy.clear();
      await first.result;
      const listed = await rig.listedBackups();
      expect(listed, 'a backup whose manifest is gone is still listed').not.toContain(removed[0]);
      expect(listed).toContain(kept[0]);
      orphans.push(removed[0]!);
      await checkInvariants(rig, {orphanBackups: orphans, allowProblems: orphans.map((id) => new RegExp(id)), fromWal});

      // Kill again, in the WAL deletion: after the remaining backups' two deletes each.
      const walStall = proxy.inject({method: 'POST', query: /delete/, fault: 'stall-request', nth: 2 * (removed.length - 1) + 1});
      const second = rig.spawn(['expire'], {policyFile: policy});
      await hitWithin(walStall.hit, 'the first WAL DeleteObjects');
      await killHard(second.pid);
      proxy.release();
      proxy.clear();
      await second.result;
      expect(await rig.listedBackups()).toEqual(kept);
      await checkInvariants(rig, {orphanBackups: orphans, allowProblems: orphans.map((id) => new RegExp(id)), fromWal});

      const finish = await rig.spawn(['expire'], {policyFile: policy}).result;
      expect(finish.exitCode, finish.stderr).toBe(0);
      expect(await rig.listedBackups()).toEqual(kept);
      // WAL older than the kept backup is gone, the rest stays.
      const walKeys = (await rig.rawKeys()).filter((key) => key.startsWith('wal/') && /\/[0-9A-F]{24}-/.test(key));
      const names = walKeys.map((key) => /\/([0-9A-F]{24})-/.exec(key)![1]!);
      expect(names.filter((name) => name.slice(8) < fromWal.slice(8))).toEqual([]);
      rig.proven.clear();
      await rig.commit('after expire');
      await checkInvariants(rig, {orphanBackups: orphans, allowProblems: orphans.map((id) => new RegExp(id)), fromWal, pitr: true});
    });
  });
});
