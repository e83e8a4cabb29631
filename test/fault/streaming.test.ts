// WAL streaming under faults: an S3 outage while the receiver runs (pg_receivewal keeps receiving, uploads fail and
// are retried, and once S3 answers again the streamed position catches up), then kill -9 of the primary: a row
// committed during the outage is restored from the repository.

import {join} from 'node:path';
import {afterAll, beforeAll, describe, expect, inject, it} from 'vitest';
import {freePort, makeTempDir, pgBinDir, runAsPostgres, startExisting, waitFor, type Cluster} from '../helpers/cluster.js';
import {restoreAndStart, type ArchivingSetup, type RestoredServer} from '../helpers/pitr.js';
import {FaultRig, rowsOf, type Spawned} from './rig.js';
import {appendFileSync, readFileSync, writeFileSync} from 'node:fs';
import {parse, stringify} from 'yaml';

const s3 = inject('s3');

describe('WAL streaming under an S3 outage', () => {
  let rig: FaultRig;
  let receiver: Spawned | undefined;
  let restored: RestoredServer | undefined;

  const streamed = async () => JSON.parse((await rig.pgbk(['status', '--json', '--no-commit-times'])).stdout).policies[0].streaming;
  const currentSegment = async () => (await rig.cluster.query<{s: string}>('select pg_walfile_name(pg_current_wal_lsn()) as s'))[0]!.s;

  beforeAll(async () => {
    const spool = makeTempDir('pgbk-spool-');
    rig = await FaultRig.create('s3', s3, {label: 'stream', policy: {wal_streaming: {enabled: true, slot: 'pgbk_fault', flush_interval: '1s', spool_dir: spool}}});
    const backup = await rig.pgbk(['backup']);
    expect(backup.exitCode, backup.stderr).toBe(0);
  }, 240_000);

  afterAll(async () => {
    receiver?.kill('SIGKILL');
    await restored?.stop().catch(() => undefined);
    await rig?.destroy();
  });

  it('uploads resume after the outage; a row committed during it is restored after kill -9 of the primary', async () => {
    receiver = rig.spawn(['wal-receive']);
    await waitFor(async () => (await rig.cluster.query<{active: boolean}>(`select active from pg_replication_slots where slot_name = 'pgbk_fault'`))[0]?.active,
      {timeoutMs: 60_000, intervalMs: 200, what: 'the receiver on its slot'});
    await rig.commit('before');
    let segment = await currentSegment();
    await waitFor(async () => {
      const st = await streamed();
      return st?.segment === segment && st.lagBytes <= 64;
    }, {timeoutMs: 60_000, intervalMs: 500, what: 'the first rows streamed'});

    // S3 goes away: every request answers 503.
    const from = rig.proxy!.requests.length;
    rig.proxy!.inject({fault: '503', times: Infinity});
    await rig.commit('during the outage');
    const during = rig.expectedRows;
    await new Promise((resolve) => setTimeout(resolve, 6000));
    expect(rig.proxy!.since(from).some((line) => /\.stream-.* 503$/.test(line)), rig.proxy!.since(from).slice(-5).join('\n')).toBe(true);
    // The receiver and pg_receivewal are unaffected: the slot is still in use.
    expect(() => process.kill(receiver!.pid, 0)).not.toThrow();
    expect((await rig.cluster.query<{active: boolean}>(`select active from pg_replication_slots where slot_name = 'pgbk_fault'`))[0]?.active).toBe(true);

    rig.proxy!.clear();
    segment = await currentSegment();
    await waitFor(async () => {
      const st = await streamed();
      return st?.segment === segment && st.lagBytes <= 64;
    }, {timeoutMs: 120_000, intervalMs: 1000, what: 'the streamed position to catch up after the outage'});

    const postmaster = Number(readFileSync(join(rig.cluster.dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
    process.kill(postmaster, 'SIGKILL');
    await waitFor(() => !rig.cluster.isRunning(), {timeoutMs: 30_000, what: 'the postmaster to die'});
    receiver.kill('SIGTERM');
    await receiver.result;
    receiver = undefined;

    restored = await restoreAndStart({pgbk: (args: string[]) => rig.pgbk(args, {timeoutMs: 180_000})} as unknown as ArchivingSetup, ['--latest']);
    expect(await rowsOf(restored.url)).toEqual(during);
  }, 300_000);
});

describe('WAL streaming across a failover', () => {
  it('follows the timeline switch to the new primary (slot created there); rows written after it are restored once it is killed', async () => {
    const spool = makeTempDir('pgbk-spool-');
    const rig = await FaultRig.create('s3', s3, {label: 'failover', policy: {wal_streaming: {enabled: true, slot: 'pgbk_fo', flush_interval: '1s', spool_dir: spool}}});
    let standby: Cluster | undefined;
    let receiver: Spawned | undefined;
    let restoredServer: RestoredServer | undefined;
    const slotActive = async (cluster: Cluster) => (await cluster.query<{active: boolean}>(`select active from pg_replication_slots where slot_name = 'pgbk_fo'`))[0]?.active === true;
    const caughtUp = async (cluster: Cluster) => {
      const [{s}] = await cluster.query<{s: string}>('select pg_walfile_name(pg_current_wal_lsn()) as s');
      const st = JSON.parse((await rig.pgbk(['status', '--json', '--no-commit-times'])).stdout).policies[0].streaming;
      return st?.segment === s && st.lagBytes <= 64;
    };
    try {
      expect((await rig.pgbk(['backup'])).exitCode).toBe(0);
      const dataDir = join(makeTempDir('pgbk-standby-'), 'data');
      const made = await runAsPostgres(join(pgBinDir(), 'pg_basebackup'),
        ['-h', '127.0.0.1', '-p', String(rig.cluster.port), '-U', 'postgres', '-D', dataDir, '-R', '-X', 'stream', '--checkpoint', 'fast', '--no-sync']);
      expect(made.exitCode, made.stderr).toBe(0);
      appendFileSync(join(dataDir, 'postgresql.conf'), `cluster_name = 'standby1'\n`);
      standby = await startExisting(dataDir, await freePort());

      receiver = rig.spawn(['wal-receive']);
      await waitFor(() => slotActive(rig.cluster), {timeoutMs: 60_000, intervalMs: 200, what: 'the receiver on the primary'});
      await rig.commit('timeline 1');
      await waitFor(() => caughtUp(rig.cluster), {timeoutMs: 60_000, intervalMs: 500, what: 'timeline 1 streamed'});
      receiver.kill('SIGTERM');
      await receiver.result;

      // Failover: the primary stops, the standby is promoted, the policy now names it (as HAProxy would route).
      await rig.cluster.stop('fast');
      await standby.query('select pg_promote()');
      await standby.waitUntilPromoted();
      const doc = parse(readFileSync(rig.policyFile, 'utf8')) as {postgres: {url: string}};
      doc.postgres.url = `postgresql://postgres@127.0.0.1:${standby.port}/postgres`;
      writeFileSync(rig.policyFile, stringify(doc));

      receiver = rig.spawn(['wal-receive']);
      await waitFor(() => slotActive(standby!), {timeoutMs: 60_000, intervalMs: 200, what: 'the receiver on the new primary (slot created there)'});
      await standby.psql(`insert into items (label, payload) values ('timeline 2', 'after the failover')`);
      const expected = await rowsOf(standby.url);
      await waitFor(() => caughtUp(standby!), {timeoutMs: 60_000, intervalMs: 500, what: 'timeline 2 streamed'});

      const postmaster = Number(readFileSync(join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
      process.kill(postmaster, 'SIGKILL');
      await waitFor(() => !standby!.isRunning(), {timeoutMs: 30_000, what: 'the new primary to die'});
      receiver.kill('SIGTERM');
      const out = await receiver.result;
      receiver = undefined;
      expect(out.stdout).not.toContain('upload-failed');

      restoredServer = await restoreAndStart({pgbk: (args: string[]) => rig.pgbk(args, {timeoutMs: 180_000})} as unknown as ArchivingSetup, ['--latest', '--target-timeline', '2']);
      expect(await rowsOf(restoredServer.url)).toEqual(expected);
    } finally {
      receiver?.kill('SIGKILL');
      await restoredServer?.stop().catch(() => undefined);
      await standby?.destroy();
      await rig.destroy();
    }
  }, 300_000);
});
