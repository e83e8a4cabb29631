// pgbk schedule as a real process: second-resolution cron, backups appearing, two schedulers on one repository
// running each tick once, SIGHUP with a broken file, SIGTERM mid-backup (graceful, and with the grace period
// over), /metrics and /health, and a start-up refusal for an invalid policy.

import {existsSync, readdirSync, readFileSync, writeFileSync} from 'node:fs';
import {join} from 'node:path';
import {afterAll, beforeAll, describe, expect, inject, it} from 'vitest';
import {repoRoot, runPgbk} from '../helpers/cli.js';
import {freePort, makeTempDir, waitFor, chownToPostgres} from '../helpers/cluster.js';
import {SchedulerProcess} from '../helpers/scheduler.js';
import {setupArchiving, writePolicy, type ArchivingSetup} from '../helpers/pitr.js';
import {LocalRepository} from '../../src/storage/local/local-repository.js';

/** What the repository shows: every backups/<id>/ folder that holds objects holds a manifest. */
async function assertNoUnfinishedBackup(repoDir: string): Promise<void> {
  const folders = new Map<string, string[]>();
  for await (const object of new LocalRepository(repoDir).list('backups/')) {
    const [, id, name] = object.key.split('/');
    folders.set(id!, [...(folders.get(id!) ?? []), name!]);
  }
  for (const [id, names] of folders) expect(names, `backups/${id} has objects but no manifest`).toContain('manifest.json');
}

/** Temp files of interrupted writes (the local driver hides them from listings). */
function tempFiles(repoDir: string): string[] {
  const backups = join(repoDir, 'backups');
  if (!existsSync(backups)) return [];
  return readdirSync(backups).flatMap((id) => readdirSync(join(backups, id)).filter((name) => name.includes('.pgbk-tmp-')).map((name) => `${id}/${name}`));
}

async function listBackups(setup: ArchivingSetup): Promise<{id: string}[]> {
  const result = await setup.pgbk(['list', '--json']);
  expect(result.exitCode, result.stderr).toBe(0);
  return (JSON.parse(result.stdout) as {backups: {id: string}[]}).backups;
}

