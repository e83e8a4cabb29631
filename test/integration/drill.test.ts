// pgbk drill against the S3 endpoint: a healthy drill passes with plausible figures and stores its report; drills
// fail (exit 1, naming the object) on a corrupt or missing WAL object, a corrupt backup object, a failed check; no
// scratch server or directory is ever left behind, also after SIGTERM. The repository is checked independently
// with the minio client.

import {readdirSync, readFileSync} from 'node:fs';
import {join} from 'node:path';
import {parse} from 'yaml';
import * as Minio from 'minio';
import {afterAll, beforeAll, describe, expect, inject, it} from 'vitest';
import {setupArchiving, switchAndWaitArchived, writePolicy, type ArchivingSetup} from '../helpers/pitr.js';
import {makeTempDir, runAsPostgres} from '../helpers/cluster.js';
import {pgbkBin, runPgbk, type RunPgbkResult} from '../helpers/cli.js';
import type {S3TestEndpoint} from '../helpers/s3.js';
import {codecSuffix, defaultCompression} from '../../src/util/codec.js';

/** The base backup object's name with the default codec of this runtime. */
const BASE_TAR = `base.tar${codecSuffix(defaultCompression().codec)}`;

const s3 = inject('s3');

function minioClient(endpoint: S3TestEndpoint): Minio.Client {
  const url = new URL(endpoint.endpoint);
  const useSSL = url.protocol === 'https:';
  return new Minio.Client({
    endPoint: url.hostname, port: url.port ? Number(url.port) : useSSL ? 443 : 80, useSSL,
    accessKey: endpoint.accessKeyId, secretKey: endpoint.secretAccessKey, region: endpoint.region, pathStyle: true,
  });
}

async function listKeys(minio: Minio.Client, prefix: string): Promise<string[]> {
  const keys: string[] = [];
  for await (const item of minio.listObjectsV2(s3.bucket, prefix, true) as AsyncIterable<{name?: string}>) if (item.name) keys.push(item.name);
  return keys.sort();
}

