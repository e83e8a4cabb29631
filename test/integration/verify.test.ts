// pgbk verify on real PostgreSQL, local and S3 repositories: a healthy repository passes; a tampered WAL object, a
// WAL segment a backup needs gone missing, and a damaged backup object each fail (exit 1) naming the object.

import {readFileSync, writeFileSync} from 'node:fs';
import {join} from 'node:path';
import {text} from 'node:stream/consumers';
import zlib, {gzipSync} from 'node:zlib';
import {codecSuffix, defaultCompression} from '../../src/util/codec.js';
import {randomBytes} from 'node:crypto';
import {afterAll, beforeAll, describe, expect, inject, it} from 'vitest';
import {parsePolicy} from '../../src/policy/load.js';
import {openRepository} from '../../src/storage/open.js';
import type {Repository} from '../../src/storage/repository.js';
import {segmentName, segmentNumberOf} from '../../src/wal/name.js';
import {setupArchiving, switchAndWaitArchived, type ArchivingSetup} from '../helpers/pitr.js';

async function readAll(repo: Repository, key: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of await repo.get(key)) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

describe.each(['local', 's3'] as const)('verify with a %s repository', (kind) => {
  let setup: ArchivingSetup;
  let repo: Repository;
  const ids: string[] = [];

  /** Overwrites a stored object in place (a disk fault, a buggy tool); local files keep their owner. */
  async function overwrite(key: string, body: Buffer): Promise<void> {
    if (kind === 'local') writeFileSync(join(setup.repoDir!, key), body);
    else await repo.put(key, body);
  }

  async function walKey(name: string): Promise<string> {
    for await (const object of repo.list('wal/')) if (object.key.includes(`/${name}-`)) return object.key;
    throw new Error(`${name} is not archived`);
  }

  beforeAll(async () => {
    setup = await setupArchiving(kind, inject('s3'));
    repo = await openRepository(parsePolicy(readFileSync(setup.policyFile, 'utf8'), setup.policyFile, {}).repository);
    const {cluster} = setup;
    await cluster.psql(`create table items (id int primary key, label text not null)`);
    for (let step = 1; step <= 2; step++) {
      await cluster.psql(`insert into items select g, 'step ${step}' from generate_series(${step * 1000}, ${step * 1000 + 499}) g`);
      const backup = await setup.pgbk(['backup']);
      expect(backup.exitCode, backup.stderr).toBe(0);
      ids.push(backup.stdout.trim());
      for (let switches = 0; switches < 2; switches++) {
        await cluster.psql(`insert into items values (${step * 100 + switches}, 'after backup ${step}')`);
        await switchAndWaitArchived(cluster);
      }
    }
  });

  afterAll(async () => {
    await repo?.close();
    await setup?.destroy();
  });

  it('passes on a healthy repository', async () => {
    const human = await setup.pgbk(['verify']);
    expect(human.exitCode, human.stdout + human.stderr).toBe(0);
    expect(human.stdout).toMatch(/verified 2 backups \(2 objects\) and \d+ WAL files/);
    expect(human.stdout).toMatch(/^ok$/m);
    const json = await setup.pgbk(['verify', '--json']);
    expect(json.exitCode).toBe(0);
    const doc = JSON.parse(json.stdout);
    expect(doc).toMatchObject({ok: true, backups: ids, problems: []});
    expect(doc.walFiles).toBeGreaterThanOrEqual(5);
  });

  it('fails on a tampered WAL object, naming it', async () => {
    const manifest = JSON.parse((await readAll(repo, `backups/${ids[0]}/manifest.json`)).toString('utf8'));
    const key = await walKey(segmentName(1, segmentNumberOf(manifest.walStart) + 1n));
    const original = await readAll(repo, key);
    // Valid data of the object's own codec: only the checksum can tell.
    await overwrite(key, key.endsWith('.zst') ? (zlib as unknown as {zstdCompressSync(b: Buffer): Buffer}).zstdCompressSync(randomBytes(16 * 1024 * 1024)) : gzipSync(randomBytes(16 * 1024 * 1024)));
    try {
      const result = await setup.pgbk(['verify']);
      expect(result.exitCode).toBe(1);
      expect(result.stdout).toContain(`problem: ${key}: checksum mismatch for ${key}`);
      expect(result.stderr).toMatch(/verify found 1 problem/);
      const json = JSON.parse((await setup.pgbk(['verify', '--json'])).stdout);
      expect(json.problems).toEqual([expect.objectContaining({kind: 'wal-checksum', object: key})]);
    } finally {
      await overwrite(key, original);
    }
    expect((await setup.pgbk(['verify'])).exitCode).toBe(0);
  });

  it('fails when a WAL segment a backup needs is gone, naming it', async () => {
    const manifest = JSON.parse((await readAll(repo, `backups/${ids[0]}/manifest.json`)).toString('utf8'));
    const name = segmentName(1, segmentNumberOf(manifest.walStart) + 1n);
    const key = await walKey(name);
    const original = await readAll(repo, key);
    await repo.remove([key]);
    try {
      const result = await setup.pgbk(['verify']);
      expect(result.exitCode).toBe(1);
      expect(result.stdout).toMatch(new RegExp(`problem: ${name}: WAL segment ${name} is missing: restores from backup ${ids[0]} cannot go past`));
    } finally {
      await overwrite(key, original);
    }
  });

  it('fails on a damaged backup object, naming it; --backup checks one backup', async () => {
    const key = `backups/${ids[1]}/base.tar${codecSuffix(defaultCompression().codec)}`;
    const original = await readAll(repo, key);
    const damaged = Buffer.from(original);
    damaged[Math.floor(damaged.length / 2)] ^= 0xff;
    await overwrite(key, damaged);
    try {
      const result = await setup.pgbk(['verify']);
      expect(result.exitCode).toBe(1);
      expect(result.stdout).toContain(`problem: ${key}: checksum mismatch for ${key}`);
      await overwrite(key, original.subarray(0, original.length - 10));
      expect((await setup.pgbk(['verify'])).stdout).toContain(`problem: ${key}: backup object ${key} has ${original.length - 10} bytes, the manifest says ${original.length}`);
      const other = await setup.pgbk(['verify', '--backup', ids[0]!, '--json']);
      expect(other.exitCode, other.stderr).toBe(0);
      expect(JSON.parse(other.stdout).backups).toEqual([ids[0]]);
      const unknown = await setup.pgbk(['verify', '--backup', '20000101T000000Z']);
      expect(unknown.exitCode).toBe(2);
      expect(unknown.stderr).toMatch(/no such backup/);
    } finally {
      await overwrite(key, original);
    }
  });
});
