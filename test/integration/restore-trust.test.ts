// Issue 8, restore side, on real PostgreSQL with a local and an S3 repository: no restore past a gap in the archive,
// timelines followed by branch (a promoted side copy that archives never changes a restore of the main line),
// `restore --force` only over a stopped data directory of this cluster, and expire refusing a skewed clock.
// Every restore proves data: rows recorded at the target, changed, restored, compared.

import {appendFileSync, existsSync, readFileSync, rmSync, writeFileSync} from 'node:fs';
import {buffer} from 'node:stream/consumers';
import {spawnSync} from 'node:child_process';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import {afterAll, beforeAll, describe, expect, inject, it} from 'vitest';
import {restoreAndStart, setupArchiving, snapshot, switchAndWaitArchived, writePolicy, type ArchivingSetup, type RowSnapshot} from '../helpers/pitr.js';
import {parse} from 'yaml';
import {chownToPostgres, createCluster, freePort, makeTempDir, pgBinDir, postgresUser, runAsPostgres, waitFor, type Cluster} from '../helpers/cluster.js';
import {runPgbk, type RunPgbkResult} from '../helpers/cli.js';
import {loadPolicy} from '../../src/policy/load.js';
import {openRepository} from '../../src/storage/open.js';
import type {Repository} from '../../src/storage/repository.js';
import {findArchived} from '../../src/wal/archive.js';
import {readCatalog, writeManifest} from '../../src/backup/manifest.js';
import {backupIdFor, manifestKey} from '../../src/storage/layout.js';
import {run} from '../../src/main.js';

/** What each scenario printed, for the closing note. */
const LOG = join(tmpdir(), 'pgbk-issue8-restore-scenarios.log');
function record(kind: string, scenario: string, result: {exitCode: number; stdout: string; stderr: string}): void {
  appendFileSync(LOG, `=== [${kind}] ${scenario} (exit ${result.exitCode})\n--- stdout\n${result.stdout}--- stderr\n${result.stderr}\n`);
}

interface Point {
  rows: RowSnapshot;
  time: string;
  lsn: string;
}

async function pointNow(cluster: {query: Cluster['query']; url: string}): Promise<Point> {
  const [at] = await cluster.query<{time: string; lsn: string}>(
    `select to_char(clock_timestamp() at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') as time, pg_current_wal_lsn()::text as lsn`);
  const point = {rows: (await snapshot(cluster.url)) as RowSnapshot, time: at!.time, lsn: at!.lsn};
  // A commit after the point, in the same segment: PostgreSQL stops at a time only when a later commit proves it.
  await new Promise((resolve) => setTimeout(resolve, 20));
  await cluster.query(`insert into ticks values (default)`);
  return point;
}

