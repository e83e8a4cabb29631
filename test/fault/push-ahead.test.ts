// The archive_command pgbk recommends (pgbk archive-command: a shell fast path in front of archive-push) while
// PostgreSQL drains a backlog and the look-ahead pusher archives ahead of it: kill -9 of the pusher mid-upload,
// an S3 outage under the pusher, a PUT stalled under it. The invariants hold after each: every acknowledged segment
// comes back byte for byte, nothing half-written is listed, verify is clean, a PITR brings back the committed rows.
import {existsSync, readdirSync} from 'node:fs';
import {join} from 'node:path';
import {afterAll, afterEach, beforeAll, describe, expect, inject, it} from 'vitest';
import {waitFor} from '../helpers/cluster.js';
import {checkInvariants} from './invariants.js';
import {FaultRig, hitWithin, killHard} from './rig.js';

const s3 = inject('s3');

describe('archive_command fast path and look-ahead pusher under faults (real PostgreSQL, S3 behind a fault proxy)', () => {
  let rig: FaultRig;
  let fastCommand: string;
  const walPut = {method: 'PUT', key: /^wal\//} as const;

  beforeAll(async () => {
    rig = await FaultRig.create('s3', s3, {label: 'fault-push-ahead'});
    await rig.commitAndArchive('seed', 1000);
    const backup = await rig.pgbk(['backup']);
    expect(backup.exitCode, backup.stderr).toBe(0);
    const recommended = await rig.pgbk(['archive-command', '--json']);
    expect(recommended.exitCode, recommended.stderr).toBe(0);
    // As the rig does: keep a copy of what PostgreSQL hands over, the reference for "comes back byte for byte".
    fastCommand = `cp %p ${rig.keepDir}/%f.tmp && mv ${rig.keepDir}/%f.tmp ${rig.keepDir}/%f && { ${JSON.parse(recommended.stdout).archiveCommand}; }`;
  });

  afterAll(async () => {
    await rig?.destroy();
  });

  afterEach(() => {
    rig?.proxy?.clear();
    rig?.proxy?.release();
  });

  const pushedDir = () => join(rig.cluster.dataDir, 'pg_wal', 'pgbk-spool', 'pushed');
  const setArchiveCommand = async (command: string) => {
    await rig.cluster.psql(`alter system set archive_command = '${command.replaceAll("'", "''")}'`);
    await rig.cluster.reload();
  };

  /** Archiving off ('false'), no pusher left, then `count` segments with rows in each: a backlog of .ready files. */
  async function backlog(label: string, count: number): Promise<string> {
    await setArchiveCommand('false');
    await waitFor(async () => !existsSync(join(pushedDir(), '.pusher.lock')), {timeoutMs: 30_000, intervalMs: 100, what: 'no pusher running'});
    let last = '';
    for (let i = 0; i < count; i++) {
      await rig.commit(`${label} ${i}`, 200);
      last = await rig.switchWal();
    }
    expect(rig.readyFiles().length).toBeGreaterThanOrEqual(count);
    return last;
  }

  /** Nothing of the pusher outlives the drain: no lock, no marker, no busy file. */
  async function noLeftovers(): Promise<void> {
    await waitFor(async () => !existsSync(join(pushedDir(), '.pusher.lock')), {timeoutMs: 30_000, intervalMs: 100, what: 'the pusher to exit'});
    expect(readdirSync(pushedDir()).filter((name) => /^[0-9A-F]{24}/.test(name))).toEqual([]);
  }

  it('kill -9 of the pusher while it uploads: PostgreSQL waits at most a few seconds, then archive-push takes over; nothing lost', async () => {
    const last = await backlog('kill pusher', 6);
    // Hold the pusher's uploads so that it is certainly mid-upload when killed.
    const stall = rig.proxy!.inject({...walPut, fault: 'stall-request', times: Infinity});
    await setArchiveCommand(fastCommand);
    // Held: archive-push's own upload of the first segment, and at least one of the pusher's.
    const busy = () => existsSync(pushedDir()) ? readdirSync(pushedDir()).filter((name) => name.endsWith('.busy')) : [];
    await hitWithin(waitFor(async () => rig.pgbkPids('archive-push-ahead').length > 0 && busy().length > 0 && stall.holding >= 2,
      {timeoutMs: 60_000, intervalMs: 50, what: 'a pusher mid-upload'}), 'a pusher mid-upload');
    for (const pid of rig.pgbkPids('archive-push-ahead')) await killHard(pid);
    rig.proxy!.clear();
    rig.proxy!.release();
    const started = Date.now();
    await rig.waitArchived(last, 120_000);
    // Bounded: the shell gives up on a dead pusher's busy file after 15 s at most, archive-push sees the pusher gone.
    expect(Date.now() - started).toBeLessThan(90_000);
    await noLeftovers();
    const report = await checkInvariants(rig, {pitr: true});
    expect(report.provenNow.length).toBeGreaterThanOrEqual(6);
  });

  it('an S3 outage under the pusher: nothing is acknowledged that is not stored; archiving resumes after it', async () => {
    const last = await backlog('outage', 4);
    const outage = rig.proxy!.inject({...walPut, fault: '500', times: Infinity});
    await setArchiveCommand(fastCommand);
    await hitWithin(waitFor(async () => outage.fired > 0, {timeoutMs: 60_000, intervalMs: 50, what: 'an upload into the outage'}), 'an upload into the outage');
    // A failure of pgbk's own now (archive_command 'false' failed before, too).
    await rig.waitFailed(rig.readyFiles()[0]!, await rig.status(), 1, 120_000);
    // Every segment PostgreSQL took for archived during the outage is stored (the invariants read each one back).
    expect((await rig.status()).lastArchived! < rig.readyFiles()[0]!).toBe(true);
    rig.proxy!.clear();
    await rig.commit('after outage', 10);
    await rig.switchWal();
    await rig.waitArchived(last, 180_000);
    await noLeftovers();
    await checkInvariants(rig, {pitr: true});
  });

  it('an edited policy voids the markers: archive-push checks again rather than trusting the shell marker', async () => {
    const last = await backlog('edited policy', 4);
    // Uploads held: the pusher writes markers only once they are stored, so it is mid-batch when the policy changes.
    const stall = rig.proxy!.inject({...walPut, fault: 'stall-request', ms: 3000, then: 'deliver', times: Infinity});
    await setArchiveCommand(fastCommand);
    await hitWithin(waitFor(async () => stall.holding > 0, {timeoutMs: 60_000, intervalMs: 20, what: 'a held upload'}), 'a held upload');
    // Same repository, file rewritten (a comment): the shell markers no longer match, Node markers still do.
    const {appendFileSync} = await import('node:fs');
    appendFileSync(rig.policyFile, '\n# edited during the drain\n');
    rig.proxy!.clear();
    await rig.waitArchived(last, 120_000);
    await noLeftovers();
    await checkInvariants(rig, {pitr: true});
  });
});
