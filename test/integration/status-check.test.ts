// pgbk status and pgbk check on a real cluster archiving through pgbk into a local repository: healthy, then
// broken in the ways users fear (a gap in the archive, a failing archiver, archive_mode off, a repository that
// cannot be reached, a policy file that does not parse), each reported with the right exit code.

import {execFileSync} from 'node:child_process';
import {readdirSync, rmSync, writeFileSync} from 'node:fs';
import {join} from 'node:path';
import {afterAll, beforeAll, describe, expect, inject, it} from 'vitest';
import {setupArchiving, switchAndWaitArchived, writePolicy, type ArchivingSetup} from '../helpers/pitr.js';
import {chownToPostgres, createCluster, freePort, makeTempDir, pgBinDir, waitFor} from '../helpers/cluster.js';
import {pgbkBin, runPgbk} from '../helpers/cli.js';
import {VERSION} from '../../src/version.js';

describe('status and check', () => {
  let setup: ArchivingSetup;
  let backupId: string;
  let scratch: string;
  const postgresSection = () => ({url: setup.cluster.url, bin_dir: pgBinDir()});

  beforeAll(async () => {
    setup = await setupArchiving('local', inject('s3'));
    await setup.cluster.psql(`create table t (id int); insert into t select generate_series(1, 1000)`);
    const backup = await setup.pgbk(['backup']);
    expect(backup.exitCode, backup.stderr).toBe(0);
    backupId = backup.stdout.trim();
    for (let step = 0; step < 3; step++) {
      await setup.cluster.psql(`insert into t values (${step})`);
      await switchAndWaitArchived(setup.cluster);
    }
    scratch = makeTempDir('pgbk-status-');
  });

  afterAll(async () => {
    await setup?.destroy();
  });

  it('status: a healthy archiving cluster with a backup meets its RPO (exit 0)', async () => {
    const result = await setup.pgbk(['status', '--json']);
    expect(result.exitCode, result.stderr + result.stdout).toBe(0);
    const doc = JSON.parse(result.stdout);
    expect(doc.ok).toBe(true);
    const [status] = doc.policies;
    expect(status.policy).toBe('it');
    expect(status.lastBackup.id).toBe(backupId);
    expect(status.archive.lastSegment).toMatch(/^[0-9A-F]{24}$/);
    expect(status.archive.ageSeconds).toBeLessThan(120);
    expect(status.archiver.failing).toBe(false);
    expect(status.archiver.lastArchivedWal).toBe(status.archive.lastSegment);
    expect(status.server).toMatchObject({reachable: true, inRecovery: false});
    expect(status.replication).toEqual({role: 'primary', standbys: []});
    expect(status.gap).toBeNull();
    expect(status.window.earliestTime).not.toBeNull();
    expect(status.objectives.rpo.status).toBe('met');
    expect(status.objectives.rto.status).toBe('unknown');
    expect(status.problems).toEqual([]);

    const human = await setup.pgbk(['status']);
    expect(human.exitCode).toBe(0);
    expect(human.stdout).toMatch(/^POLICY\s+STRATEGY/);
    expect(human.stdout).toContain(backupId);
    expect(human.stdout).toMatch(/RPO\s+met/);
  });

  it('check: every check passes on the healthy cluster, including an archive round trip (exit 0)', async () => {
    const result = await setup.pgbk(['check']);
    expect(result.exitCode, result.stdout + result.stderr).toBe(0);
    const lines = result.stdout.trim().split('\n').slice(1); // the first line names the policy
    expect(lines.map((line) => line.split(/\s+/)[0])).toEqual(lines.map(() => 'ok'));
    for (const name of ['wal_level', 'archive_mode', 'archive_command', 'max_wal_senders', 'repository', 'archive round trip']) {
      expect(result.stdout).toMatch(new RegExp(`^ok\\s+${name}`, 'm'));
    }
    const json = await setup.pgbk(['check', '--json']);
    expect(json.exitCode).toBe(0);
    const doc = JSON.parse(json.stdout);
    expect(doc.ok).toBe(true);
    expect(doc.policies[0].checks.every((check: {status: string}) => check.status === 'ok')).toBe(true);
    // the probe leaves nothing behind
    expect(readdirSync(join(setup.repoDir!, 'check'))).toEqual([]);
  });

  it('check: the dump strategy skips the archiving checks', async () => {
    const repoDir = join(scratch, 'dump-repo');
    execFileSync('mkdir', ['-p', repoDir]);
    chownToPostgres(repoDir);
    const file = writePolicy(scratch, 'dumps', {strategy: 'dump', postgres: postgresSection(), repository: {url: `file://${repoDir}`}});
    const result = await runPgbk(['check', '--policy', file]);
    expect(result.exitCode, result.stdout + result.stderr).toBe(0);
    expect(result.stdout).toMatch(/^ok\s+pg_dump/m);
    expect(result.stdout).not.toMatch(/archive_mode/);
  });

  it('status without --policy reports every policy in the --policies dir', async () => {
    const dir = join(scratch, 'policies');
    execFileSync('mkdir', ['-p', dir]);
    chownToPostgres(dir);
    const emptyRepo = join(scratch, 'empty-repo');
    execFileSync('mkdir', ['-p', emptyRepo]);
    chownToPostgres(emptyRepo);
    writePolicy(dir, 'alpha', {strategy: 'pitr', postgres: postgresSection(), repository: {url: setup.repoUrl}});
    writePolicy(dir, 'beta', {strategy: 'pitr', postgres: postgresSection(), repository: {url: `file://${emptyRepo}`}});
    const closedPort = await freePort();
    writePolicy(dir, 'gamma', {strategy: 'pitr', postgres: {url: `postgresql://postgres@127.0.0.1:${closedPort}/postgres`}, repository: {url: setup.repoUrl}});
    const result = await runPgbk(['status', '--json', '--policies', dir]);
    const doc = JSON.parse(result.stdout);
    expect(doc.policies.map((p: {policy: string}) => p.policy)).toEqual(['alpha', 'beta', 'gamma']);
    expect(doc.policies[0].ok).toBe(true);
    expect(doc.policies[1].ok).toBe(false);
    expect(doc.policies[1].objectives.rpo.reason).toMatch(/no base backup/);
    // an unreachable server is reported, not a crash; the repository side is still shown
    expect(doc.policies[2].server.reachable).toBe(false);
    expect(doc.policies[2].problems[0]).toMatch(/^server unreachable: cannot connect to postgresql:\/\/postgres@127.0.0.1:\d+\/postgres/);
    expect(doc.policies[2].lastBackup.id).toBe(backupId);
    expect(result.exitCode).toBe(1);
    expect(result.stderr).toMatch(/policies beta, gamma/);
  });

  it('status reports a gap in the WAL archive as "point-in-time recovery broken since" (exit 1)', async () => {
    // A copy of the repository with a segment in the middle removed; the live one stays whole.
    const copy = join(scratch, 'gap-repo');
    execFileSync('cp', ['-a', setup.repoDir!, copy]);
    const segments = (readdirSync(join(copy, 'wal'), {recursive: true}) as string[])
      .filter((path) => /\/[0-9A-F]{24}-[0-9a-f]{64}\.(gz|zst)$/.test(path)).sort();
    const listed = JSON.parse((await setup.pgbk(['list', '--json'])).stdout);
    const walStart = (await readManifestWalStart(setup.repoDir!, listed.backups[0].id));
    const after = segments.filter((path) => path.split('/').at(-1)!.slice(0, 24) > walStart);
    expect(after.length).toBeGreaterThanOrEqual(3);
    const victim = after[1]!;
    rmSync(join(copy, 'wal', victim));
    const file = writePolicy(scratch, 'gappy', {strategy: 'pitr', postgres: postgresSection(), repository: {url: `file://${copy}`}});
    const result = await runPgbk(['status', '--json', '--policy', file]);
    expect(result.exitCode).toBe(1);
    const [status] = JSON.parse(result.stdout).policies;
    expect(status.gap.missing).toBe(victim.split('/').at(-1)!.slice(0, 24));
    expect(status.gap.since).not.toBeNull();
    expect(status.problems.join('\n')).toMatch(/point-in-time recovery broken since \d{4}-\d\d-\d\dT/);
    expect(status.objectives.rpo.status).toBe('missed');
    const human = await runPgbk(['status', '--policy', file]);
    expect(human.stdout).toMatch(/PROBLEM: point-in-time recovery broken since/);
  });

  it('check: archive_mode off fails with the postgresql.conf line to write (exit 1)', async () => {
    const cluster = await createCluster({conf: {wal_level: 'replica', archive_mode: 'off', max_wal_senders: 4}});
    try {
      const repoDir = join(scratch, 'off-repo');
      execFileSync('mkdir', ['-p', repoDir]);
      chownToPostgres(repoDir);
      const file = writePolicy(scratch, 'off', {strategy: 'pitr', postgres: {url: cluster.url, bin_dir: pgBinDir()}, repository: {url: `file://${repoDir}`}});
      const result = await runPgbk(['check', '--policy', file]);
      expect(result.exitCode).toBe(1);
      expect(result.stdout).toMatch(/^FAIL\s+archive_mode\s+archive_mode = off/m);
      expect(result.stdout).toContain('in postgresql.conf: archive_mode = on');
      expect(result.stdout).toMatch(/^FAIL\s+archive_command/m);
      // pgbk (and Node.js, when outside the standard PATH directories) by absolute path: the server's PATH is not ours
      // (behind the shell fast path for segments the look-ahead pusher archived: what pgbk archive-command prints)
      const fix = /archive_command = '(m=pg_wal\/pgbk-spool\/pushed\/%f; [^']*)'/.exec(result.stdout);
      expect(fix, result.stdout).not.toBeNull();
      expect(fix![1]).toContain(`exec ${process.execPath} ${pgbkBin} archive-push --policy ${file} %p; fi`);
      expect(result.stdout).toMatch(/^skip\s+archive round trip/m);
      expect(result.stdout).toMatch(new RegExp(`^ok\\s+pgbk\\s+pgbk ${VERSION.replace(/\./g, '\\.')} \\(${pgbkBin}\\) on Node\\.js ${process.version}`, 'm'));
      expect(result.stdout).toMatch(/^ok\s+pg_basebackup\s+\S+ \(pg_basebackup \(PostgreSQL\) \d+/m);
      expect(result.stderr).toMatch(/pgbk: error: \d+ checks failed: off: archive_mode/);

      // the recommended command, as is, archives: the round trip passes once archive_mode is on
      await cluster.psql(`alter system set archive_mode = 'on'`);
      await cluster.psql(`alter system set archive_command = '${fix![1]!.replace(/'/g, "''")}'`);
      await cluster.restart();
      expect((await runPgbk(['init', '--policy', file])).exitCode).toBe(0);
      const fixed = await runPgbk(['check', '--policy', file]);
      expect(fixed.stdout).toMatch(/^ok\s+archive round trip/m);
      expect(fixed.exitCode, fixed.stdout).toBe(0);

      // postgres.data_dir must be the server's data_directory
      const policyWith = (dataDir: string) => writePolicy(scratch, 'off', {strategy: 'pitr', postgres: {url: cluster.url, bin_dir: pgBinDir(), data_dir: dataDir}, repository: {url: `file://${repoDir}`}});
      const right = await runPgbk(['check', '--policy', policyWith(cluster.dataDir)]);
      expect(right.stdout).toMatch(new RegExp(`^ok\\s+data_dir\\s+postgres\\.data_dir = ${cluster.dataDir} is the server's data_directory`, 'm'));
      expect(right.exitCode, right.stdout).toBe(0);
      const wrong = await runPgbk(['check', '--policy', policyWith('/var/lib/postgresql/elsewhere')]);
      expect(wrong.exitCode).toBe(1);
      expect(wrong.stdout).toContain(`FAIL  data_dir           postgres.data_dir = /var/lib/postgresql/elsewhere, but the server's data_directory is ${cluster.dataDir}`);
      expect(wrong.stdout).toContain(`fix: in the policy: postgres.data_dir: ${cluster.dataDir} (or remove the key)`);
    } finally {
      await cluster.destroy();
    }
  });

  it('check: a syntactically broken policy file is bad input (exit 2), like nginx -t', async () => {
    const file = join(scratch, 'broken.yaml');
    writeFileSync(file, 'strategy: pitr\npostgres:\n  url: [unclosed\n', {mode: 0o644});
    chownToPostgres(file);
    const result = await runPgbk(['check', '--policy', file]);
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toMatch(/broken\.yaml:\d+:\d+: YAML syntax error/);
    expect(result.stdout).toBe('');
  });

  it('check: an unreachable repository fails and names it (exit 1)', async () => {
    const closedPort = await freePort();
    const file = writePolicy(scratch, 'nos3', {
      strategy: 'pitr', postgres: postgresSection(),
      repository: {url: 's3://nowhere/prefix', endpoint: `http://127.0.0.1:${closedPort}`, region: 'us-east-1', force_path_style: true, access_key_id: 'x', secret_access_key: 'y'},
    });
    const started = Date.now();
    const result = await runPgbk(['check', '--policy', file], {timeoutMs: 100_000});
    expect(result.exitCode).toBe(1);
    expect(result.stdout).toMatch(new RegExp(`^FAIL\\s+repository\\s+repository s3://nowhere/prefix/ at http://127.0.0.1:${closedPort}`, 'm'));
    expect(result.stdout).toMatch(/^skip\s+archive round trip/m);
    expect(Date.now() - started).toBeLessThan(90_000);
  });

  it('status reports a failing archiver (exit 1)', async () => {
    await setup.cluster.psql(`alter system set archive_command = 'false'`);
    await setup.cluster.reload();
    await setup.cluster.psql(`insert into t values (42)`);
    await setup.cluster.psql(`select pg_switch_wal()`);
    await waitFor(async () => {
      const [row] = await setup.cluster.query<{failed: string}>(`select failed_count::text as failed from pg_stat_archiver`);
      return Number(row!.failed) > 0;
    }, {timeoutMs: 60_000, intervalMs: 200, what: 'an archiver failure'});
    const result = await setup.pgbk(['status', '--json']);
    expect(result.exitCode).toBe(1);
    const [status] = JSON.parse(result.stdout).policies;
    expect(status.archiver.failing).toBe(true);
    expect(status.objectives.rpo.status).toBe('missed');
    expect(status.problems.join('\n')).toMatch(/archiver failing: [0-9A-F]{24} failed at/);
    const human = await setup.pgbk(['status']);
    expect(human.stdout).toMatch(/FAILING/);
    await setup.cluster.psql(`alter system reset archive_command`);
    await setup.cluster.reload();
  });
});

async function readManifestWalStart(repoDir: string, backupId: string): Promise<string> {
  const {readFileSync} = await import('node:fs');
  return JSON.parse(readFileSync(join(repoDir, 'backups', backupId, 'manifest.json'), 'utf8')).walStart;
}
