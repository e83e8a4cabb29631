// The command line as users and scripts meet it: --json errors, help, version, durations, .yml, schedule.timezone
// and cron nicknames, where policies are looked up, policies others can write, and passwords in key=value conninfo.
// One small dump cluster (local repository) serves every case.

import {chmodSync, chownSync, mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync} from 'node:fs';
import {join} from 'node:path';
import {afterAll, beforeAll, describe, expect, inject, it} from 'vitest';
import {parse, stringify} from 'yaml';
import {runPgbk, repoRoot} from '../helpers/cli.js';
import {chownToPostgres, isRoot, makeTempDir, pgBinDir} from '../helpers/cluster.js';
import {setupArchiving, snapshot, type ArchivingSetup} from '../helpers/pitr.js';
import {SchedulerProcess} from '../helpers/scheduler.js';

const SECRET = 'Sekr1t-kv-9f3';

describe('pgbk command line', () => {
  let setup: ArchivingSetup;
  let policy: Record<string, unknown>;
  let rows: unknown;

  /** A copy of the working policy, changed by `patch`, as `<dir>/<name>`, owned by postgres. */
  const writeVariant = (dir: string, name: string, patch: Record<string, unknown> = {}, mode = 0o640): string => {
    const file = join(dir, name);
    writeFileSync(file, stringify({...policy, ...patch}), {mode});
    chmodSync(file, mode);
    chownToPostgres(file);
    return file;
  };

  beforeAll(async () => {
    setup = await setupArchiving('local', inject('s3'), {strategy: 'dump', conf: {archive_mode: 'off'}});
    policy = parse(readFileSync(setup.policyFile, 'utf8'));
    await setup.cluster.psql(`create table items (id int primary key, label text); insert into items select g, 'row ' || g from generate_series(1, 500) g`);
    const backup = await setup.pgbk(['backup']);
    expect(backup.exitCode, backup.stderr).toBe(0);
    rows = await snapshot(setup.cluster.url);
  });

  afterAll(async () => {
    await setup?.destroy();
  });

  it('--version is package.json\'s; --help of a command shows --policy and an example; commander errors say pgbk: and exit 2', async () => {
    const version = await runPgbk(['--version']);
    expect(version.stdout.trim()).toBe(JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')).version);
    const help = await runPgbk(['restore', '--help']);
    expect(help.exitCode).toBe(0);
    expect(help.stdout).toContain('--policy <name|path>');
    expect(help.stdout).toContain('--target-time <timestamp>');
    expect(help.stdout).toMatch(/Examples:\n {2}pgbk restore --policy orders/);
    const unknown = await runPgbk(['list', '--bogus']);
    expect(unknown.exitCode).toBe(2);
    expect(unknown.stderr).toBe("pgbk: error: unknown option '--bogus'\n");
    expect(unknown.stdout).toBe('');
    const json = await runPgbk(['list', '--bogus', '--json']);
    expect(json.exitCode).toBe(2);
    expect(JSON.parse(json.stdout)).toMatchObject({ok: false, error: {code: 'usage', message: "unknown option '--bogus'"}});
    const completion = await runPgbk(['completion', 'bash']);
    expect(completion.stdout).toContain('complete -F _pgbk pgbk');
  });

  it('--json: a bad policy and an unreachable repository are one JSON document each, with the usual exit codes and no secret', async () => {
    const dir = makeTempDir('pgbk-cli-json-');
    const bad = writeVariant(dir, 'bad.yaml', {retention: {weeks: 3}});
    const badResult = await runPgbk(['list', '--json', '--policy', bad]);
    expect(badResult.exitCode).toBe(2);
    const badDoc = JSON.parse(badResult.stdout);
    expect(badDoc).toEqual({ok: false, error: {code: 'policy.invalid', message: expect.stringMatching(new RegExp(`^${bad}:\\d+: retention\\.weeks: unknown key$`))}});

    const unreachable = writeVariant(dir, 'down.yaml', {
      postgres: {url: `postgresql://postgres:${SECRET}@127.0.0.1:1/postgres`},
      repository: {url: 's3://bucket/prefix', endpoint: 'http://127.0.0.1:1', region: 'us-east-1', force_path_style: true, access_key_id: 'AKIAEXAMPLE', secret_access_key: SECRET},
    }, 0o600);
    const down = await runPgbk(['list', '--json', '--policy', unreachable]);
    expect(down.exitCode).toBe(1);
    expect(JSON.parse(down.stdout)).toMatchObject({ok: false, error: {code: 'repo.unavailable', message: expect.stringContaining('127.0.0.1:1'), hint: expect.any(String)}});
    expect(down.stdout + down.stderr).not.toContain(SECRET);
    // status reports the unreachable server and repository as findings, and its document carries the error
    const status = await runPgbk(['status', '--json', '--no-commit-times', '--policy', unreachable], {timeoutMs: 120_000});
    expect(status.exitCode).toBe(1);
    const statusDoc = JSON.parse(status.stdout);
    expect(statusDoc).toMatchObject({ok: false, error: {code: 'status.objectives-missed'}, policies: [{policy: 'down'}]});
    expect(status.stdout + status.stderr).not.toContain(SECRET);
  });

  it('one duration syntax: PostgreSQL\'s min in a policy, a malformed flag refused naming it; .yml like .yaml', async () => {
    const dir = makeTempDir('pgbk-cli-dur-');
    writeVariant(dir, 'short.yml', {objectives: {rpo: '90min', rto: '1h30m'}});
    const status = await runPgbk(['status', '--json', '--no-commit-times', '--policy', 'short', '--policies', dir]);
    const doc = JSON.parse(status.stdout);
    expect(doc.policies[0].policy).toBe('short');
    expect(doc.policies[0].objectives.rpo.targetSeconds).toBe(5400);
    expect(doc.policies[0].objectives.rto.targetSeconds).toBe(5400);
    expect(status.exitCode, status.stdout).toBe(0);

    const timeout = await runPgbk(['restore', '--policy', join(dir, 'short.yml'), '--to-db', 'dbname=x', '--timeout', 'soon']);
    expect(timeout.exitCode).toBe(2);
    expect(timeout.stderr).toContain('pgbk: error: --timeout: "soon" is not a duration of 1s or more');
  });

  it('schedule.timezone and cron nicknames: validated (exit 2, file, line, key), and the scheduler reads cron times in that zone', async () => {
    const dir = makeTempDir('pgbk-cli-tz-');
    const zone = writeVariant(dir, 'zone.yaml', {schedule: {backup: '@daily', timezone: 'Europe/Atlantis'}});
    const badZone = await runPgbk(['list', '--json', '--policy', zone]);
    expect(badZone.exitCode).toBe(2);
    expect(JSON.parse(badZone.stdout).error.message).toMatch(new RegExp(`^${zone}:\\d+: schedule\\.timezone: expected an IANA time zone name such as UTC or Europe/Berlin$`));
    const reboot = writeVariant(dir, 'zone.yaml', {schedule: {backup: '@reboot'}});
    const badAlias = await runPgbk(['list', '--policy', reboot]);
    expect(badAlias.exitCode).toBe(2);
    expect(badAlias.stderr).toMatch(/zone\.yaml:\d+: schedule\.backup: expected a cron expression or one of @yearly, .*@daily/);

    // Kiritimati is UTC+14 all year: 03:00 there is 13:00 UTC, whatever the host's zone
    const schedDir = makeTempDir('pgbk-cli-sched-');
    writeVariant(schedDir, 'kiri.yml', {schedule: {backup: '0 3 * * *', expire: '@daily', timezone: 'Pacific/Kiritimati'}});
    const scheduler = new SchedulerProcess(['--policies', schedDir], {TZ: 'America/New_York'});
    try {
      const deadline = Date.now() + 30_000;
      while (scheduler.lines.filter((line) => line.event === 'scheduled').length < 2 && Date.now() < deadline && scheduler.exitCode === undefined) {
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      const backup = scheduler.lines.find((line) => line.event === 'scheduled' && line.job === 'backup');
      const expire = scheduler.lines.find((line) => line.event === 'scheduled' && line.job === 'expire');
      expect(backup?.policy, scheduler.describe()).toBe('kiri');
      expect(new Date(backup!.next as string).toISOString()).toMatch(/T13:00:00\.000Z$/);
      expect(new Date(expire!.next as string).toISOString()).toMatch(/T10:00:00\.000Z$/); // midnight at UTC+14
    } finally {
      if (scheduler.pid) scheduler.signal('SIGTERM');
      else scheduler.child.kill('SIGKILL');
      await scheduler.waitExit(30_000);
    }
  });

  it('looks a policy name up in --policies, then PGBK_POLICIES, then /etc/pgbk/policies; never in the current directory', async () => {
    const first = makeTempDir('pgbk-cli-first-');
    const second = makeTempDir('pgbk-cli-second-');
    writeVariant(first, 'app.yml');
    writeVariant(second, 'app.yaml', {strategy: 'tape'});
    const viaFlag = await runPgbk(['list', '--json', '--policy', 'app', '--policies', first], {env: {PGBK_POLICIES: second}});
    expect(viaFlag.exitCode, viaFlag.stderr).toBe(0);
    expect(JSON.parse(viaFlag.stdout).policy).toBe('app');
    const viaEnv = await runPgbk(['list', '--policy', 'app'], {env: {PGBK_POLICIES: second}});
    expect(viaEnv.exitCode).toBe(2);
    expect(viaEnv.stderr).toContain(`${join(second, 'app.yaml')}:1: strategy:`);
    // the current directory holds policies/app.yaml and app.yml: neither is used
    mkdirSync(join(first, 'policies'));
    chownToPostgres(join(first, 'policies'));
    writeVariant(join(first, 'policies'), 'app.yaml');
    const fromCwd = await runPgbk(['list', '--policy', 'app'], {cwd: first});
    expect(fromCwd.exitCode).toBe(2);
    expect(fromCwd.stderr).toContain('pgbk: error: no policy app: looked for /etc/pgbk/policies/app.yaml and /etc/pgbk/policies/app.yml');
  });

  it.runIf(isRoot)('refuses a policy file or directory others can write (pgbk as postgres, file owned by root): exit 2, path and mode', async () => {
    const dir = makeTempDir('pgbk-cli-perm-');
    const file = join(dir, 'perm.yaml');
    writeFileSync(file, stringify(policy));
    chownSync(file, 0, 0);
    chmodSync(file, 0o646);
    const open = await runPgbk(['list', '--json', '--policy', file]);
    expect(open.exitCode).toBe(2);
    expect(JSON.parse(open.stdout).error).toMatchObject({code: 'policy.invalid', hint: `chmod go-w ${file}`});
    expect(JSON.parse(open.stdout).error.message).toMatch(new RegExp(`^policy file ${file} is writable by every user \\(mode 0646\\): refused`));
    chmodSync(file, 0o644);
    const fine = await runPgbk(['list', '--json', '--policy', file]);
    expect(fine.exitCode, fine.stderr).toBe(0);
    chmodSync(dir, 0o770);
    const groupDir = await runPgbk(['list', '--policy', file]);
    expect(groupDir.exitCode).toBe(2);
    expect(groupDir.stderr).toContain(`pgbk: error: policy directory ${dir} is writable by its group (mode 0770): refused`);
    chmodSync(dir, 0o700);
  });

  it('a password in a key=value --to-db travels in PGPASSWORD: never in pg_restore\'s argv, never in output', async () => {
    // pg_restore stands in a bin_dir of its own: a script that records its argv (what ps shows) and PGPASSWORD, then
    // runs the real one; every other program is the real one.
    const dir = makeTempDir('pgbk-cli-argv-');
    const binDir = join(dir, 'bin');
    mkdirSync(binDir);
    for (const name of readdirSync(pgBinDir())) if (name !== 'pg_restore') symlinkSync(join(pgBinDir(), name), join(binDir, name));
    writeFileSync(join(binDir, 'pg_restore'), `#!/bin/sh\nprintf '%s\\n' "$@" > ${dir}/argv.log\nprintf '%s' "$PGPASSWORD" > ${dir}/env.log\nexec ${pgBinDir()}/pg_restore "$@"\n`, {mode: 0o755});
    chownToPostgres(binDir);
    const file = writeVariant(dir, 'kv.yaml', {postgres: {...(policy.postgres as object), bin_dir: binDir}});
    await setup.cluster.psql('create database copy_kv');
    const conninfo = `host=127.0.0.1 port=${setup.cluster.port} user=postgres dbname=copy_kv password='${SECRET}'`;
    const restored = await runPgbk(['restore', '--policy', file, '--to-db', conninfo]);
    expect(restored.exitCode, restored.stderr).toBe(0);
    expect(await snapshot(setup.cluster.urlFor('copy_kv'))).toEqual(rows);
    const argv = readFileSync(join(dir, 'argv.log'), 'utf8');
    expect(argv).toContain(`host=127.0.0.1 port=${setup.cluster.port} user=postgres dbname=copy_kv`);
    expect(argv).not.toContain(SECRET);
    expect(readFileSync(join(dir, 'env.log'), 'utf8')).toBe(SECRET);
    expect(restored.stdout + restored.stderr).not.toContain(SECRET);

    const failed = await runPgbk(['restore', '--json', '--policy', file, '--to-db', `host=127.0.0.1 port=1 dbname=nowhere password=${SECRET}`]);
    expect(failed.exitCode).toBe(1);
    expect(JSON.parse(failed.stdout)).toMatchObject({ok: false, error: {code: 'pg.tool', message: expect.stringContaining('pg_restore failed')}});
    expect(failed.stdout + failed.stderr).not.toContain(SECRET);
    expect(readFileSync(join(dir, 'argv.log'), 'utf8')).not.toContain(SECRET);
  });
});
