// Bad input gets a clear message naming what is wrong, exit code 2, and nothing is written.

import {existsSync, readdirSync, writeFileSync, mkdirSync} from 'node:fs';
import {join} from 'node:path';
import {afterAll, beforeAll, describe, expect, inject, it} from 'vitest';
import {setupArchiving, switchAndWaitArchived, writePolicy, type ArchivingSetup} from '../helpers/pitr.js';
import {chownToPostgres, makeTempDir} from '../helpers/cluster.js';
import {runPgbk} from '../helpers/cli.js';

describe('bad input', () => {
  let setup: ArchivingSetup;
  let scratch: string;

  beforeAll(async () => {
    setup = await setupArchiving('local', inject('s3'));
    await setup.cluster.psql(`create table t (id int); insert into t values (1)`);
    expect((await setup.pgbk(['backup'])).exitCode).toBe(0);
    await setup.cluster.psql(`insert into t values (2)`);
    await switchAndWaitArchived(setup.cluster);
    scratch = makeTempDir('pgbk-bad-');
  });

  afterAll(async () => {
    await setup?.destroy();
  });

  const repoListing = () => readdirSync(setup.repoDir!, {recursive: true}).map(String).sort();

  it.each([
    ['a time without a zone', ['--target-time', '2026-11-26 10:41:00'], /has no time zone/],
    ['a malformed time', ['--target-time', 'yesterday at ten'], /is not a timestamp/],
    ['a malformed LSN', ['--target-lsn', '12345'], /is not an LSN/],
    ['a malformed xid', ['--target-xid', 'abc'], /is not a transaction id/],
    ['two targets', ['--target-lsn', '0/1', '--latest'], /at most one recovery target/],
    ['a time before the window', ['--target-time', '2001-01-01T00:00:00Z'], /before the recoverable window/],
    ['a time after the window', ['--target-time', '2099-01-01T00:00:00Z'], /after the recoverable window/],
    ['an LSN after the archive', ['--target-lsn', 'FF/0'], /after the end of the archived WAL/],
    ['an unknown backup', ['--backup', '20000101T000000Z'], /no such backup/],
  ])('refuses %s with exit 2 and writes nothing', async (_what, args, message) => {
    const before = repoListing();
    const to = join(scratch, `restore-${Math.random().toString(36).slice(2)}`);
    const result = await setup.pgbk(['restore', '--to', to, ...args]);
    expect(result.stderr).toMatch(message);
    expect(result.stderr).toMatch(/^pgbk: error: /);
    expect(result.exitCode).toBe(2);
    expect(existsSync(to)).toBe(false);
    expect(repoListing()).toEqual(before);
  });

  it('refuses a non-empty --to without --force, and leaves its contents alone', async () => {
    const to = join(scratch, 'occupied');
    mkdirSync(to);
    writeFileSync(join(to, 'precious.txt'), 'keep me');
    chownToPostgres(to);
    const result = await setup.pgbk(['restore', '--to', to]);
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toMatch(/is not empty/);
    expect(result.stderr).toMatch(/pgbk: hint: .*--force/);
    expect(readdirSync(to)).toEqual(['precious.txt']);
  });

  it('--dry-run prints the plan and writes nothing', async () => {
    const to = join(scratch, 'dry');
    const result = await setup.pgbk(['restore', '--to', to, '--dry-run']);
    expect(result.exitCode).toBe(0);
    expect(result.stdout).toMatch(/plan \(dry run, nothing written\)/);
    expect(existsSync(to)).toBe(false);
    const json = JSON.parse((await setup.pgbk(['restore', '--to', to, '--dry-run', '--json'])).stdout);
    expect(json.fetchBytes).toBeGreaterThan(0);
    expect(json.walFrom).toMatch(/^[0-9A-F]{24}$/);
  });

  it('refuses an unknown flag and an unknown command with exit 2', async () => {
    const flag = await setup.pgbk(['restore', '--to', join(scratch, 'x'), '--frobnicate']);
    expect(flag.exitCode).toBe(2);
    expect(flag.stderr).toMatch(/unknown option '--frobnicate'/);
    const command = await runPgbk(['frobnicate']);
    expect(command.exitCode).toBe(2);
  });

  it.each(['../../etc/passwd', '/etc/passwd', 'pg_wal/000000010000000000000001', '00000001000000000000000g', 'RECOVERYXLOG', '00000002.HISTORY'])(
    'archive-get refuses the name %s with exit 2', async (name) => {
      const dest = join(scratch, 'got');
      const result = await setup.pgbk(['archive-get', name, dest]);
      expect(result.exitCode).toBe(2);
      expect(result.stderr).toMatch(/not a WAL file name/);
      expect(existsSync(dest)).toBe(false);
    });

  describe('invalid policy files', () => {
    const cases: Array<[string, string, RegExp]> = [
      ['YAML syntax', 'strategy: pitr\npostgres: {url: "postgresql://x@127.0.0.1/db"\nrepository:\n  url: file:///tmp/x\n', /bad\.yaml:\d+:\d+: YAML syntax error/],
      ['unknown key', 'strategy: pitr\npostgres:\n  url: postgresql://x@127.0.0.1/db\n  colour: blue\nrepository:\n  url: file:///tmp/x\n', /bad\.yaml:4: postgres\.colour: unknown key/],
      ['wrong type', 'strategy: pitr\npostgres:\n  url: postgresql://x@127.0.0.1/db\nrepository:\n  url: file:///tmp/x\nretention:\n  backups: many\n', /bad\.yaml:7: retention\.backups: /],
      ['unknown strategy', 'strategy: tape\npostgres:\n  url: postgresql://x@127.0.0.1/db\nrepository:\n  url: file:///tmp/x\n', /bad\.yaml:1: strategy: /],
      ['unset variable', 'strategy: pitr\npostgres:\n  url: postgresql://x@127.0.0.1/db\nrepository:\n  url: s3://b/p\n  secret_access_key: ${PGBK_TEST_UNSET_VARIABLE}\n', /bad\.yaml:6: repository\.secret_access_key: environment variable PGBK_TEST_UNSET_VARIABLE is not set/],
      ['bad cron', 'strategy: pitr\npostgres:\n  url: postgresql://x@127.0.0.1/db\nrepository:\n  url: file:///tmp/x\nschedule:\n  backup: "61 * * * *"\n', /bad\.yaml:7: schedule\.backup: /],
      ['bad repository url', 'strategy: pitr\npostgres:\n  url: postgresql://x@127.0.0.1/db\nrepository:\n  url: ftp://host/x\n', /bad\.yaml:5: repository\.url: /],
    ];
    it.each(cases)('%s: exit 2 with file, key and line', async (_what, text, message) => {
      const dir = makeTempDir('pgbk-policy-');
      const file = join(dir, 'bad.yaml');
      writeFileSync(file, text);
      chownToPostgres(file);
      const result = await runPgbk(['list', '--policy', file]);
      expect(result.stderr).toMatch(message);
      expect(result.exitCode).toBe(2);
    });

    it('a missing policy names the file it looked for', async () => {
      const dir = makeTempDir('pgbk-policy-');
      const result = await runPgbk(['list', '--policy', 'nosuch', '--policies', dir]);
      expect(result.exitCode).toBe(2);
      expect(result.stderr).toContain(join(dir, 'nosuch.yaml'));
    });
  });

  it('never prints a password from the policy', async () => {
    const dir = makeTempDir('pgbk-secret-');
    const file = writePolicy(dir, 'secret', {
      strategy: 'pitr',
      postgres: {url: 'postgresql://postgres:Sup3rS3cret@127.0.0.1:1/postgres'},
      repository: {url: `file://${join(dir, 'repo')}`},
    });
    const result = await runPgbk(['backup', '--policy', file]);
    expect(result.exitCode).toBe(1);
    expect(result.stderr).toMatch(/cannot connect/);
    expect(result.stderr + result.stdout).not.toContain('Sup3rS3cret');
  });

  // s3rver accepts any secret; a real S3 checks the signature.
  it.skipIf(inject('s3').kind === 's3rver')('a wrong S3 secret key fails with a credentials hint and never prints the key', async () => {
    const s3 = inject('s3');
    const wrongSecret = `${s3.secretAccessKey.slice(0, -6)}Wr0ng9`;
    const dir = makeTempDir('pgbk-s3-secret-');
    const file = writePolicy(dir, 'wrong-secret', {
      strategy: 'pitr',
      postgres: {url: setup.cluster.url},
      repository: {url: `s3://${s3.bucket}/wrong-secret`, endpoint: s3.endpoint, region: s3.region, force_path_style: true,
        access_key_id: s3.accessKeyId, secret_access_key: wrongSecret},
    });
    const result = await runPgbk(['list', '--policy', file]);
    expect(result.exitCode).toBe(1);
    expect(result.stderr).toMatch(/HTTP 403/);
    expect(result.stderr).toMatch(/credentials/);
    expect(result.stderr + result.stdout).not.toContain(wrongSecret);
  });
});
