// WAL streaming into the S3 repository (pgbk wal-receive): a primary that never switches segments on its own
// (archive_timeout off), a heartbeat row written 2 s before kill -9 of the postmaster, and a restore of the latest
// point from the repository alone: the heartbeat is there (RPO under 5 s). Without the streamed objects the same
// restore stops at the last archived segment and the heartbeat is lost.

import {existsSync, readFileSync} from 'node:fs';
import {join} from 'node:path';
import {execa, type ResultPromise} from 'execa';
import {afterAll, beforeAll, describe, expect, inject, it} from 'vitest';
import {restoreAndStart, setupArchiving, type ArchivingSetup, type RestoredServer} from '../helpers/pitr.js';
import {isRoot, makeTempDir, waitFor, queryAt} from '../helpers/cluster.js';
import {baseEnv, pgbkBin} from '../helpers/cli.js';
import {SchedulerProcess} from '../helpers/scheduler.js';
import {loadPolicy} from '../../src/policy/load.js';
import {openRepository} from '../../src/storage/open.js';
import {findArchived} from '../../src/wal/archive.js';
import {findStreamed} from '../../src/wal/receive-store.js';

const s3 = inject('s3');

describe('WAL streaming into the repository', () => {
  let setup: ArchivingSetup;
  let spool: string;
  let receiver: ResultPromise | undefined;
  let receiverOutput = '';
  const restored: RestoredServer[] = [];

  /** pgbk wal-receive as postgres, in the background. */
  function startReceiver(): void {
    const env = Object.entries(baseEnv()).map(([name, value]) => `${name}=${value}`);
    const argv = ['env', '-i', ...env, process.execPath, pgbkBin, 'wal-receive', '--policy', setup.policyFile];
    receiver = isRoot ? execa('runuser', ['-u', 'postgres', '--', ...argv], {reject: false, all: true}) : execa(argv[0]!, argv.slice(1), {reject: false, all: true});
    receiver.all?.on('data', (chunk: Buffer) => { receiverOutput += chunk.toString(); });
  }

  /** SIGTERM to the receiver's node process (its pid lock), then wait for it to end. */
  async function stopReceiver(): Promise<void> {
    if (!receiver) return;
    const pid = Number(readFileSync(join(spool, 'pgbk-wal-receive.pid'), 'utf8').trim());
    process.kill(pid, 'SIGTERM');
    await receiver;
    receiver = undefined;
  }

  beforeAll(async () => {
    spool = makeTempDir('pgbk-spool-');
    setup = await setupArchiving('s3', s3, {
      conf: {archive_timeout: 0},
      policy: {wal_streaming: {enabled: true, slot: 'pgbk_stream', flush_interval: '1s', spool_dir: spool}},
    });
    const backup = await setup.pgbk(['backup']);
    expect(backup.exitCode, backup.stderr).toBe(0);
  }, 240_000);

  afterAll(async () => {
    if (receiver) await stopReceiver().catch(() => undefined);
    for (const server of restored) await server.stop().catch(() => undefined);
    await setup?.destroy();
  });

  const slotActive = async () => (await setup.cluster.query<{active: boolean}>(`select active from pg_replication_slots where slot_name = 'pgbk_stream'`))[0]?.active === true;
  const lockPid = () => Number(readFileSync(join(spool, 'pgbk-wal-receive.pid'), 'utf8').trim());
  const alive = (pid: number) => {
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  };

  it('pgbk schedule runs the receiver, restarts it after kill -9, and stops it at shutdown; check says whether it streams', async () => {
    const before = await setup.pgbk(['check']);
    expect(before.stdout).toMatch(/WARN\s+wal streaming\s+the replication slot pgbk_stream does not exist yet/);
    expect(before.exitCode, before.stdout).toBe(0);
    const scheduler = new SchedulerProcess(['--policies', setup.dir]);
    try {
      await waitFor(slotActive, {timeoutMs: 60_000, intervalMs: 200, what: `the scheduler's receiver on its slot\n${scheduler.describe()}`});
      const first = lockPid();
      process.kill(first, 'SIGKILL');
      await waitFor(() => existsSync(join(spool, 'pgbk-wal-receive.pid')) && lockPid() !== first && alive(lockPid()),
        {timeoutMs: 60_000, intervalMs: 200, what: `a new receiver\n${scheduler.describe()}`});
      expect(scheduler.lines.some((line) => line.event === 'warning' && String(line.message).includes('pgbk wal-receive exited'))).toBe(true);
      // The new receiver streams: a row written now reaches the repository.
      await setup.cluster.psql('create table after_restart (id int); insert into after_restart values (1)');
      const [{segment}] = await setup.cluster.query<{segment: string}>('select pg_walfile_name(pg_current_wal_lsn()) as segment');
      await waitFor(async () => {
        const status = JSON.parse((await setup.pgbk(['status', '--json', '--no-commit-times'])).stdout).policies[0];
        return status.streaming?.segment === segment && status.streaming.slotActive && status.streaming.lagBytes <= 64;
      }, {timeoutMs: 60_000, intervalMs: 500, what: `streaming after the restart\n${scheduler.describe()}`});
      const second = lockPid();
      scheduler.signal('SIGTERM');
      expect(await scheduler.waitExit(60_000)).toBe(0);
      expect(alive(second)).toBe(false);
      expect(existsSync(join(spool, 'pgbk-wal-receive.pid'))).toBe(false);
      await waitFor(async () => !(await slotActive()), {timeoutMs: 30_000, what: 'the slot released'});
      const after = await setup.pgbk(['check', '--wait', '60']);
      expect(after.stdout).toMatch(/WARN\s+replication slots\s+pgbk_stream \(physical\) is inactive and retains \d/);
      expect(after.stdout).toMatch(/WARN\s+wal streaming\s+the slot pgbk_stream exists but nothing streams from it/);
      expect(after.exitCode, after.stdout).toBe(0);
    } finally {
      scheduler.kill();
    }
  }, 240_000);

  it('a heartbeat written 2 s before kill -9 of the primary is restored from the streamed WAL, and lost without it', async () => {
    startReceiver();
    await waitFor(slotActive,
      {timeoutMs: 60_000, intervalMs: 200, what: `the receiver on its slot\n${receiverOutput}`});

    const beat = `beat-${Date.now()}`;
    await setup.cluster.psql(`create table heartbeat (beat text, at timestamptz default clock_timestamp()); insert into heartbeat (beat) values ('${beat}')`);
    const [{segment}] = await setup.cluster.query<{segment: string}>('select pg_walfile_name(pg_current_wal_lsn()) as segment');

    // status: the streamed position and its lag.
    await waitFor(async () => {
      const status = JSON.parse((await setup.pgbk(['status', '--json', '--no-commit-times'])).stdout).policies[0];
      return status.streaming?.segment === segment && status.streaming.slotActive && status.streaming.lagBytes <= 64 ? status : undefined;
    }, {timeoutMs: 30_000, intervalMs: 500, what: 'status to show the streamed position'});

    // Ticks every 250 ms until the crash: the newest one restored measures the RPO.
    await setup.cluster.psql('create table tick (at timestamptz)');
    const tickUntil = Date.now() + 2000;
    while (Date.now() < tickUntil) {
      await setup.cluster.psql('insert into tick values (clock_timestamp())');
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
    const postmaster = Number(readFileSync(join(setup.cluster.dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
    // The machine goes: the postmaster and the receiver die at the same moment, so the receiver gets no chance
    // to upload what it received last — only what its periodic uploads (every second) already stored counts.
    const receiverPid = lockPid();
    const killedAt = Date.now();
    process.kill(postmaster, 'SIGKILL');
    process.kill(receiverPid, 'SIGKILL');
    await waitFor(() => !setup.cluster.isRunning(), {timeoutMs: 30_000, what: 'the postmaster to die'});
    await receiver;
    receiver = undefined;
    expect(receiverOutput).toContain('"event":"uploaded"');

    const policy = await loadPolicy({policy: setup.policyFile, env: process.env, cwd: process.cwd()});
    const repo = await openRepository(policy.repository);
    try {
      // The segment holding the heartbeat was never archived: only the receiver has it.
      expect(await findArchived(repo, segment)).toEqual([]);
      const streamed = await findStreamed(repo, segment);
      expect(streamed).toHaveLength(1);

      const server = await restoreAndStart(setup, ['--latest']);
      restored.push(server);
      const rows = await queryAt(server.url, 'select beat from heartbeat');
      expect(rows).toEqual([{beat}]);
      const [{last}] = await queryAt(server.url, 'select max(at) as last from tick') as Array<{last: Date}>;
      const rpoSeconds = (killedAt - last.getTime()) / 1000;
      console.log(`streaming (receiver killed with the primary): RPO ${rpoSeconds.toFixed(2)} s (newest restored tick ${last.toISOString()}, postmaster killed ${new Date(killedAt).toISOString()})`);
      expect(rpoSeconds).toBeLessThan(5);
      await server.stop();

      // A drill of the latest point proves recovery from the same streamed segment (pg_waldump reads it too).
      const drill = await setup.pgbk(['drill', '--latest', '--json']);
      expect(drill.exitCode, drill.stderr).toBe(0);
      expect(JSON.parse(drill.stdout).checks).toContainEqual(expect.objectContaining({name: 'recovery reached the target', ok: true}));

      // Without the streamed object the repository ends at the last archived segment: the heartbeat is lost.
      await repo.remove(streamed.map((object) => object.key));
      const without = await restoreAndStart(setup, ['--latest']);
      restored.push(without);
      expect(await queryAt(without.url, `select to_regclass('heartbeat') as t`)).toEqual([{t: null}]);
      console.log("without streaming: the restore ends at the last archived segment; the heartbeat and every tick are lost");
    } finally {
      await repo.close();
    }
  }, 300_000);
});
