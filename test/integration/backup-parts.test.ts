// Issue 10 item 4 / issue 11 items 2 and 5, on real PostgreSQL and radosgw: a backup larger than
// backup.max_object_size is stored in several objects and restored exactly; a damaged or missing piece is refused
// by name; a backup forged with a valid manifest whose tar holds a setuid file or a `../` member is neutralised by
// the unpack's own rules.

import {existsSync, readdirSync, statSync} from 'node:fs';
import {randomBytes} from 'node:crypto';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import {zstdCompressSync, zstdDecompressSync, gunzipSync, gzipSync} from 'node:zlib';
import {afterAll, beforeAll, describe, expect, inject, it} from 'vitest';
import {restoreAndStart, setupArchiving, snapshot, switchAndWaitArchived, type ArchivingSetup, type RowSnapshot} from '../helpers/pitr.js';
import {chownToPostgres, makeTempDir} from '../helpers/cluster.js';
import {tarMember, tarEnd, withoutTarEnd} from '../helpers/tar.js';
import {loadPolicy} from '../../src/policy/load.js';
import {openRepository} from '../../src/storage/open.js';
import type {Repository} from '../../src/storage/repository.js';
import {readManifest, writeManifest, type BackupManifest} from '../../src/backup/manifest.js';
import {backupIdFor, backupObjectKey} from '../../src/storage/layout.js';
import {sha256Hex} from '../../src/util/streams.js';

const CAP = 2 * 1024 * 1024;

async function readAll(repo: Repository, key: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of await repo.get(key)) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

