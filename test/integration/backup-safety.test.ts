// Backups cannot clobber each other, and a killed backup leaves nothing running: real PostgreSQL, real
// `pgbk backup` processes (as the postgres OS user), the local driver and the harness's S3.
//   - kill -9 of `pgbk backup` while pg_dump waits on a lock (it writes nothing, so only the watchdog can stop
//     it) and while pg_basebackup streams: no pg_dump / pg_basebackup remains;
//   - a second `pgbk backup` is refused while one runs (the backup lease), and runs once the first is gone;
//   - verify reports the folder as in progress while its owner lives, as abandoned after the kill; expire keeps
//     the live one and removes the abandoned one;
//   - ids claimed by many runs in the same second are all different; a manifest is never overwritten and is
//     written only when its objects are there with their sizes.
import {spawn, type ChildProcess} from 'node:child_process';
import {readdirSync, readFileSync, readlinkSync} from 'node:fs';
import {basename} from 'node:path';
import pg from 'pg';
import {afterAll, beforeAll, describe, expect, inject, it} from 'vitest';
import {claimBackupId} from '../../src/backup/id.js';
import {writeManifest, type BackupManifest} from '../../src/backup/manifest.js';
import {readOwner} from '../../src/backup/owner.js';
import {BackupError} from '../../src/errors.js';
import {applyExpire} from '../../src/retention/apply.js';
import {planExpire} from '../../src/retention/plan.js';
import {descendants} from '../../src/scheduler/jobs.js';
import {openRepository} from '../../src/storage/open.js';
import {backupObjectKey, manifestKey} from '../../src/storage/layout.js';
import type {Repository} from '../../src/storage/repository.js';
import {processAlive} from '../../src/util/process.js';
import {baseEnv, pgbkBin, repoRoot} from '../helpers/cli.js';
import {isRoot, waitFor} from '../helpers/cluster.js';
import {setupArchiving, type ArchivingSetup, type RepoKind} from '../helpers/pitr.js';

const s3 = inject('s3');

/** `pgbk backup --policy <file>` as postgres, in the background; `pgbkPid` is node's own pid (not runuser's). */
class BackupProcess {
  readonly child: ChildProcess;
  stdout = '';
  stderr = '';
  exitCode: number | null | undefined;
  signal: string | null | undefined;
  readonly exited: Promise<void>;

