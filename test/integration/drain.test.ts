// A backlog of .ready segments drains through PostgreSQL's own archiver with the look-ahead pusher (on S3 only: the
// local driver takes the same paths, and the suite's time is better spent elsewhere), every
// segment ends up archived exactly once, no marker is left behind, and the archive restores to the end.

import {chmodSync, existsSync, readdirSync, readFileSync, writeFileSync} from 'node:fs';
import {join} from 'node:path';
import {afterAll, beforeAll, describe, expect, inject, it} from 'vitest';
import {setupArchiving, snapshot, switchAndWaitArchived, type ArchivingSetup} from '../helpers/pitr.js';
import {makeTempDir, startExisting, waitFor} from '../helpers/cluster.js';
import {pgbkBin} from '../helpers/cli.js';

describe.each(['s3'] as const)('draining an archive backlog (%s repository)', (kind) => {
  let setup: ArchivingSetup;

  beforeAll(async () => {
    setup = await setupArchiving(kind, inject('s3'));
  });

  afterAll(async () => {
    await setup?.destroy();
  });

  it('archives 24 waiting segments, all restorable', async () => {
    const {cluster} = setup;
    await cluster.psql(`create table items (id int primary key, label text)`);
    expect((await setup.pgbk(['backup'])).exitCode).toBe(0);
    // The archive is "down": segments pile up as .ready.
    await cluster.psql(`alter system set archive_command = 'false'`);
    await cluster.reload();
    // A pusher started by the backup's archiving lingers a few seconds for more .ready segments: let it go.
    await waitFor(async () => !existsSync(join(cluster.dataDir, 'pg_wal', 'pgbk-spool', 'pushed', '.pusher.lock')), {timeoutMs: 30_000, intervalMs: 200, what: 'the pusher to finish'});
    for (let round = 0; round < 24; round++) {
      await cluster.psql(`insert into items select g, 'round ${round}' from generate_series(${round * 1000}, ${round * 1000 + 999}) g`);
      await cluster.psql(`select pg_switch_wal()`);
    }
    const ready = readdirSync(join(cluster.dataDir, 'pg_wal', 'archive_status')).filter((name) => name.endsWith('.ready'));
    expect(ready.length).toBeGreaterThanOrEqual(24);
    const expected = await snapshot(cluster.url);
    // Back up: PostgreSQL drains the backlog through pgbk, with the archive_command pgbk recommends. Its "node" is
    // a wrapper that counts Node starts: the shell fast path must take the segments the pusher archived ahead.
    const recommended = await setup.pgbk(['archive-command', '--json']);
    expect(recommended.exitCode).toBe(0);
    const command: string = JSON.parse(recommended.stdout).archiveCommand;
    expect(command).toContain(`${process.execPath} ${pgbkBin} archive-push --policy ${setup.policyFile} %p`);
    const wrapperDir = makeTempDir('pgbk-node-wrapper-');
    const calls = join(wrapperDir, 'calls');
    const wrapper = join(wrapperDir, 'node');
    writeFileSync(wrapper, `#!/bin/sh\necho "$2" >> ${calls}\nexec ${process.execPath} "$@"\n`);
    chmodSync(wrapper, 0o755);
    chmodSync(wrapperDir, 0o777);
    await cluster.psql(`alter system set archive_command = '${command.replaceAll(process.execPath, wrapper).replaceAll("'", "''")}'`);
    await cluster.reload();
    await switchAndWaitArchived(cluster);
    await waitFor(async () => readdirSync(join(cluster.dataDir, 'pg_wal', 'archive_status')).every((name) => !name.endsWith('.ready')),
      {timeoutMs: 120_000, intervalMs: 200, what: 'an empty archive backlog'});
    const [status] = await cluster.query<{failed_count: string}>(`select failed_count from pg_stat_archiver`);
    // Only the failures while archive_command was 'false'.
    expect(Number(status!.failed_count)).toBeGreaterThan(0);
    // No marker outlives its segment.
    await waitFor(async () => !existsSync(join(cluster.dataDir, 'pg_wal', 'pgbk-spool', 'pushed', '.pusher.lock')), {timeoutMs: 30_000, intervalMs: 200, what: 'the pusher to finish'});
    const markers = readdirSync(join(cluster.dataDir, 'pg_wal', 'pgbk-spool', 'pushed')).filter((name) => /^[0-9A-F]{24}/.test(name));
    expect(markers).toEqual([]);
    // Node started for archive-push only where no marker was there yet (the first segments); the pusher itself once or twice.
    const started = readFileSync(calls, 'utf8').trim().split('\n');
    const pushes = started.filter((command) => command === 'archive-push').length;
    expect(pushes).toBeGreaterThan(0);
    expect(pushes).toBeLessThan(ready.length / 2);
    const listed = JSON.parse((await setup.pgbk(['list', '--json'])).stdout);
    expect(listed.window.gap).toBeNull();
    expect(listed.window.archivedSegments).toBeGreaterThanOrEqual(26);

    const dataDir = join(makeTempDir('pgbk-drained-'), 'data');
    expect((await setup.pgbk(['restore', '--to', dataDir, '--archive-mode', 'off'])).exitCode).toBe(0);
    const restored = await startExisting(dataDir);
    try {
      await restored.waitUntilPromoted(120_000);
      expect(await snapshot(restored.url)).toEqual(expected);
    } finally {
      await restored.destroy();
    }
  });
});