describe('a backup stored in several objects (radosgw)', () => {
  let setup: ArchivingSetup;
  let repo: Repository;
  let manifest: BackupManifest;
  let point: {rows: RowSnapshot; lsn: string};

  beforeAll(async () => {
    setup = await setupArchiving('s3', inject('s3'), {policy: {backup: {max_object_size: '2MiB'}}});
    repo = await openRepository((await loadPolicy({policy: setup.policyFile, env: process.env, cwd: process.cwd()})).repository);
    // Rows that do not compress (md5 text of random data), so the stored tar spans several 2 MiB objects.
    await setup.cluster.psql(`create table items (id int primary key, label text not null)`);
    await setup.cluster.psql(`insert into items select g, md5(random()::text) || md5(random()::text) from generate_series(1, 40000) g`);
    const backup = await setup.pgbk(['backup']);
    expect(backup.exitCode, backup.stderr).toBe(0);
    manifest = await readManifest(repo, backup.stdout.trim());
    await setup.cluster.psql(`insert into items select g, 'after the backup' from generate_series(50000, 50999) g`);
    const [at] = await setup.cluster.query<{lsn: string}>(`select pg_current_wal_lsn()::text as lsn`);
    point = {rows: (await snapshot(setup.cluster.url)) as RowSnapshot, lsn: at!.lsn};
    // Destroyed after the point: only a restore can bring the rows back.
    await setup.cluster.psql(`delete from items where id % 3 = 0`);
    await switchAndWaitArchived(setup.cluster);
  });

  afterAll(async () => {
    await repo?.close();
    await setup?.destroy();
  });

  it('stores the tar as numbered pieces within the cap', async () => {
    const pieces = manifest.objects;
    expect(pieces.length).toBeGreaterThanOrEqual(3);
    expect(pieces.map((piece) => piece.part)).toEqual(pieces.map((_piece, index) => index + 1));
    expect(pieces.every((piece) => piece.tar === 'base')).toBe(true);
    expect(pieces[0]!.name).toMatch(/^base\.tar\.(zst|gz)$/);
    expect(pieces[1]!.name).toMatch(/^base\.00002\.tar\.(zst|gz)$/);
    for (const piece of pieces) {
      const stored = await repo.stat(piece.key);
      expect(stored?.sizeBytes).toBe(piece.sizeBytes);
      expect(piece.sizeBytes).toBeLessThanOrEqual(CAP);
    }
    expect(manifest.storedBytes).toBe(pieces.reduce((sum, piece) => sum + piece.sizeBytes, 0));
  });

  it('restores it exactly (rows compared)', async () => {
    const restored = await restoreAndStart(setup, ['--target-lsn', point.lsn]);
    try {
      expect(await snapshot(restored.url)).toEqual(point.rows);
    } finally {
      await restored.stop();
    }
  });

  it('refuses a damaged piece and a missing one, naming it; verify names it too', async () => {
    const victim = manifest.objects[1]!;
    const original = await readAll(repo, victim.key);
    const damaged = Buffer.from(original);
    damaged[Math.floor(damaged.length / 2)] ^= 0xff;
    await repo.put(victim.key, damaged);
    try {
      const dir = join(makeTempDir('pgbk-parts-damaged-'), 'data');
      const result = await setup.pgbk(['restore', '--to', dir, '--backup', manifest.id]);
      expect(result.exitCode, result.stderr).toBe(1);
      expect(result.stderr).toMatch(new RegExp(`${victim.key.replace(/\./g, '\\.')}.*(checksum mismatch|is damaged|is not valid)|checksum mismatch for ${victim.key.replace(/\./g, '\\.')}`));
      expect(existsSync(dir) ? readdirSync(dir) : []).toEqual([]);
      const verify = await setup.pgbk(['verify', '--backup', manifest.id]);
      expect(verify.exitCode).toBe(1);
      expect(verify.stdout).toContain(`checksum mismatch for ${victim.key}`);
    } finally {
      await repo.put(victim.key, original);
    }

    const missing = manifest.objects.at(-1)!;
    const kept = await readAll(repo, missing.key);
    await repo.remove([missing.key]);
    try {
      const dir = join(makeTempDir('pgbk-parts-missing-'), 'data');
      const result = await setup.pgbk(['restore', '--to', dir, '--backup', manifest.id]);
      expect(result.exitCode, result.stderr).toBe(1);
      expect(result.stderr).toContain(`backup ${manifest.id} is incomplete`);
      expect(result.stderr).toContain(`${missing.key} is missing`);
      expect(existsSync(dir) ? readdirSync(dir) : []).toEqual([]);
    } finally {
      await repo.put(missing.key, kept);
    }
  });

  /** A new backup in the repository, sealed with a valid manifest, whose tar is the real one plus `members`. */
  async function forge(members: Buffer[], second: number): Promise<string> {
    const tar: Buffer[] = [];
    for (const piece of manifest.objects) {
      const stored = await readAll(repo, piece.key);
      tar.push(piece.compression === 'zstd' ? zstdDecompressSync(stored) : piece.compression === 'gzip' ? gunzipSync(stored) : stored);
    }
    const archive = Buffer.concat([withoutTarEnd(Buffer.concat(tar)), ...members, tarEnd()]);
    const id = backupIdFor(new Date(Date.parse(manifest.startTime) + second * 1000));
    const codec = manifest.objects[0]!.compression;
    const body = codec === 'zstd' ? zstdCompressSync(archive) : codec === 'gzip' ? gzipSync(archive) : archive;
    const name = manifest.objects[0]!.name;
    const key = backupObjectKey(id, name);
    await repo.put(key, body);
    await writeManifest(repo, {...manifest, id, objects: [{name, key, sizeBytes: body.length, sha256: sha256Hex(body), compression: codec, tar: 'base', part: 1}]});
    return id;
  }

  it('a forged backup with a setuid file: restored, the bit dropped', async () => {
    const id = await forge([tarMember({name: 'global/pgbk_suid_probe', mode: 0o4755, data: '#!/bin/sh\nid\n'})], 1);
    const dir = join(makeTempDir('pgbk-parts-suid-'), 'data');
    const result = await setup.pgbk(['restore', '--to', dir, '--backup', id]);
    expect(result.exitCode, result.stderr).toBe(0);
    expect(result.stderr).toContain('carried setuid/setgid/sticky bits; restored without them');
    expect(statSync(join(dir, 'global/pgbk_suid_probe')).mode & 0o7777).toBe(0o755);
  });

  it('a forged backup with a ../ member: refused, nothing written outside or left inside', async () => {
    const escape = `pgbk-escape-${randomBytes(4).toString('hex')}`;
    const base = makeTempDir('pgbk-parts-escape-');
    const dir = join(base, 'data');
    const id = await forge([tarMember({name: `../${escape}`, mode: 0o4755, data: 'owned\n'}), tarMember({name: `../../../../../../../../tmp/${escape}`, data: 'owned\n'})], 2);
    const result = await setup.pgbk(['restore', '--to', dir, '--backup', id]);
    expect(result.exitCode).toBe(1);
    expect(result.stderr).toContain(`tar member "../${escape}" climbs out of the target with ".."; refused`);
    expect(existsSync(join(base, escape))).toBe(false);
    expect(existsSync(join(tmpdir(), escape))).toBe(false);
    expect(existsSync(`/tmp/${escape}`)).toBe(false);
    expect(existsSync(dir) ? readdirSync(dir) : []).toEqual([]);
  });

  it('a cluster with a user tablespace: backed up over the replication protocol from PostgreSQL 15 on, else refused up front', async () => {
    const location = makeTempDir('pgbk-parts-tablespace-');
    chownToPostgres(location);
    await setup.cluster.psql(`create tablespace pgbk_ts location '${location}'`);
    try {
      const [{version}] = (await setup.cluster.query<{version: number}>(`select current_setting('server_version_num')::int as version`)) as [{version: number}];
      const before: string[] = [];
      for await (const object of repo.list('backups/')) before.push(object.key);
      const result = await setup.pgbk(['backup']);
      if (version >= 150000) {
        expect(result.exitCode, result.stderr).toBe(0);
        const taken = await readManifest(repo, result.stdout.trim());
        expect(taken.tablespaces?.map((space) => [space.name, space.location])).toEqual([['pgbk_ts', location]]);
      } else {
        expect(result.exitCode).toBe(1);
        expect(result.stderr).toContain(`has user tablespaces (pgbk_ts at ${location}) and runs PostgreSQL`);
        const after: string[] = [];
        for await (const object of repo.list('backups/')) after.push(object.key);
        expect(after).toEqual(before);
      }
    } finally {
      await setup.cluster.psql(`drop tablespace pgbk_ts`);
    }
  });
});
