// Point-in-time recovery proofs on real PostgreSQL, driven by PostgreSQL's own archive_command and
// restore_command, against a local and an S3 repository: rows recorded at each target, then changed and
// destroyed, restored, compared exactly — for every target kind, across segment switches and a timeline change.

import {existsSync} from 'node:fs';
import {join} from 'node:path';
import {afterAll, beforeAll, describe, expect, inject, it} from 'vitest';
import {restoreAndStart, setupArchiving, snapshot, switchAndWaitArchived, type ArchivingSetup, type RowSnapshot} from '../helpers/pitr.js';
import {makeTempDir, startExisting} from '../helpers/cluster.js';

interface Point {
  rows: RowSnapshot;
  time: string;
  lsn: string;
  xid: string;
  name: string;
}

describe.each(['local', 's3'] as const)('point-in-time recovery with a %s repository', (kind) => {
  let setup: ArchivingSetup;
  let backupId: string;
  const points: Point[] = [];
  let finalRows: RowSnapshot | 'absent';

  beforeAll(async () => {
    setup = await setupArchiving(kind, inject('s3'));
    const {cluster} = setup;
    await cluster.psql(`create table items (id int primary key, label text not null, qty int not null)`);
    await cluster.psql(`insert into items select g, 'before backup ' || g, g % 17 from generate_series(1, 2000) g`);
    const backup = await setup.pgbk(['backup']);
    expect(backup.stderr).toBe('');
    expect(backup.exitCode).toBe(0);
    backupId = backup.stdout.trim();
    expect(backupId).toMatch(/^\d{8}T\d{6}Z$/);

    // Three points after the backup, each in its own segment, each recorded exactly.
    for (let step = 1; step <= 3; step++) {
      await cluster.psql(`insert into items select g, 'step ${step} ' || g, g % 5 from generate_series(${step * 10000}, ${step * 10000 + 499}) g`);
      await cluster.psql(`update items set qty = qty + ${step} where id % 7 = ${step}`);
      // The xid target: one transaction whose commit is the point itself.
      const [tx] = await cluster.query<{xid: string}>(`insert into items values (${step * 10000 + 999}, 'xid row ${step}', ${step}) returning pg_current_xact_id()::text as xid`);
      const [at] = await cluster.query<{time: string; lsn: string}>(
        `select to_char(clock_timestamp() at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') as time, pg_current_wal_lsn()::text as lsn`);
      const name = `before-step-${step + 1}`;
      await cluster.psql(`select pg_create_restore_point('${name}')`);
      points.push({rows: (await snapshot(cluster.url)) as RowSnapshot, time: at!.time, lsn: at!.lsn, xid: tx!.xid, name});
      await new Promise((resolve) => setTimeout(resolve, 50));
      await switchAndWaitArchived(cluster);
    }
    // The incident: rows destroyed. The final state is what --latest must bring back.
    await cluster.psql(`delete from items where id % 3 = 0`);
    await cluster.psql(`update items set label = 'garbage'`);
    finalRows = await snapshot(cluster.url);
    await switchAndWaitArchived(cluster);
  });

  afterAll(async () => {
    await setup?.destroy();
  });

  it('lists the backup and a recoverable window that covers the recorded points', async () => {
    const listed = await setup.pgbk(['list', '--json']);
    expect(listed.exitCode).toBe(0);
    const doc = JSON.parse(listed.stdout);
    expect(doc.backups.map((b: {id: string}) => b.id)).toEqual([backupId]);
    expect(doc.backups[0].kind).toBe('base');
    expect(doc.backups[0].timeline).toBe(1);
    expect(new Date(doc.window.earliestTime).getTime()).toBeLessThanOrEqual(new Date(points[0]!.time).getTime());
    expect(new Date(doc.window.latestTime).getTime()).toBeGreaterThan(new Date(points[2]!.time).getTime());
    expect(doc.window.gap).toBeNull();
    const human = await setup.pgbk(['list']);
    expect(human.stdout).toContain(backupId);
    expect(human.stdout).toContain('recoverable window');
  });

  const targets: Array<[string, (p: Point) => string[]]> = [
    ['time', (p) => ['--target-time', p.time]],
    ['lsn', (p) => ['--target-lsn', p.lsn]],
    ['xid', (p) => ['--target-xid', p.xid]],
    ['name', (p) => ['--target-name', p.name]],
  ];
  it.each(targets)('restores to a %s target exactly (second of three points, across segment switches)', async (_kind, args) => {
    const point = points[1]!;
    // --archive-mode off: these side copies must not archive timelines of their own into the repository.
    const restored = await restoreAndStart(setup, [...args(point), '--archive-mode', 'off']);
    try {
      expect(restored.result.stdout).toContain(`restored backup ${backupId}`);
      expect(restored.result.stdout).toMatch(/promoted on timeline 2/);
      expect(await snapshot(restored.url)).toEqual(point.rows);
    } finally {
      await restored.stop();
    }
  });

  it('restores to the latest archived state by default, started by plain pg_ctl', async () => {
    const dataDir = join(makeTempDir('pgbk-restored-'), 'data');
    const result = await setup.pgbk(['restore', '--to', dataDir, '--archive-mode', 'off']);
    expect(result.exitCode, result.stderr).toBe(0);
    expect(existsSync(join(dataDir, 'recovery.signal'))).toBe(true);
    const server = await startExisting(dataDir);
    try {
      await server.waitUntilPromoted(120_000);
      expect(await snapshot(server.url)).toEqual(finalRows);
      // The look-ahead spool in pg_wal is removed once recovery has ended.
      const deadline = Date.now() + 15_000;
      while (existsSync(join(dataDir, 'pg_wal', 'pgbk-spool')) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 200));
      expect(existsSync(join(dataDir, 'pg_wal', 'pgbk-spool'))).toBe(false);
    } finally {
      await server.destroy();
    }
  });

  it('follows a timeline change: restore, promote, archive on the new timeline, restore again from it', async () => {
    // --archive-mode preserve: this restored server is a replacement primary that archives its new timeline.
    const first = await restoreAndStart(setup, ['--target-time', points[0]!.time], ['--archive-mode', 'preserve']);
    // Earlier restores in this file promoted (and archived) timelines of their own: note which one this is.
    const newTimeline = Number(/promoted on timeline (\d+)/.exec(first.result.stdout)![1]);
    let onNewTimeline: RowSnapshot;
    let time2: string;
    try {
      expect(await snapshot(first.url)).toEqual(points[0]!.rows);
      // Life goes on on timeline 2: the restored server archives into the same repository (its archive_command).
      const client = new (await import('pg')).default.Client({connectionString: first.url});
      await client.connect();
      try {
        await client.query(`insert into items select g, 'timeline 2', 2 from generate_series(90000, 90199) g`);
        onNewTimeline = (await snapshot(first.url)) as RowSnapshot;
        time2 = (await client.query(`select to_char(clock_timestamp() at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') as t`)).rows[0].t;
        await new Promise((resolve) => setTimeout(resolve, 50));
        await client.query(`delete from items where id >= 90100`);
        const {rows: [sw]} = await client.query(`select pg_walfile_name(pg_switch_wal()) as wal`);
        const deadline = Date.now() + 60_000;
        for (;;) {
          const {rows: [st]} = await client.query(`select last_archived_wal as last from pg_stat_archiver`);
          if (st.last && st.last >= sw.wal) break;
          if (Date.now() > deadline) throw new Error('timeline 2 WAL not archived');
          await new Promise((resolve) => setTimeout(resolve, 100));
        }
      } finally {
        await client.end();
      }
    } finally {
      await first.stop();
    }
    const listed = JSON.parse((await setup.pgbk(['list', '--json'])).stdout);
    // The policy's server is still on timeline 1: the window follows it; the new timeline shows in the tree.
    expect(listed.window.timeline).toBe(1);
    expect(listed.timelines.find((t: {timeline: number}) => t.timeline === newTimeline)).toMatchObject({parent: 1});
    // The backup is on timeline 1; recovery follows the archived history file onto the new timeline.
    const second = await restoreAndStart(setup, ['--target-time', time2!, '--target-timeline', String(newTimeline)]);
    try {
      expect(second.result.stdout).toMatch(/promoted on timeline \d+/);
      expect(Number(/promoted on timeline (\d+)/.exec(second.result.stdout)![1])).toBeGreaterThan(newTimeline);
      expect(await snapshot(second.url)).toEqual(onNewTimeline!);
    } finally {
      await second.stop();
    }
  });
});
