// The dump strategy: pg_dump (custom format) into the repository, pg_restore of the newest dump at or before a
// time into --to-db, in one transaction.

import {afterAll, beforeAll, describe, expect, inject, it} from 'vitest';
import {ListObjectsV2Command, PutObjectCommand} from '@aws-sdk/client-s3';
import {readFileSync} from 'node:fs';
import {parse} from 'yaml';
import {setupArchiving, snapshot, writePolicy, type ArchivingSetup} from '../helpers/pitr.js';
import {runPgbk} from '../helpers/cli.js';
import {createS3Client} from '../helpers/s3.js';

describe('dump strategy (S3 repository)', () => {
  let setup: ArchivingSetup;
  let first: {id: string; rows: unknown; time: string};
  let second: {id: string; rows: unknown};

  beforeAll(async () => {
    setup = await setupArchiving('s3', inject('s3'), {strategy: 'dump', conf: {archive_mode: 'off'}});
    const {cluster} = setup;
    await cluster.psql(`create table items (id int primary key, label text)`);
    await cluster.psql(`insert into items select g, 'first ' || g from generate_series(1, 3000) g`);
    const a = await setup.pgbk(['backup']);
    expect(a.exitCode).toBe(0);
    first = {id: a.stdout.trim(), rows: await snapshot(cluster.url), time: new Date(Date.now() + 500).toISOString()};
    await new Promise((resolve) => setTimeout(resolve, 1500));
    await cluster.psql(`update items set label = 'second' where id % 2 = 0; insert into items values (5000, 'new')`);
    const b = await setup.pgbk(['backup']);
    expect(b.exitCode).toBe(0);
    second = {id: b.stdout.trim(), rows: await snapshot(cluster.url)};
    await cluster.psql(`drop table items`);
  });

  afterAll(async () => {
    await setup?.destroy();
  });

  it('lists the dumps', async () => {
    const doc = JSON.parse((await setup.pgbk(['list', '--json'])).stdout);
    expect(doc.backups.map((b: {id: string; kind: string}) => [b.id, b.kind])).toEqual([[first.id, 'dump'], [second.id, 'dump']]);
    expect(doc.backups[0].database).toBe('postgres');
  });

  it('restores the newest dump by default and the one at or before --target-time', async () => {
    await setup.cluster.psql(`create database latest_copy`);
    const latest = await setup.pgbk(['restore', '--to-db', setup.cluster.urlFor('latest_copy')]);
    expect(latest.exitCode).toBe(0);
    expect(latest.stdout).toContain(second.id);
    expect(await snapshot(setup.cluster.urlFor('latest_copy'))).toEqual(second.rows);

    await setup.cluster.psql(`create database earlier_copy`);
    const earlier = await setup.pgbk(['restore', '--to-db', setup.cluster.urlFor('earlier_copy'), '--target-time', first.time]);
    expect(earlier.exitCode).toBe(0);
    expect(earlier.stdout).toContain(first.id);
    expect(await snapshot(setup.cluster.urlFor('earlier_copy'))).toEqual(first.rows);
  });

  it('refuses physical targets and --to for a dump policy', async () => {
    const lsn = await setup.pgbk(['restore', '--to-db', setup.cluster.url, '--target-lsn', '0/3000000']);
    expect(lsn.exitCode).toBe(2);
    expect(lsn.stderr).toMatch(/by time only/);
    const to = await setup.pgbk(['restore', '--to', '/tmp/nowhere']);
    expect(to.exitCode).toBe(2);
    expect(to.stderr).toMatch(/--to-db/);
  });

  it('dumps only the tables a policy names (dump.tables)', async () => {
    await setup.cluster.psql(`create table mirrored (id int primary key); insert into mirrored values (1), (2); create table private (secret text); insert into private values ('x')`);
    const policy = writePolicy(setup.dir, 'tables', {...parse(readFileSync(setup.policyFile, 'utf8')), dump: {tables: ['public.mirrored']}});
    const backup = await runPgbk(['backup', '--policy', policy]);
    expect(backup.exitCode, backup.stderr).toBe(0);
    await setup.cluster.psql(`create database tables_copy`);
    const restored = await runPgbk(['restore', '--policy', policy, '--to-db', setup.cluster.urlFor('tables_copy'), '--backup', backup.stdout.trim()]);
    expect(restored.exitCode, restored.stderr).toBe(0);
    expect(await setup.cluster.psql(`select string_agg(tablename, ',' order by tablename) from pg_tables where schemaname = 'public'`, {database: 'tables_copy'})).toBe('mirrored');
    expect(await setup.cluster.psql(`select count(*) from mirrored`, {database: 'tables_copy'})).toBe('2');
    await setup.cluster.psql(`drop table mirrored; drop table private`);
  });

  it('changes nothing when the stored dump is corrupt', async () => {
    await setup.cluster.psql(`create database guarded; `);
    await setup.cluster.psql(`create table keep (v int); insert into keep values (42)`, {database: 'guarded'});
    const s3 = inject('s3');
    const client = createS3Client(s3);
    const prefix = setup.repoUrl.replace(`s3://${s3.bucket}/`, '');
    const listed = await client.send(new ListObjectsV2Command({Bucket: s3.bucket, Prefix: `${prefix}/backups/${second.id}/dump.pgdump`}));
    const key = listed.Contents![0]!.Key!;
    // Same dump with one byte changed near the end: pg_restore could apply most of it; the checksum must stop it.
    const {GetObjectCommand} = await import('@aws-sdk/client-s3');
    const original = Buffer.from(await (await client.send(new GetObjectCommand({Bucket: s3.bucket, Key: key}))).Body!.transformToByteArray());
    const damaged = Buffer.from(original);
    damaged[damaged.length - 10] ^= 0xff;
    await client.send(new PutObjectCommand({Bucket: s3.bucket, Key: key, Body: damaged}));
    const result = await setup.pgbk(['restore', '--to-db', setup.cluster.urlFor('guarded'), '--backup', second.id]);
    expect(result.exitCode).toBe(1);
    expect(result.stderr).toMatch(/checksum mismatch/);
    expect(await setup.cluster.psql(`select string_agg(tablename, ',') from pg_tables where schemaname = 'public'`, {database: 'guarded'})).toBe('keep');
    await client.send(new PutObjectCommand({Bucket: s3.bucket, Key: key, Body: original}));
    client.destroy();
  });
});
