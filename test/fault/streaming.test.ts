// WAL streaming under faults: an S3 outage while the receiver runs (pg_receivewal keeps receiving, uploads fail and
// are retried, and once S3 answers again the streamed position catches up), then kill -9 of the primary: a row
// committed during the outage is restored from the repository.

import {join} from 'node:path';
import {afterAll, beforeAll, describe, expect, inject, it} from 'vitest';
import {makeTempDir, waitFor} from '../helpers/cluster.js';
import {restoreAndStart, type ArchivingSetup, type RestoredServer} from '../helpers/pitr.js';
import {FaultRig, type Spawned} from './rig.js';
import {readFileSync} from 'node:fs';

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
    const {rowsOf} = await import('./rig.js');
    expect(await rowsOf(restored.url)).toEqual(during);
  }, 300_000);
});