describe('pgbk schedule', () => {
  let setup: ArchivingSetup;
  const schedulers: SchedulerProcess[] = [];
  let first: SchedulerProcess;
  let second: SchedulerProcess;
  let port: number;
  const start = (args: string[]) => {
    const scheduler = new SchedulerProcess(args);
    schedulers.push(scheduler);
    return scheduler;
  };

  beforeAll(async () => {
    setup = await setupArchiving('local', inject('s3'), {policy: {schedule: {backup: '*/5 * * * * *'}}});
    await setup.cluster.psql('create table items as select g as id from generate_series(1, 1000) g');
  });

  afterAll(async () => {
    for (const scheduler of schedulers) scheduler.kill();
    await setup?.destroy();
  });

  it('refuses to start when a policy is invalid, naming the file (exit 2)', async () => {
    const dir = makeTempDir('pgbk-policies-');
    writePolicy(dir, 'good', {strategy: 'pitr', postgres: {url: 'postgresql://postgres@127.0.0.1:1/postgres'}, repository: {url: `file://${dir}/repo`}});
    const bad = writePolicy(dir, 'bad', {
      strategy: 'pitr', postgres: {url: 'postgresql://postgres@127.0.0.1:1/postgres'}, repository: {url: `file://${dir}/repo`},
      schedule: {backup: '61 * * * *'},
    });
    const result = await runPgbk(['schedule', '--policies', dir], {timeoutMs: 30_000});
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toContain(`${bad}:`);
    expect(result.stderr).toContain('schedule.backup: expected a cron expression');
    expect(result.stdout).toBe('');
  });

  it('takes backups at their cron times and answers /health and /metrics', async () => {
    port = await freePort();
    first = start(['--policies', setup.dir, '--listen', `127.0.0.1:${port}`]);
    await waitFor(() => first.events('success').length > 0 || first.exitCode !== undefined, {timeoutMs: 90_000, what: 'a scheduled backup'})
      .catch((error: Error) => {
        throw new Error(`${error.message}\n${first.describe()}`);
      });
    expect(first.exitCode, first.describe()).toBeUndefined();
    const backups = await listBackups(setup);
    expect(backups.length).toBeGreaterThanOrEqual(1);
    expect(backups.map((backup) => backup.id)).toContain(first.events('success')[0]!.backup);

    const health = await fetch(`http://127.0.0.1:${port}/health`);
    expect(health.status).toBe(200);
    expect(await health.json()).toMatchObject({status: 'ok', pid: first.pid, policies: [{name: 'it', jobs: {backup: '*/5 * * * * *'}}]});

    const metrics = await fetch(`http://127.0.0.1:${port}/metrics`);
    expect(metrics.status).toBe(200);
    expect(metrics.headers.get('content-type')).toContain('text/plain');
    const text = await metrics.text();
    expect(text).toMatch(/^pgbk_backups\{policy="it"\} [1-9]\d*$/m);
    expect(text).toMatch(/^pgbk_backup_bytes\{policy="it"\} [1-9]\d*$/m);
    expect(text).toMatch(/^pgbk_job_last_result\{policy="it",job="backup"\} 1$/m);
    expect(text).toMatch(/^pgbk_job_last_success_timestamp_seconds\{policy="it",job="backup"\} \d+$/m);
    expect(text).toMatch(/^pgbk_job_last_duration_seconds\{policy="it",job="backup"\} [\d.]+$/m);
    // Timestamps, not ages; build info; runs by result; the process itself.
    const archivedAt = Number(/^pgbk_wal_last_archived_timestamp_seconds\{policy="it"\} (\d+)$/m.exec(text)?.[1]);
    expect(Math.abs(archivedAt - Date.now() / 1000)).toBeLessThan(600);
    const backupAt = Number(/^pgbk_backup_last_success_timestamp_seconds\{policy="it"\} (\d+)$/m.exec(text)?.[1]);
    expect(Math.abs(backupAt - Date.now() / 1000)).toBeLessThan(600);
    expect(text).not.toMatch(/_age_seconds/);
    const version = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')).version;
    expect(text).toContain(`pgbk_build_info{version="${version}",node_version="${process.version}"} 1\n`);
    expect(Number(/^pgbk_job_runs_total\{policy="it",job="backup",result="success"\} (\d+)$/m.exec(text)?.[1])).toBeGreaterThanOrEqual(1);
    expect(text).toMatch(/^pgbk_job_runs_total\{policy="it",job="drill",result="failure"\} 0$/m);
    expect(text).toMatch(/^# TYPE pgbk_job_runs_total counter$/m);
    expect(text).toMatch(/^process_resident_memory_bytes [1-9]\d*$/m);
    expect(text).toMatch(/^process_start_time_seconds \d+$/m);
    expect(text).toMatch(/^process_cpu_seconds_total [\d.e-]+$/m);
    expect(text).toMatch(/^pgbk_objective_met\{policy="it",objective="rpo"\} 1$/m);
    expect((await fetch(`http://127.0.0.1:${port}/nope`)).status).toBe(404);

    const record = JSON.parse(readFileSync(join(setup.repoDir!, 'jobs', 'backup', 'last.json'), 'utf8'));
    expect(record).toMatchObject({job: 'backup', policy: 'it'});
    expect(Object.keys(record)).toEqual(expect.arrayContaining(['startedAt', 'finishedAt', 'ok', 'durationMs', 'exitCode']));
  });

  it('keeps the old version of a policy that breaks on SIGHUP', async () => {
    second = start(['--policies', setup.dir]);
    await waitFor(() => second.pid !== undefined || second.exitCode !== undefined, {timeoutMs: 30_000, what: 'the second scheduler'});
    expect(second.exitCode, second.describe()).toBeUndefined();
    const good = readFileSync(setup.policyFile, 'utf8');
    try {
      writeFileSync(setup.policyFile, `${good}unknown_key: 1\n`);
      second.signal('SIGHUP');
      await waitFor(() => second.lines.some((line) => line.event === 'reload' && line.level === 'error'), {timeoutMs: 20_000, what: 'reload error'});
    } finally {
      writeFileSync(setup.policyFile, good);
      chownToPostgres(setup.policyFile);
    }
    const failed = second.lines.find((line) => line.event === 'reload' && line.level === 'error')!;
    expect(failed.error).toContain(`${setup.policyFile}:`);
    expect(failed.message).toBe('kept the previous version of this policy');
    second.signal('SIGHUP');
    await waitFor(() => second.lines.some((line) => line.event === 'reload' && line.errors === 0), {timeoutMs: 20_000, what: 'clean reload'});
  });

  it('runs each tick once with two schedulers on one repository', async () => {
    const from = new Date(Date.now() + 1000).toISOString();
    const decided = (scheduler: SchedulerProcess) => new Set(
      [...scheduler.events('start'), ...scheduler.events('skipped')].map((line) => line.tick!).filter((tick) => tick > from));
    // Both schedulers have decided at least three common ticks (run, or skip because the other has it).
    await waitFor(() => [...decided(first)].filter((tick) => decided(second).has(tick)).length >= 3,
      {timeoutMs: 90_000, what: 'three ticks decided by both schedulers'}).catch((error: Error) => {
      throw new Error(`${error.message}\n${first.describe()}\n${second.describe()}`);
    });
    const starts = new Map<string, number>();
    for (const line of [...first.events('start'), ...second.events('start')]) starts.set(line.tick!, (starts.get(line.tick!) ?? 0) + 1);
    for (const [tick, count] of starts) expect(count, `runs of the tick ${tick}`).toBe(1);
    const common = [...decided(first)].filter((tick) => decided(second).has(tick));
    expect(common.some((tick) => starts.get(tick) === 1), 'a tick both raced for ran once').toBe(true);
    expect(first.exitCode).toBeUndefined();
    expect(second.exitCode).toBeUndefined();
  });

  it('lets a running backup finish on SIGTERM, then exits 0', async () => {
    const before = first.events('start').length + second.events('start').length;
    await waitFor(() => first.events('start').length + second.events('start').length > before, {timeoutMs: 60_000, what: 'a backup starting'});
    const [runner, other] = first.events('start').length > 0 && first.events('start').at(-1)!.tick! >= (second.events('start').at(-1)?.tick ?? '')
      ? [first, second] : [second, first];
    const tick = runner.events('start').at(-1)!.tick;
    runner.signal('SIGTERM');
    expect(await runner.waitExit(90_000), runner.describe()).toBe(0);
    const outcome = runner.lines.find((line) => line.tick === tick && (line.event === 'success' || line.event === 'failure'));
    expect(outcome?.event, runner.describe()).toBe('success');
    expect(runner.lines.at(-1)?.event).toBe('stopped');
    expect(runner.lines.some((line) => line.event === 'start' && line.time > runner.lines.find((l) => l.event === 'stopping')!.time)).toBe(false);
    other.signal('SIGTERM');
    expect(await other.waitExit(90_000), other.describe()).toBe(0);
    await assertNoUnfinishedBackup(setup.repoDir!);
    expect(tempFiles(setup.repoDir!)).toEqual([]);
  });

  it('stops a backup that outlives the grace period without leaving anything half written', async () => {
    const hasty = start(['--policies', setup.dir, '--grace', '0s']);
    await waitFor(() => hasty.events('start').length > 0 || hasty.exitCode !== undefined, {timeoutMs: 60_000, what: 'a backup starting'});
    expect(hasty.exitCode, hasty.describe()).toBeUndefined();
    await new Promise((resolve) => setTimeout(resolve, 1000)); // pgbk backup is connecting, or pg_basebackup streaming
    hasty.signal('SIGTERM');
    expect(await hasty.waitExit(60_000), hasty.describe()).toBe(0);
    expect(hasty.lines.at(-1)?.event).toBe('stopped');
    const outcome = hasty.lines.find((line) => line.job === 'backup' && (line.event === 'success' || line.event === 'failure'));
    expect(outcome?.event, hasty.describe()).toBe('failure');
    expect(outcome?.error).toContain('terminated by scheduler shutdown');
    // Nothing the killed run wrote is left: the scheduler removes folders without a manifest, pgbk backup fails
    // its upload (temp file removed) and removes its base.tar.gz when pg_basebackup is stopped.
    await assertNoUnfinishedBackup(setup.repoDir!);
    expect(tempFiles(setup.repoDir!)).toEqual([]);
    expect((await listBackups(setup)).length).toBeGreaterThanOrEqual(1);
    for (const scheduler of schedulers) expect(scheduler.junk, 'stdout holds only JSON lines').toEqual([]);
  });
});