async function readObject(minio: Minio.Client, key: string): Promise<Buffer> {
  const stream = await minio.getObject(s3.bucket, key);
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** Every process whose command line mentions `text` (from /proc). */
function processesMentioning(text: string): number[] {
  const found: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      if (readFileSync(`/proc/${entry}/cmdline`, 'utf8').includes(text)) found.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return found;
}

describe('pgbk drill with an S3 repository', () => {
  let setup: ArchivingSetup;
  let minio: Minio.Client;
  let prefix: string;
  let backupId: string;
  let scratchTmp: string;
  const points: Array<{time: string; rows: number}> = [];
  const segments: string[] = [];

  /** A policy file next to the test's one, with a drill section. */
  function drillPolicy(name: string, drill: Record<string, unknown>, extra: Record<string, unknown> = {}): string {
    const base = parse(readFileSync(setup.policyFile, 'utf8')) as Record<string, unknown>;
    return writePolicy(setup.dir, name, {...base, ...extra, drill});
  }

  async function drill(policyFile: string, args: string[]): Promise<RunPgbkResult> {
    const result = await runPgbk(['drill', '--policy', policyFile, ...args], {env: {TMPDIR: scratchTmp}, timeoutMs: 150_000});
    // Always: no scratch server, no scratch directory left behind.
    expect(processesMentioning(scratchTmp)).toEqual([]);
    expect(readdirSync(scratchTmp)).toEqual([]);
    return result;
  }

  const CHECKS = [{name: 'items exist', sql: 'select count(*) from items', min: 1}];

  beforeAll(async () => {
    setup = await setupArchiving('s3', s3, {policy: {objectives: {rpo: '5m', rto: '10m'}}});
    minio = minioClient(s3);
    prefix = new URL(setup.repoUrl).pathname.slice(1);
    scratchTmp = makeTempDir('pgbk-drill-tmp-');
    const {cluster} = setup;
    await cluster.psql(`create table items (id int primary key, label text not null)`);
    await cluster.psql(`insert into items select g, 'before backup ' || g from generate_series(1, 1000) g`);
    const backup = await setup.pgbk(['backup']);
    expect(backup.exitCode).toBe(0);
    backupId = backup.stdout.trim();
    for (let step = 1; step <= 3; step++) {
      await cluster.psql(`insert into items select g, 'step ${step}' from generate_series(${step * 10000}, ${step * 10000 + 99}) g`);
      const [at] = await cluster.query<{time: string}>(`select to_char(clock_timestamp() at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') as time`);
      const [count] = await cluster.query<{n: number}>(`select count(*)::int as n from items`);
      points.push({time: at!.time, rows: count!.n});
      await new Promise((resolve) => setTimeout(resolve, 300));
      await cluster.psql(`insert into items values (${step * 10000 + 500}, 'after point ${step}')`);
      segments.push(await switchAndWaitArchived(cluster));
    }
  });

  afterAll(async () => {
    await setup?.destroy();
  });

  it('passes on a healthy repository at a random moment, with plausible figures, and stores its report', async () => {
    const policy = drillPolicy('healthy', {checks: CHECKS});
    const result = await drill(policy, ['--json']);
    expect(result.stderr).toBe('');
    expect(result.exitCode).toBe(0);
    const report = JSON.parse(result.stdout);
    expect(report.ok).toBe(true);
    expect(report.backupId).toBe(backupId);
    expect(report.target.chosen).toBe('random');
    expect(report.rtoSeconds).toBeGreaterThan(0);
    expect(report.rpoSeconds).toBeGreaterThanOrEqual(0);
    expect(report.rpoSeconds).toBeLessThanOrEqual(300);
    expect(report.objectives).toEqual({rpoSeconds: 300, rtoSeconds: 600, rpoMet: true, rtoMet: true});
    expect(report.phases.fetchMs).toBeGreaterThan(0);
    expect(report.phases.replayMs).toBeGreaterThan(0);
    expect(report.rtoSeconds * 1000).toBeGreaterThanOrEqual(report.phases.fetchMs + report.phases.replayMs);
    expect(new Date(report.lastReplayedCommit).getTime()).toBeLessThanOrEqual(new Date(report.target.time).getTime());
    expect(report.checks.map((c: {name: string; ok: boolean}) => [c.name, c.ok])).toEqual([
      ['WAL archive continuity', true], ['recovery reached the target', true], ['pg_amcheck', true], ['items exist', true],
    ]);
    expect(report.errors).toEqual([]);

    // The repository, seen through the minio client: the objects the drill read, and the report it stored.
    const backupKeys = await listKeys(minio, `${prefix}/backups/${backupId}/`);
    expect(backupKeys).toEqual([`${prefix}/backups/${backupId}/${BASE_TAR}`, `${prefix}/backups/${backupId}/manifest.json`]);
    expect((await minio.statObject(s3.bucket, `${prefix}/backups/${backupId}/${BASE_TAR}`)).size).toBeGreaterThan(0);
    const proof = report.checks.find((c: {name: string}) => c.name === 'recovery reached the target').detail as string;
    const read = /\((.*) read with pg_waldump\)/.exec(proof)![1]!.split(', ');
    const walKeys = await listKeys(minio, `${prefix}/wal/`);
    for (const segment of read) {
      const key = walKeys.find((candidate) => candidate.includes(`/${segment}-`));
      expect(key, segment).toBeDefined();
      expect((await minio.statObject(s3.bucket, key!)).size).toBeGreaterThan(0);
    }
    const reportKey = `${prefix}/drills/${report.id}.json`;
    expect(await listKeys(minio, `${prefix}/drills/`)).toContain(reportKey);
    expect((await minio.statObject(s3.bucket, reportKey)).size).toBeGreaterThan(0);
    expect(JSON.parse((await readObject(minio, reportKey)).toString('utf8'))).toEqual(report);
  });

  it('restores exactly to a given time: the rows the source had then (checked by a drill check)', async () => {
    const point = points[1]!;
    const policy = drillPolicy('exact', {checks: [{name: 'rows at the point', sql: 'select count(*) from items', expect: point.rows}]});
    const result = await drill(policy, ['--target-time', point.time]);
    expect(result.exitCode, result.stderr).toBe(0);
    expect(result.stdout).toMatch(/PASSED/);
    expect(result.stdout).toContain(`ok   rows at the point: expected "${point.rows}", got "${point.rows}"`);
    expect(result.stdout).toMatch(/ok {3}recovery reached the target: last replayed commit of transaction \d+ at .*, stopped before commit of \d+/);
  });

  it('passes at the very start of the window, before any commit after the backup', async () => {
    const listed = JSON.parse((await setup.pgbk(['list', '--json'])).stdout);
    const result = await drill(drillPolicy('earliest', {}), ['--target-time', listed.window.earliestTime, '--json']);
    expect(result.exitCode, result.stderr).toBe(0);
    const report = JSON.parse(result.stdout);
    expect(report.rpoSeconds).toBeGreaterThanOrEqual(0);
    expect(report.checks.find((c: {name: string}) => c.name === 'recovery reached the target').ok).toBe(true);
  });

  it('restores the latest state with the heartbeat: the row pgbk wrote at the start of the drill is there', async () => {
    const policy = drillPolicy('heartbeat', {heartbeat: true, checks: CHECKS});
    const result = await drill(policy, ['--latest', '--json']);
    expect(result.exitCode, result.stderr).toBe(0);
    const report = JSON.parse(result.stdout);
    expect(report.target.kind).toBe('latest');
    const heartbeat = report.checks.find((c: {name: string}) => c.name === 'heartbeat');
    expect(heartbeat.ok).toBe(true);
    expect(report.rpoSeconds).toBeLessThan(60);
  });

  it('fails when a check query fails or returns the wrong value', async () => {
    const policy = drillPolicy('badcheck', {checks: [
      {name: 'wrong count', sql: 'select count(*) from items', expect: 1},
      {name: 'missing table', sql: 'select count(*) from no_such_table', min: 1},
    ]});
    const result = await drill(policy, ['--latest']);
    expect(result.exitCode).toBe(1);
    expect(result.stdout).toMatch(/FAILED/);
    expect(result.stderr).toMatch(/check "wrong count" failed: expected "1", got "\d+"/);
    expect(result.stderr).toMatch(/check "missing table" failed: query failed: relation "no_such_table" does not exist/);
  });

  it('fails naming the WAL object when one the target needs is corrupt', async () => {
    const segment = segments[1]!;
    const key = (await listKeys(minio, `${prefix}/wal/`)).find((candidate) => candidate.includes(`/${segment}-`))!;
    const original = await readObject(minio, key);
    await minio.putObject(s3.bucket, key, Buffer.concat([original.subarray(0, 100), Buffer.alloc(4096, 7), original.subarray(4196)]));
    try {
      const result = await drill(drillPolicy('corruptwal', {}), ['--target-time', points[2]!.time]);
      expect(result.exitCode).toBe(1);
      expect(result.stderr).toContain(key.slice(prefix.length + 1));
      expect(result.stderr).toMatch(/recovery failed/);
    } finally {
      await minio.putObject(s3.bucket, key, original);
    }
  });

  it('refuses (exit 2) a target past a missing WAL segment, naming it', async () => {
    const segment = segments[1]!;
    const key = (await listKeys(minio, `${prefix}/wal/`)).find((candidate) => candidate.includes(`/${segment}-`))!;
    const original = await readObject(minio, key);
    await minio.removeObject(s3.bucket, key);
    try {
      const result = await drill(drillPolicy('missingwal', {}), ['--target-time', points[2]!.time]);
      expect(result.exitCode).toBe(2);
      expect(result.stderr).toMatch(new RegExp(`lies past a gap in the WAL archive: segment ${segment} is missing`));
    } finally {
      await minio.putObject(s3.bucket, key, original);
    }
  });

  it('fails naming the backup object when it is corrupt', async () => {
    const key = `${prefix}/backups/${backupId}/${BASE_TAR}`;
    const original = await readObject(minio, key);
    await minio.putObject(s3.bucket, key, Buffer.concat([original.subarray(0, 1000), Buffer.alloc(1000, 1), original.subarray(2000)]));
    try {
      const result = await drill(drillPolicy('corruptbackup', {}), ['--json']);
      expect(result.exitCode).toBe(1);
      const report = JSON.parse(result.stdout);
      expect(report.ok).toBe(false);
      expect(report.errors.join('\n')).toContain(`backups/${backupId}/${BASE_TAR}`);
      expect(result.stderr).toContain(`backups/${backupId}/${BASE_TAR}`);
      expect(await listKeys(minio, `${prefix}/drills/`)).toContain(`${prefix}/drills/${report.id}.json`);
    } finally {
      await minio.putObject(s3.bucket, key, original);
    }
  });

  it('cleans up when killed with SIGTERM while the scratch server runs', async () => {
    const policy = drillPolicy('sigterm', {});
    const running = runPgbk(['drill', '--policy', policy, '--latest'], {env: {TMPDIR: scratchTmp}, timeoutMs: 150_000});
    let pgbkPid: number | undefined;
    const deadline = Date.now() + 90_000;
    while (Date.now() < deadline) {
      // The scratch postmaster itself (not tar unpacking the backup): the server must be stopped.
      const server = processesMentioning(join(scratchTmp, 'pgbk-drill-')).filter((pid) => /\/postgres\0-D\0/.test(readFileSync(`/proc/${pid}/cmdline`, 'utf8')));
      pgbkPid = processesMentioning(policy).find((pid) => readFileSync(`/proc/${pid}/cmdline`, 'utf8').startsWith(process.execPath) &&
        readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(pgbkBin));
      if (server.length > 0 && pgbkPid) break;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    expect(pgbkPid).toBeDefined();
    await runAsPostgres('kill', ['-TERM', String(pgbkPid)]);
    const result = await running;
    expect(result.exitCode).not.toBe(0);
    expect(result.stderr).toContain('drill interrupted');
    expect(processesMentioning(scratchTmp)).toEqual([]);
    expect(readdirSync(scratchTmp)).toEqual([]);
  });

  it('refuses a target outside the window as bad input', async () => {
    const result = await runPgbk(['drill', '--policy', setup.policyFile, '--target-time', '2001-01-01 00:00:00+00'], {env: {TMPDIR: scratchTmp}});
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toMatch(/before the recoverable window/);
    expect(readdirSync(scratchTmp)).toEqual([]);
  });
});
