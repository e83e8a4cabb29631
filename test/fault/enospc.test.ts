// ENOSPC on the local driver: the file:// repository lives on a small tmpfs that the test fills up. archive-push
// must fail (PostgreSQL keeps the segment .ready), nothing half-written may be listed, and once space is freed
// archiving resumes and every acknowledged segment comes back byte for byte.
import {execFileSync} from 'node:child_process';
import {closeSync, fsyncSync, mkdirSync, openSync, readdirSync, rmSync, statfsSync, writeSync} from 'node:fs';
import {join} from 'node:path';
import {afterAll, beforeAll, describe, expect, inject, it} from 'vitest';
import {chownToPostgres, isRoot, makeTempDir} from '../helpers/cluster.js';
import {archiveGet, checkInvariants} from './invariants.js';
import {FaultRig} from './rig.js';

const s3 = inject('s3');

/** Can this process mount a tmpfs (root, and mount(8) allowed here)? */
function canMount(): boolean {
  if (!isRoot) return false;
  const probe = makeTempDir('pgbk-mount-probe-');
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', probe], {stdio: 'ignore'});
    execFileSync('umount', [probe], {stdio: 'ignore'});
    return true;
  } catch {
    return false;
  } finally {
    rmSync(probe, {recursive: true, force: true});
  }
}

const mountable = canMount();

describe.skipIf(!mountable)('ENOSPC on a file:// repository (a 64 MiB tmpfs)', () => {
  let mountDir: string;
  let rig: FaultRig;
  const filler = () => join(mountDir, 'filler');

  /** Fill the file system up to `leaveBytes` of free space (as root: the repository user cannot free it). */
  function fill(leaveBytes: number): void {
    const stats = statfsSync(mountDir);
    const free = Number(stats.bavail) * Number(stats.bsize);
    const fd = openSync(filler(), 'a');
    try {
      const chunk = Buffer.alloc(1024 * 1024, 0xa5);
      let left = free - leaveBytes;
      while (left > 0) {
        const size = Math.min(left, chunk.length);
        try {
          writeSync(fd, chunk, 0, size);
        } catch {
          break;
        }
        left -= size;
      }
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  }

  function free(): void {
    rmSync(filler(), {force: true});
  }

  function tempFiles(): string[] {
    const found: string[] = [];
    const walk = (dir: string) => {
      for (const entry of readdirSync(dir, {withFileTypes: true})) {
        if (entry.isDirectory()) walk(join(dir, entry.name));
        else if (entry.name.includes('.pgbk-tmp-') || entry.name.includes('.tmp')) found.push(join(dir, entry.name));
      }
    };
    walk(join(mountDir, 'repo'));
    return found;
  }

  beforeAll(async () => {
    mountDir = makeTempDir('pgbk-fault-tmpfs-');
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64m,mode=0755', 'tmpfs', mountDir]);
    chownToPostgres(mountDir);
    const repoDir = join(mountDir, 'repo');
    mkdirSync(repoDir);
    chownToPostgres(repoDir);
    rig = await FaultRig.create('local', s3, {repoDir});
    await rig.commitAndArchive('seed', 500);
    const backup = await rig.pgbk(['backup']);
    expect(backup.exitCode, backup.stderr).toBe(0);
  });

  afterAll(async () => {
    await rig?.destroy();
    if (mountDir) {
      try {
        execFileSync('umount', ['-l', mountDir], {stdio: 'ignore'});
      } catch {
        // not mounted
      }
      rmSync(mountDir, {recursive: true, force: true});
    }
  });

  it('archive-push fails while the disk is full (segment stays .ready, nothing half-written), resumes after', async () => {
    const before = await rig.status();
    fill(32 * 1024);
    // ~2 MB of incompressible rows: the segment's compressed copy cannot fit in 32 KiB.
    await rig.cluster.psql(`create table if not exists noise (t text)`);
    await rig.cluster.psql(`insert into noise select string_agg(md5(random()::text), '') from generate_series(1, 100) g, generate_series(1, 600) h group by h`);
    await rig.commit('disk full');
    const wal = await rig.switchWal();
    await rig.waitFailed(wal, before);
    expect(rig.readyFiles()).toContain(wal);
    expect((await rig.status()).lastArchived! < wal).toBe(true);
    expect(rig.cluster.log()).toMatch(/ENOSPC/);
    expect(tempFiles()).toEqual([]);
    expect((await rig.rawKeys()).filter((key) => key.includes(wal))).toEqual([]);
    // What was archived before stays readable while the disk is full.
    const earlier = (await rig.acknowledged()).at(-1)!;
    const got = await archiveGet(rig, earlier);
    expect(got.exitCode, got.stderr).toBe(0);
    expect(got.data!.equals(rig.kept(earlier))).toBe(true);

    free();
    await rig.commit('space freed', 10);
    await rig.switchWal();
    await rig.waitArchived(wal);
    expect(tempFiles()).toEqual([]);
    await checkInvariants(rig);
  });

  it('a backup into a full repository fails and leaves nothing behind; after freeing space one succeeds and restores exactly', async () => {
    const listedBefore = await rig.listedBackups();
    fill(256 * 1024);
    const backup = await rig.pgbk(['backup']);
    expect(backup.exitCode).toBe(1);
    expect(backup.stderr).toMatch(/ENOSPC/);
    expect(await rig.listedBackups()).toEqual(listedBefore);
    expect(tempFiles()).toEqual([]);
    expect((await rig.rawKeys()).filter((key) => key.startsWith('backups/') && !listedBefore.some((id) => key.startsWith(`backups/${id}/`)))).toEqual([]);
    free();
    const again = await rig.pgbk(['backup']);
    expect(again.exitCode, again.stderr).toBe(0);
    await rig.commit('after the full-disk backup');
    await checkInvariants(rig, {pitr: true});
  });

  // A local I/O error while writing the fetched segment (ENOSPC on pg_wal) must not look like the end of the
  // archive (exit 1): PostgreSQL would stop recovery early and promote (issue 8 item 6; exit 1 before 54bf7f6).
  it('archive-get onto a full disk: exit ≥ 126 (never 1), no partial file', async () => {
    const dest = join(mountDir, 'dest');
    mkdirSync(dest, {recursive: true});
    chownToPostgres(dest);
    const walFile = (await rig.acknowledged()).at(-1)!;
    fill(4 * 1024);
    try {
      const result = await rig.pgbk(['archive-get', walFile, join(dest, 'RESTORED')], {cwd: dest});
      expect(result.exitCode, result.stderr).toBeGreaterThanOrEqual(126);
      expect(readdirSync(dest)).toEqual([]);
    } finally {
      free();
    }
  });
});
