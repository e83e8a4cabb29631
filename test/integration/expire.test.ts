// Retention on real PostgreSQL, local and S3 repositories: three base backups with rows and segment switches
// between them, retention {backups: 2}. The dry run lists the oldest backup and its WAL and changes nothing; expire
// removes exactly that; a restore to the oldest kept point then proves no WAL a kept backup needs was removed.

import {readFileSync} from 'node:fs';
import {parse} from 'yaml';
import {afterAll, beforeAll, describe, expect, inject, it} from 'vitest';
import {parsePolicy} from '../../src/policy/load.js';
import {openRepository} from '../../src/storage/open.js';
import type {Repository} from '../../src/storage/repository.js';
import {restoreAndStart, setupArchiving, snapshot, switchAndWaitArchived, writePolicy, type ArchivingSetup, type RowSnapshot} from '../helpers/pitr.js';

async function listKeys(repo: Repository, prefix = ''): Promise<string[]> {
  const keys: string[] = [];
  for await (const object of repo.list(prefix)) keys.push(object.key);
  return keys;
}

const utcNow = `to_char(clock_timestamp() at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`;

describe.each(['local', 's3'] as const)('expire with a %s repository', (kind) => {
  let setup: ArchivingSetup;
  let repo: Repository;
  const ids: string[] = [];
  let beforeWindow: string;
  let kept: {time: string; rows: RowSnapshot};
  let secondStart: string;

  beforeAll(async () => {
    setup = await setupArchiving(kind, inject('s3'));
    // The same policy, with a retention section.
    writePolicy(setup.dir, 'it', {...parse(readFileSync(setup.policyFile, 'utf8')), retention: {backups: 2}});
    const policy = parsePolicy(readFileSync(setup.policyFile, 'utf8'), setup.policyFile, {});
    repo = await openRepository(policy.repository);
    const {cluster} = setup;
    await cluster.psql(`create table items (id int primary key, label text not null)`);
    for (let step = 1; step <= 3; step++) {
      await cluster.psql(`insert into items select g, 'step ${step}' from generate_series(${step * 1000}, ${step * 1000 + 299}) g`);
      await switchAndWaitArchived(cluster);
      const backup = await setup.pgbk(['backup']);
      expect(backup.exitCode, backup.stderr).toBe(0);
      ids.push(backup.stdout.trim());
      if (step === 1) {
        // A moment restorable only from the first backup.
        await cluster.psql(`insert into items values (1, 'between 1 and 2')`);
        beforeWindow = (await cluster.query<{t: string}>(`select ${utcNow} as t`))[0]!.t;
      }
      if (step === 2) {
        // The oldest point the kept backups must still reach: just after the second backup is consistent.
        const listed = JSON.parse((await setup.pgbk(['list', '--json'])).stdout);
        const stop = new Date(listed.backups.at(-1).stopTime).getTime();
        while (Date.now() < stop + 200) await new Promise((resolve) => setTimeout(resolve, 100));
        await cluster.psql(`insert into items values (2, 'just after backup 2')`);
        kept = {time: (await cluster.query<{t: string}>(`select ${utcNow} as t`))[0]!.t, rows: (await snapshot(cluster.url)) as RowSnapshot};
        await new Promise((resolve) => setTimeout(resolve, 50));
        await cluster.psql(`update items set label = 'changed later' where id = 2`);
      }
      await switchAndWaitArchived(cluster);
    }
    await cluster.psql(`delete from items where id % 2 = 0`);
    await switchAndWaitArchived(cluster);
    const listed = JSON.parse((await setup.pgbk(['list', '--json'])).stdout);
    expect(listed.backups.map((b: {id: string}) => b.id)).toEqual(ids);
  });

  afterAll(async () => {
    await repo?.close();
    await setup?.destroy();
  });

  it('--dry-run lists the oldest backup and the WAL only it needs, and changes nothing', async () => {
    const before = await listKeys(repo);
    const dry = await setup.pgbk(['expire', '--dry-run', '--json']);
    expect(dry.exitCode, dry.stderr).toBe(0);
    const doc = JSON.parse(dry.stdout);
    expect(doc.backups.map((b: {id: string; keep: boolean}) => [b.id, b.keep])).toEqual([[ids[0], false], [ids[1], true], [ids[2], true]]);
    expect(doc.backups[0].reasons.join()).toMatch(/not among the newest 2 base backups/);
    expect(doc.outcome.dryRun).toBe(true);
    expect(doc.outcome.backups.map((b: {id: string}) => b.id)).toEqual([ids[0]]);
    expect(doc.outcome.wal.removedFiles).toBeGreaterThan(0);
    secondStart = doc.wal.keepPoints[0].walStart as string;
    expect(doc.wal.keepPoints[0].backupId).toBe(ids[1]);
    for (const range of doc.outcome.wal.ranges) {
      expect(range.timeline).toBe(1);
      expect(range.last.slice(8, 24) < secondStart.slice(8)).toBe(true);
    }
    const human = await setup.pgbk(['expire', '--dry-run']);
    expect(human.exitCode).toBe(0);
    expect(human.stdout).toContain('dry run, nothing removed');
    expect(human.stdout).toMatch(new RegExp(`remove ${ids[0]} base`));
    expect(human.stdout).toMatch(new RegExp(`keep +${ids[2]} base`));
    expect(human.stdout).toMatch(/remove 0{7}1[0-9A-F]+ \.\. \S+ on timeline 1/);
    expect(await listKeys(repo)).toEqual(before);
  });

  it('removes the oldest backup and its WAL; list shows two; the oldest kept point restores exactly', async () => {
    const expired = await setup.pgbk(['expire']);
    expect(expired.exitCode, expired.stderr).toBe(0);
    expect(expired.stdout).toMatch(new RegExp(`removed ${ids[0]} base`));
    expect(expired.stdout).toMatch(/removed 1 backup/);
    expect(await listKeys(repo, `backups/${ids[0]}/`)).toEqual([]);

    const listed = JSON.parse((await setup.pgbk(['list', '--json'])).stdout);
    expect(listed.backups.map((b: {id: string}) => b.id)).toEqual([ids[1], ids[2]]);
    expect(listed.window.gap).toBeNull();
    // Nothing older than the second backup's WAL start is left; its first segment is.
    const segments = (await listKeys(repo, 'wal/')).map((key) => /\/([0-9A-F]{24})-/.exec(key)?.[1]).filter((name): name is string => Boolean(name)).sort();
    expect(segments[0]).toBe(secondStart);
    const again = await setup.pgbk(['expire', '--json']);
    expect(JSON.parse(again.stdout).outcome).toMatchObject({backups: [], wal: {removedFiles: 0}});

    const restored = await restoreAndStart(setup, ['--target-time', kept.time, '--archive-mode', 'off']);
    try {
      expect(restored.result.stdout).toContain(`restored backup ${ids[1]}`);
      expect(await snapshot(restored.url)).toEqual(kept.rows);
    } finally {
      await restored.stop();
    }

    const refused = await setup.pgbk(['restore', '--to', `${setup.dir}/never`, '--target-time', beforeWindow, '--dry-run']);
    expect(refused.exitCode).toBe(2);
    expect(refused.stderr).toMatch(/before the recoverable window/);

    const verified = await setup.pgbk(['verify']);
    expect(verified.exitCode, verified.stdout + verified.stderr).toBe(0);
  });
});