  constructor(policyFile: string) {
    const assignments = Object.entries(baseEnv()).map(([name, value]) => `${name}=${value}`);
    const command = ['env', '-i', ...assignments, process.execPath, pgbkBin, 'backup', '--policy', policyFile];
    const [file, argv] = isRoot ? ['runuser', ['-u', 'postgres', '--', ...command]] : [command[0]!, command.slice(1)];
    this.child = spawn(file, argv, {cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe']});
    this.child.stdout!.setEncoding('utf8').on('data', (chunk: string) => (this.stdout += chunk));
    this.child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (this.stderr += chunk));
    this.exited = new Promise((resolve) => this.child.once('close', (code, signal) => {
      this.exitCode = code;
      this.signal = signal;
      resolve();
    }));
  }

  /** Processes below runuser, with their names. */
  tree(): {pid: number; comm: string}[] {
    return descendants(this.child.pid!).map((pid) => {
      try {
        return {pid, comm: readFileSync(`/proc/${pid}/comm`, 'utf8').trim()};
      } catch {
        return {pid, comm: ''};
      }
    });
  }

  get pgbkPid(): number | undefined {
    if (!isRoot) return this.child.pid;
    // By executable, not by name: Node 24 names its main thread "MainThread" (/proc/<pid>/comm).
    return this.tree().find((entry) => {
      try {
        return basename(readlinkSync(`/proc/${entry.pid}/exe`)) === 'node';
      } catch {
        return false;
      }
    })?.pid;
  }

  describe(): string {
    return `exit ${this.exitCode} signal ${this.signal}\n--- stdout ---\n${this.stdout}\n--- stderr ---\n${this.stderr}`;
  }
}

/** Every process on the machine whose command line mentions `needle` (our cluster's port). */
function processesMentioning(program: string, needle: string): number[] {
  const found: number[] = [];
  for (const entry of readdirSafe('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const comm = readFileSync(`/proc/${entry}/comm`, 'utf8').trim();
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8');
      if (comm === program && cmdline.includes(needle)) found.push(Number(entry));
    } catch {
      // gone
    }
  }
  return found;
}

function readdirSafe(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

for (const kind of ['local', 's3'] as RepoKind[]) {
  describe(`backups cannot clobber each other, killed backups leave nothing running (${kind})`, () => {
    let dump: ArchivingSetup;
    let repo: Repository;
    let locker: pg.Client;
    const started: BackupProcess[] = [];

    beforeAll(async () => {
      dump = await setupArchiving(kind, s3, {strategy: 'dump', policy: {retention: {backups: 5}}});
      await dump.cluster.psql('create table items as select g as id, md5(g::text) as v from generate_series(1, 20000) g');
      const policy = (await import('../../src/policy/load.js')).parsePolicy(readFileSync(dump.policyFile, 'utf8'), dump.policyFile, {});
      repo = await openRepository(policy.repository);
      locker = new pg.Client({connectionString: dump.cluster.url});
      await locker.connect();
    });

    afterAll(async () => {
      killAll(started);
      await locker?.end().catch(() => undefined);
      await repo?.close();
      await dump?.destroy();
    });

    it('kill -9 of pgbk backup while pg_dump waits on a lock: pg_dump exits, the folder is abandoned, the lease is free', async () => {
      // pg_dump takes ACCESS SHARE on every table: behind this lock it waits, writing nothing — a pipe closing
      // on its stdout would never reach it; only the watchdog does.
      await locker.query('begin');
      await locker.query('lock table items in access exclusive mode');
      const backup = new BackupProcess(dump.policyFile);
      started.push(backup);
      let dumpPid: number | undefined;
      await waitFor(() => (dumpPid = backup.tree().find((entry) => entry.comm === 'pg_dump')?.pid) !== undefined || backup.exitCode !== undefined,
        {timeoutMs: 60_000, what: 'pg_dump to start'});
      expect(backup.exitCode, backup.describe()).toBeUndefined();
      await waitFor(async () => (await dump.cluster.query<{n: string}>(
        `select count(*) as n from pg_stat_activity where wait_event_type = 'Lock' and application_name = 'pgbk'`))[0]!.n !== '0',
      {timeoutMs: 30_000, what: 'pg_dump waiting on the lock'});

      // While it runs: its folder is in progress (live owner), a second backup is refused with a clear message.
      const verifyLive = await dump.pgbk(['verify']);
      expect(verifyLive.exitCode, verifyLive.stderr).toBe(0);
      const live = /in progress: backups\/(\S+)\/ is being written by (\S+)/.exec(verifyLive.stdout);
      expect(live, verifyLive.stdout).not.toBeNull();
      const id = live![1]!;
      expect(live![2]).toContain(`/${backup.pgbkPid}`);
      const refused = await dump.pgbk(['backup']);
      expect(refused.exitCode).toBe(1);
      expect(refused.stderr).toMatch(/a backup of policy it is already running: manual backup \(pgbk backup\) held by \S+ since \S+, lease until \S+/);
      expect(refused.stderr).toContain('pgbk: hint: wait for it to finish');
      // Expire (even with no age limit) never removes the folder of a live run.
      const kept = await applyExpire(planExpire([], {backups: 5}, new Date()), repo, {now: new Date(), abandonedAfterMs: 0});
      expect(kept.leftovers.map((leftover) => leftover.id)).not.toContain(id);
      expect(await readOwner(repo, id)).toMatchObject({id, pid: backup.pgbkPid});

      // SIGKILL: pgbk cannot clean up; pg_dump must still go.
      const pgbkPid = backup.pgbkPid!;
      process.kill(pgbkPid, 'SIGKILL');
      await backup.exited;
      await waitFor(() => !processAlive(dumpPid!), {timeoutMs: 15_000, what: `pg_dump (pid ${dumpPid}) to exit after pgbk was killed`});
      expect(processesMentioning('pg_dump', String(dump.cluster.port))).toEqual([]);
      await locker.query('rollback');

      // The folder is abandoned now (its owner's process is gone): verify says so, and stays clean.
      const verifyAfter = await dump.pgbk(['verify']);
      expect(verifyAfter.exitCode, verifyAfter.stdout + verifyAfter.stderr).toBe(0);
      expect(verifyAfter.stdout).toContain(`abandoned: backups/${id}/`);
      // The killed run's lease does not block the next backup for its TTL: its holder is gone.
      const next = await dump.pgbk(['backup']);
      expect(next.exitCode, next.stderr).toBe(0);
      const nextId = next.stdout.trim();
      expect(nextId).not.toBe(id);
      // Expire removes the abandoned folder (age limit lifted here; a day by default), never the new backup.
      const dry = await dump.pgbk(['expire', '--dry-run', '--json']);
      expect(dry.exitCode, dry.stderr).toBe(0);
      expect((JSON.parse(dry.stdout) as {outcome: {leftovers: unknown[]}}).outcome.leftovers).toEqual([]); // younger than a day
      const {catalog} = {catalog: await (await import('../../src/backup/manifest.js')).readCatalog(repo)};
      const outcome = await applyExpire(planExpire(catalog, {backups: 5}, new Date()), repo, {now: new Date(), abandonedAfterMs: 0});
      expect(outcome.leftovers.map((leftover) => leftover.id)).toEqual([id]);
      expect(outcome.backups).toEqual([]);
      const list = await dump.pgbk(['list', '--json']);
      expect((JSON.parse(list.stdout) as {backups: {id: string}[]}).backups.map((entry) => entry.id)).toContain(nextId);
      const verifyClean = await dump.pgbk(['verify']);
      expect(verifyClean.exitCode).toBe(0);
      expect(verifyClean.stdout).not.toContain('abandoned');
    }, 240_000);

    it('ids claimed in the same second by racing runs are all different', async (ctx) => {
      if (!(await repo.conditionalWrites()).createOnly) ctx.skip(); // the safe path is not atomic (README)
      const second = new Date('2026-11-30T01:02:03.000Z');
      const claims = await Promise.all(Array.from({length: 6}, () => claimBackupId(repo, second)));
      const ids = claims.map((claim) => claim.id);
      expect(new Set(ids).size).toBe(6);
      expect(ids.sort()[0]).toBe('20261130T010203Z');
      for (const claim of claims) expect(await readOwner(repo, claim.id)).toMatchObject({token: claim.owner.record.token});
      await repo.remove(claims.map((claim) => claim.owner.key));
    });

    it('writes a manifest only over confirmed objects, and never over another manifest', async () => {
      const id = '20261130T010500Z';
      const key = backupObjectKey(id, 'dump.pgdump');
      const manifest: BackupManifest = {
        formatVersion: 1, id, kind: 'dump', policy: 'it', strategy: 'dump', label: `pgbk ${id}`,
        startTime: '2026-11-30T01:05:00.000Z', stopTime: '2026-11-30T01:05:01.000Z', systemId: '1', pgVersionNum: 150000,
        sourceBytes: 5, storedBytes: 5, durationMs: 1000,
        objects: [{name: 'dump.pgdump', key, sizeBytes: 5, sha256: 'a'.repeat(64), compression: 'none'}],
      };
      // Object missing, then of the wrong size: no manifest.
      await expect(writeManifest(repo, manifest)).rejects.toThrow(BackupError);
      expect(await repo.stat(manifestKey(id))).toBeUndefined();
      await repo.put(key, Buffer.from('1234'));
      await expect(writeManifest(repo, manifest)).rejects.toThrow(/dump\.pgdump is 4 bytes in .*, expected 5; the manifest was not written/);
      expect(await repo.stat(manifestKey(id))).toBeUndefined();
      await repo.put(key, Buffer.from('12345'));
      await writeManifest(repo, manifest);
      const first = (await repo.getVersioned(manifestKey(id))).body;
      await expect(writeManifest(repo, {...manifest, durationMs: 2})).rejects.toThrow(/a manifest already exists/);
      expect((await repo.getVersioned(manifestKey(id))).body).toEqual(first);
      await repo.remove([key, manifestKey(id)]);
    });
  });
}

/** After the tests: SIGKILL every backup still running (pgbk's node and runuser). */
function killAll(started: BackupProcess[]): void {
  for (const backup of started) {
    for (const pid of [backup.pgbkPid, backup.child.pid]) {
      try {
        if (pid && backup.exitCode === undefined) process.kill(pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
  }
}

describe('kill -9 of pgbk backup while pg_basebackup streams (local)', () => {
  let setup: ArchivingSetup;
  const started: BackupProcess[] = [];
  beforeAll(async () => {
    setup = await setupArchiving('local', s3);
    // Enough data that pg_basebackup is still streaming when it is killed (random: gzip cannot shrink it).
    await setup.cluster.psql("create table filler as select g, md5(random()::text) || md5(random()::text) as pad from generate_series(1, 1500000) g");
  });
  afterAll(async () => {
    killAll(started);
    await setup?.destroy();
  });

  it('leaves no pg_basebackup running', async () => {
    const backup = new BackupProcess(setup.policyFile);
    started.push(backup);
    let basePid: number | undefined;
    await waitFor(() => (basePid = backup.tree().find((entry) => entry.comm === 'pg_basebackup')?.pid) !== undefined || backup.exitCode !== undefined,
      {timeoutMs: 60_000, what: 'pg_basebackup to start'});
    expect(backup.exitCode, backup.describe()).toBeUndefined();
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(processAlive(basePid!), 'still streaming when killed').toBe(true);
    process.kill(backup.pgbkPid!, 'SIGKILL');
    await backup.exited;
    await waitFor(() => !processAlive(basePid!), {timeoutMs: 15_000, what: `pg_basebackup (pid ${basePid}) to exit after pgbk was killed`});
    expect(processesMentioning('pg_basebackup', String(setup.cluster.port))).toEqual([]);
    // The server let go of the backup: a new one runs at once.
    const next = await setup.pgbk(['backup']);
    expect(next.exitCode, next.stderr).toBe(0);
  }, 240_000);
});