describe.each(['local', 's3'] as const)('restore trust with a %s repository', (kind) => {
  let setup: ArchivingSetup;
  let cluster: Cluster;
  let repo: Repository;
  let backupId: string;
  let pointA: Point; // before the gap
  let pointC: Point; // after the gap
  let gapSegment: string;
  let sideDataDir: string;

  beforeAll(async () => {
    setup = await setupArchiving(kind, inject('s3'), {policy: {retention: {backups: 1}}});
    cluster = setup.cluster;
    const policy = await loadPolicy({policy: setup.policyFile, env: process.env, cwd: process.cwd()});
    repo = await openRepository(policy.repository);
    await cluster.psql(`create table items (id int primary key, label text not null); create table ticks (id serial primary key)`);
    await cluster.psql(`insert into items select g, 'before backup ' || g from generate_series(1, 1000) g`);
    const backup = await setup.pgbk(['backup']);
    expect(backup.exitCode, backup.stderr).toBe(0);
    backupId = backup.stdout.trim();
    await cluster.psql(`insert into items select g, 'segment 1' from generate_series(2000, 2199) g`);
    pointA = await pointNow(cluster);
    await switchAndWaitArchived(cluster);
    await cluster.psql(`insert into items select g, 'segment 2' from generate_series(3000, 3199) g`);
    const [{wal}] = await cluster.query<{wal: string}>(`select pg_walfile_name(pg_current_wal_lsn()) as wal`) as [{wal: string}];
    gapSegment = wal;
    await switchAndWaitArchived(cluster);
    await cluster.psql(`insert into items select g, 'segment 3' from generate_series(4000, 4199) g`);
    pointC = await pointNow(cluster);
    await switchAndWaitArchived(cluster);
  });

  /** Objects this test writes as root must stay readable by pgbk running as postgres. */
  function giveRepositoryToPostgres(): void {
    if (!setup.repoDir || process.getuid?.() !== 0) return;
    const {uid, gid} = postgresUser();
    spawnSync('chown', ['-R', `${uid}:${gid}`, setup.repoDir]);
  }

  afterAll(async () => {
    await repo?.close();
    await setup?.destroy();
  });

  it('refuses a target past a gap in the middle of the archive, naming the segment; a target before it works', async () => {
    const [stored] = await findArchived(repo, gapSegment);
    expect(stored, `segment ${gapSegment} archived`).toBeDefined();
    const body = await buffer(await repo.get(stored!.key));
    await repo.remove([stored!.key]);
    try {
      const list = await setup.pgbk(['list']);
      record(kind, 'list with a gap', list);
      expect(list.stdout).toContain(`WAL segment ${gapSegment} is missing`);

      const dir = join(makeTempDir('pgbk-gap-'), 'data');
      const pastTime = await setup.pgbk(['restore', '--to', dir, '--target-time', pointC.time]);
      record(kind, 'restore --target-time after the gap', pastTime);
      expect(pastTime.exitCode).toBe(2);
      expect(pastTime.stderr).toContain(`lies past a gap in the WAL archive: segment ${gapSegment} is missing`);
      expect(pastTime.stderr).toMatch(/the last reachable point is the commit at \S+ \(WAL continuous up to LSN [0-9A-F]+\/[0-9A-F]+\)/);
      expect(existsSync(dir)).toBe(false);

      const latest = await setup.pgbk(['restore', '--to', dir, '--latest']);
      record(kind, 'restore --latest with a gap', latest);
      expect(latest.exitCode).toBe(2);
      expect(latest.stderr).toContain(`pgbk: error: the end of the archived WAL (latest) lies past a gap in the WAL archive: segment ${gapSegment} is missing`);
      const hinted = /pgbk: hint: restore to an earlier target, e\.g\. --target-time (\S+) \(the last commit before the gap\)/.exec(latest.stderr);
      expect(hinted).not.toBeNull();

      const byLsn = await setup.pgbk(['restore', '--to', dir, '--target-lsn', pointC.lsn]);
      expect(byLsn.exitCode).toBe(2);
      expect(byLsn.stderr).toContain(`segment ${gapSegment} is missing`);
      expect(existsSync(dir)).toBe(false);

      const drill = await setup.pgbk(['drill', '--latest']);
      record(kind, 'drill --latest with a gap', drill);
      expect(drill.exitCode).toBe(2);
      expect(drill.stderr).toContain(`segment ${gapSegment} is missing`);

      // The target the hint offers restores, to the rows recorded before the gap (the last commit is a tick).
      const before = await restoreAndStart(setup, ['--target-time', hinted![1]!]);
      try {
        record(kind, 'restore --target-time <the hint\'s time> --start, with the gap still there', before.result);
        expect(await snapshot(before.url)).toEqual(pointA.rows);
      } finally {
        await before.stop();
      }
    } finally {
      await repo.put(stored!.key, body);
      giveRepositoryToPostgres();
    }
    // Whole again: --latest plans.
    const whole = await setup.pgbk(['restore', '--to', join(makeTempDir('pgbk-gap-'), 'data'), '--latest', '--dry-run']);
    expect(whole.exitCode, whole.stderr).toBe(0);
  });

  it('a side copy promoted with archiving on never changes what a restore of the main line returns', async () => {
    // The side copy: restored to point C, promoted, archiving its own timeline into the same repository.
    const side = await restoreAndStart(setup, ['--target-time', pointC.time], ['--archive-mode', 'preserve']);
    sideDataDir = side.dataDir;
    record(kind, 'side copy: restore --archive-mode preserve --start', side.result);
    const sideTimeline = Number(/promoted on timeline (\d+)/.exec(side.result.stdout)![1]);
    expect(sideTimeline).toBe(2);
    expect(side.result.stdout).toContain('timeline: 1 (the policy\'s server');
    const pg = (await import('pg')).default;
    const client = new pg.Client({connectionString: side.url});
    await client.connect();
    try {
      await client.query(`insert into items select g, 'side copy' from generate_series(90000, 90999) g`);
      await client.query(`update items set label = 'side copy changed' where id < 100`);
      const {rows: [sw]} = await client.query(`select pg_walfile_name(pg_switch_wal()) as wal`);
      await waitFor(async () => {
        const {rows: [st]} = await client.query(`select last_archived_wal as last from pg_stat_archiver`);
        return st.last !== null && st.last >= sw.wal;
      }, {timeoutMs: 60_000, what: 'side copy archiving'});
    } finally {
      await client.end();
    }
    // A fast stop: the archiver pushes what is left, so the directory holds no unarchived .ready segment.
    await runAsPostgres(join(pgBinDir(), 'pg_ctl'), ['-D', side.dataDir, '-m', 'fast', '-w', 'stop'], {timeoutMs: 60_000});
    expect((await findArchived(repo, '00000002.history')).length).toBe(1);

    // The main line goes on after the fork.
    await cluster.psql(`insert into items select g, 'main line after the fork' from generate_series(5000, 5299) g`);
    await cluster.psql(`delete from items where id between 2000 and 2049`);
    const mainPoint = await pointNow(cluster);
    await switchAndWaitArchived(cluster);
    await cluster.psql(`update items set label = 'destroyed'`);
    await switchAndWaitArchived(cluster);

    const list = await setup.pgbk(['list']);
    record(kind, 'list after the side copy archived timeline 2', list);
    expect(list.stdout).toMatch(/timeline 1 \[/);
    // Where timeline 2 left timeline 1: the last commit before the fork is the last one the side copy replayed.
    const replayed = /last replayed transaction: (\S+ [\d:.]+)\+00/.exec(side.result.stdout)![1]!.replace(' ', 'T');
    expect(list.stdout).toContain(`└─ timeline 2: forked from timeline 1 at LSN `);
    // Commit times in the tree are read with pg_waldump (millisecond precision): compare to the millisecond.
    const forked = /└─ timeline 2: forked from timeline 1 at LSN [0-9A-F]+\/[0-9A-F]+, after the commit at (\S+) \(history archived /.exec(list.stdout);
    expect(forked, list.stdout).not.toBeNull();
    expect(Math.floor(new Date(forked![1]!).getTime())).toBe(Math.floor(new Date(`${replayed}Z`).getTime()));
    expect(list.stdout).toMatch(/window along timeline 1 \(the policy's server \S+ is on timeline 1\)/);
    const listed = JSON.parse((await setup.pgbk(['list', '--json'])).stdout);
    expect(listed.window.timeline).toBe(1);
    expect(listed.window.gap).toBeNull();
    expect(listed.timelines.map((t: {timeline: number; parent: number | null}) => [t.timeline, t.parent])).toEqual([[1, null], [2, 1]]);

    const dry = await setup.pgbk(['restore', '--to', join(makeTempDir('pgbk-main-'), 'data'), '--latest', '--dry-run']);
    record(kind, 'restore --latest --dry-run with a side copy on timeline 2', dry);
    expect(dry.stdout).toMatch(/^timeline: 1 \(the policy's server \S+ is on timeline 1\)/);

    const pinned = await setup.pgbk(['restore', '--to', join(makeTempDir('pgbk-main-'), 'data'), '--latest', '--target-timeline', '2', '--dry-run']);
    record(kind, 'restore --latest --target-timeline 2 --dry-run', pinned);
    expect(pinned.stdout).toMatch(/^timeline: 2 \(given with --target-timeline\)/);

    // The same repository through a policy whose server is down: the timeline with the newest archived WAL.
    const doc = parse(readFileSync(setup.policyFile, 'utf8'));
    doc.postgres.url = `postgresql://postgres@127.0.0.1:${await freePort()}/postgres`;
    const downPolicy = writePolicy(setup.dir, 'server-down', doc);
    const down = await runPgbk(['restore', '--policy', downPolicy, '--to', join(makeTempDir('pgbk-main-'), 'data'), '--latest', '--dry-run']);
    record(kind, 'restore --latest --dry-run, the policy\'s server down', down);
    expect(down.stdout).toMatch(/^timeline: 1 \(the policy's server \S+ is not reachable \(.*\); timeline 1 holds the most recently archived WAL \(0{7}1\w+ at /);

    const main = await restoreAndStart(setup, ['--target-time', mainPoint.time]);
    try {
      record(kind, 'restore of the main line to a time after the fork', main.result);
      expect(main.result.stdout).toContain(`restored backup ${backupId}`);
      expect(main.result.stdout).toContain('archiving: off');
      expect(await snapshot(main.url)).toEqual(mainPoint.rows);
      expect(await readFile(join(main.dataDir, 'postgresql.auto.conf'))).toContain(`recovery_target_timeline = '1'`);
    } finally {
      await main.stop();
    }
  });

  it('restore --force replaces only a stopped data directory of this cluster', async () => {
    if (kind === 's3') {
      // The repository-path refusals need a file:// repository; the rest does not depend on the driver.
      const outside = makeTempDir('pgbk-force-');
      writeFileSync(join(outside, 'precious.txt'), 'keep me');
      chownToPostgres(join(outside, 'precious.txt'));
      const result = await setup.pgbk(['restore', '--to', outside, '--force']);
      expect(result.exitCode).toBe(2);
      expect(result.stderr).toContain('it is not a PostgreSQL data directory (no PG_VERSION)');
      expect(existsSync(join(outside, 'precious.txt'))).toBe(true);
      return;
    }
    const refuse = async (scenario: string, dir: string, message: string | RegExp, extra: string[] = []) => {
      const result = await setup.pgbk(['restore', '--to', dir, '--force', ...extra]);
      record(kind, `restore --force: ${scenario}`, result);
      expect(result.exitCode, result.stderr).toBe(2);
      if (typeof message === 'string') expect(result.stderr).toContain(message);
      else expect(result.stderr).toMatch(message);
      return result;
    };
    await refuse('/', '/', 'it is the root directory');
    await refuse('a home directory', postgresUser().home, `it is the home directory of postgres (${postgresUser().home})`);
    await refuse('the directory holding the repository', setup.dir, `holds the repository ${setup.repoDir}`);
    await refuse('a directory inside the repository', join(setup.repoDir!, 'wal'), `is inside the repository ${setup.repoDir}`);
    const plain = makeTempDir('pgbk-force-');
    writeFileSync(join(plain, 'precious.txt'), 'keep me');
    chownToPostgres(join(plain, 'precious.txt'));
    await refuse('a directory that is no data directory', plain, 'it is not a PostgreSQL data directory (no PG_VERSION)');
    expect(existsSync(join(plain, 'precious.txt'))).toBe(true);
    await refuse('the running server\'s data directory', cluster.dataDir, /belongs to a running PostgreSQL server \(pid \d+\)/);

    const other = await createCluster({start: false});
    try {
      const result = await refuse('another cluster\'s stopped data directory', other.dataDir, /it is the data directory of another cluster \(system identifier \d+; the backups in .* are of \d+\)/);
      expect(result.stderr).not.toContain('undefined');
      expect(existsSync(join(other.dataDir, 'PG_VERSION'))).toBe(true);
    } finally {
      await other.destroy();
    }

    // The side copy: a stopped data directory of this cluster. A .ready segment nobody archived stops --force.
    const ready = join(sideDataDir, 'pg_wal', 'archive_status', '000000200000000000000001.ready');
    writeFileSync(ready, '');
    await refuse('a stopped data directory with an unarchived .ready segment', sideDataDir,
      /its pg_wal holds 1 segment\(s\) marked \.ready that are not in the archive: 000000200000000000000001\npgbk: hint: they hold WAL nobody archived/);
    expect(existsSync(ready)).toBe(true);
    rmSync(ready);

    const port = await freePort();
    const allowed = await setup.pgbk(['restore', '--to', sideDataDir, '--force', '--target-time', pointA.time, '--start', '--port', String(port)]);
    record(kind, 'restore --force over a stopped data directory of this cluster', allowed);
    try {
      expect(allowed.exitCode, allowed.stderr).toBe(0);
      expect(await snapshot(`postgresql://postgres@127.0.0.1:${port}/postgres`)).toEqual(pointA.rows);
    } finally {
      await runAsPostgres(join(pgBinDir(), 'pg_ctl'), ['-D', sideDataDir, '-m', 'immediate', '-w', 'stop'], {timeoutMs: 30_000});
    }
  });

  it('expire removes nothing when the clocks disagree', async () => {
    const second = await setup.pgbk(['backup']);
    expect(second.exitCode, second.stderr).toBe(0);
    const before = (await readCatalog(repo)).map((backup) => backup.id);
    expect(before).toEqual([backupId, second.stdout.trim()]);

    // The local clock an hour ahead (injected: the CLI in-process with Io.now), the repository's clock right.
    const ahead = await runInProcess(['expire', '--policy', setup.policyFile], new Date(Date.now() + 3600_000));
    record(kind, 'expire with the local clock 1 h ahead', ahead);
    expect(ahead.exitCode).toBe(1);
    expect(ahead.stderr).toMatch(/^pgbk: error: the local clock \(\S+\) and the clock of the repository \S+.* \(\S+\) are (59|60) min apart \(more than 5 min\): expire removes nothing\n/);
    expect((await readCatalog(repo)).map((backup) => backup.id)).toEqual(before);

    // A backup that finished an hour in the future (written by a host whose clock ran ahead).
    const manifest = (await readCatalog(repo)).at(-1)!;
    const future = new Date(Date.now() + 3600_000);
    const fake = {...manifest, id: backupIdFor(future), startTime: future.toISOString(), stopTime: future.toISOString(), checksum: undefined};
    await writeManifest(repo, fake);
    giveRepositoryToPostgres();
    try {
      const skewed = await setup.pgbk(['expire']);
      record(kind, 'expire with a backup stop time 1 h in the future', skewed);
      expect(skewed.exitCode).toBe(1);
      expect(skewed.stderr).toContain(`pgbk: error: the newest backup, ${fake.id}, finished at ${future.toISOString()}`);
      expect(skewed.stderr).toMatch(/after the local clock \(\S+\): one of the clocks is wrong, expire removes nothing/);
      expect((await readCatalog(repo)).map((backup) => backup.id)).toEqual([...before, fake.id]);
    } finally {
      await repo.remove([manifestKey(fake.id)]);
    }

    // The same expire with sane clocks removes the older backup: the refusals above are what kept it.
    const sane = await setup.pgbk(['expire']);
    record(kind, 'expire with sane clocks', sane);
    expect(sane.exitCode, sane.stderr).toBe(0);
    expect((await readCatalog(repo)).map((backup) => backup.id)).toEqual([second.stdout.trim()]);
  });
});

async function readFile(path: string): Promise<string> {
  return (await import('node:fs/promises')).readFile(path, 'utf8');
}

/** The real program in this process, with an injected clock. */
async function runInProcess(args: string[], now: Date): Promise<RunPgbkResult> {
  let stdout = '';
  let stderr = '';
  const sink = (append: (text: string) => void) => ({write: (chunk: string | Uint8Array) => (append(String(chunk)), true)}) as unknown as NodeJS.WritableStream;
  const exitCode = await run(['node', 'pgbk', ...args], {
    env: {...process.env, AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true'}, cwd: process.cwd(),
    stdout: sink((text) => (stdout += text)), stderr: sink((text) => (stderr += text)), now: () => now,
  });
  return {exitCode, stdout, stderr, timedOut: false};
}

