// pgbk drill for the dump strategy: the newest dump is restored into a scratch database on the policy's server,
// checked, measured and dropped; a failing check fails the drill; nothing is left behind.

import {afterAll, beforeAll, describe, expect, inject, it} from 'vitest';
import {setupArchiving, writePolicy, type ArchivingSetup} from '../helpers/pitr.js';
import {runPgbk} from '../helpers/cli.js';

describe('pgbk drill with the dump strategy', () => {
  let setup: ArchivingSetup;
  let dumpId: string;

  beforeAll(async () => {
    setup = await setupArchiving('s3', inject('s3'), {strategy: 'dump', conf: {archive_mode: 'off'}, policy: {objectives: {rpo: '1h', rto: '10m'}}});
    await setup.cluster.psql(`create table items (id int primary key, label text not null)`);
    await setup.cluster.psql(`insert into items select g, 'item ' || g from generate_series(1, 1234) g`);
    const backup = await setup.pgbk(['backup']);
    expect(backup.exitCode).toBe(0);
    dumpId = backup.stdout.trim();
  });

  afterAll(async () => {
    await setup?.destroy();
  });

  const scratchDatabases = async () =>
    (await setup.cluster.query<{datname: string}>(`select datname from pg_database where datname like 'pgbk_drill%'`)).map((row) => row.datname);

  it('restores the newest dump into a scratch database, runs the checks, reports and drops it', async () => {
    const policy = writePolicy(setup.dir, 'dumpdrill', {
      strategy: 'dump',
      postgres: {url: setup.cluster.url},
      repository: {url: setup.repoUrl, endpoint: inject('s3').endpoint, region: inject('s3').region, force_path_style: true,
        access_key_id: inject('s3').accessKeyId, secret_access_key: inject('s3').secretAccessKey},
      objectives: {rpo: '1h', rto: '10m'},
      drill: {checks: [{name: 'all items', sql: 'select count(*) from items', expect: '1234'}]},
    });
    const result = await runPgbk(['drill', '--policy', policy, '--json'], {timeoutMs: 150_000});
    expect(result.exitCode, result.stderr).toBe(0);
    const report = JSON.parse(result.stdout);
    expect(report.ok).toBe(true);
    expect(report.backupId).toBe(dumpId);
    expect(report.rtoSeconds).toBeGreaterThan(0);
    expect(report.checks.find((check: {name: string}) => check.name === 'all items')?.ok).toBe(true);
    expect(await scratchDatabases()).toEqual([]);
  });

  it('fails when a check does not hold, and still drops the scratch database', async () => {
    const policy = writePolicy(setup.dir, 'dumpdrill-bad', {
      strategy: 'dump',
      postgres: {url: setup.cluster.url},
      repository: {url: setup.repoUrl, endpoint: inject('s3').endpoint, region: inject('s3').region, force_path_style: true,
        access_key_id: inject('s3').accessKeyId, secret_access_key: inject('s3').secretAccessKey},
      drill: {checks: [{name: 'too many items', sql: 'select count(*) from items', min: 5000}]},
    });
    const result = await runPgbk(['drill', '--policy', policy], {timeoutMs: 150_000});
    expect(result.exitCode).toBe(1);
    expect(result.stdout + result.stderr).toMatch(/too many items/);
    expect(await scratchDatabases()).toEqual([]);
  });
});
