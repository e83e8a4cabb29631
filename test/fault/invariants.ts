// What must hold after every fault (issue 9):
//   1. every WAL segment PostgreSQL marked archived is restorable: archive-get gives back exactly the bytes
//      PostgreSQL handed to archive_command (the rig keeps a copy of each);
//   2. nothing half-written is listed: the store itself shows only complete, well-named objects (no temp files,
//      no foreign keys), `pgbk list` works and lists only backups whose objects are all there;
//   3. `pgbk verify` is clean, or names exactly the damage the test injected;
//   4. (optional, needs a base backup) a PITR to the last acknowledged commit brings back exactly those rows.
import {randomBytes} from 'node:crypto';
import {readFileSync, readdirSync} from 'node:fs';
import {join} from 'node:path';
import {expect} from 'vitest';
import {makeTempDir, pgBinDir, runAsPostgres} from '../helpers/cluster.js';
import {freePort} from '../helpers/cluster.js';
import {parseWalObjectKey} from '../../src/storage/layout.js';
import {rowsOf, type FaultRig} from './rig.js';

export interface InvariantOptions {
  /** Verify problems the test injected; each must be reported, and nothing else. */
  expectProblems?: Array<{object: RegExp}>;
  /** Backup folders the test knows hold no manifest (a killed backup): allowed in the raw listing. */
  orphanBackups?: string[];
  /** Run the PITR proof (restore --latest --start, compare rows). Needs a base backup. */
  pitr?: boolean;
  /** Verify problems that may appear (e.g. an abandoned folder a killed backup left); anything else may not. */
  allowProblems?: RegExp[];
  /** Only segments from this one on must be restorable (retention removed the older ones). */
  fromWal?: string;
}

export interface InvariantReport {
  provenNow: string[];
  rawKeys: string[];
  verify: {ok: boolean; problems: Array<{kind: string; object: string; message: string}>};
  backups: string[];
}

/** Keys a repository may hold; anything else (temp files, partial uploads made visible) is half-written. */
export function isCompleteKey(key: string): boolean {
  if (key.startsWith('wal/')) return parseWalObjectKey(key) !== undefined;
  const backup = /^backups\/([0-9TZ_-]+[0-9A-Za-z_-]*)\/(base\.tar\.(?:gz|zst)|dump\.pgdump|manifest\.json|owner\.json)$/.exec(key);
  if (backup) return true;
  if (/^locks\/[a-z0-9_-]+\.json$/.test(key) || /^jobs\/[a-z0-9_-]+\/last\.json$/.test(key) || /^drills\/[0-9A-Za-z_-]+\.json$/.test(key)) return true;
  // The repository identity object (issue 8) and similar root-level metadata.
  if (/^[a-z][a-z0-9_-]*\.json$/.test(key)) return true;
  return false;
}

/** archive-get `walFile` into a fresh directory; returns the exit code and the file (when one was written). */
export async function archiveGet(rig: FaultRig, walFile: string): Promise<{exitCode: number; stderr: string; data?: Buffer; leftovers: string[]}> {
  const dir = makeTempDir('pgbk-get-');
  const dest = join(dir, `RESTORED-${randomBytes(3).toString('hex')}`);
  const result = await rig.pgbk(['archive-get', walFile, dest], {cwd: dir});
  let data: Buffer | undefined;
  try {
    data = readFileSync(dest);
  } catch {
    data = undefined;
  }
  const leftovers = readdirSync(dir).filter((name) => join(dir, name) !== dest);
  return {exitCode: result.exitCode, stderr: result.stderr, data, leftovers};
}

export async function checkInvariants(rig: FaultRig, opts: InvariantOptions = {}): Promise<InvariantReport> {
  // 1. Every acknowledged segment comes back byte for byte.
  const acknowledged = (await rig.acknowledged()).filter((name) => !opts.fromWal || name.slice(8) >= opts.fromWal.slice(8));
  expect(acknowledged.length, 'no acknowledged segment at all: the rig is not archiving').toBeGreaterThan(0);
  const todo = acknowledged.filter((name) => !rig.proven.has(name));
  const provenNow: string[] = [];
  for (let at = 0; at < todo.length; at += 4) {
    await Promise.all(todo.slice(at, at + 4).map(async (walFile) => {
      const got = await archiveGet(rig, walFile);
      expect(got.exitCode, `archive-get ${walFile} (acknowledged by PostgreSQL): ${got.stderr}`).toBe(0);
      expect(got.data && got.data.equals(rig.kept(walFile)), `archive-get ${walFile} returned other bytes than PostgreSQL archived`).toBe(true);
      expect(got.leftovers, `archive-get ${walFile} left files behind`).toEqual([]);
      rig.proven.add(walFile);
      provenNow.push(walFile);
    }));
  }

  // 2. Nothing half-written in the store, and pgbk list works.
  const rawKeys = await rig.rawKeys();
  const strange = rawKeys.filter((key) => !isCompleteKey(key));
  expect(strange, 'half-written or unknown objects in the repository').toEqual([]);
  const listed = await rig.pgbk(['list', '--json']);
  expect(listed.exitCode, `pgbk list: ${listed.stderr}`).toBe(0);
  const catalog = JSON.parse(listed.stdout) as {backups: Array<{id: string}>};
  const backups = catalog.backups.map((backup) => backup.id);
  for (const id of backups) {
    expect(rawKeys, `listed backup ${id} has no manifest`).toContain(`backups/${id}/manifest.json`);
  }
  const withoutManifest = [...new Set(rawKeys.filter((key) => key.startsWith('backups/')).map((key) => key.split('/')[1]!))]
    .filter((id) => !rawKeys.includes(`backups/${id}/manifest.json`));
  expect(withoutManifest.sort(), 'backup folders without a manifest (only a killed backup may leave one)').toEqual([...(opts.orphanBackups ?? [])].sort());

  // 3. verify: clean, or exactly the injected damage.
  const verified = await rig.pgbk(['verify', '--json'], {timeoutMs: 180_000});
  const report = firstJson(verified.stdout) as {ok: boolean; problems: Array<{kind: string; object: string; message: string}>};
  const expected = opts.expectProblems ?? [];
  const allowed = opts.allowProblems ?? [];
  for (const want of expected) {
    expect(report.problems.some((problem) => want.object.test(problem.object)), `verify does not name ${want.object}: ${JSON.stringify(report.problems)}`).toBe(true);
  }
  for (const problem of report.problems) {
    const known = expected.some((want) => want.object.test(problem.object)) || allowed.some((pattern) => pattern.test(problem.object));
    expect(known, `verify names damage nobody injected: ${JSON.stringify(problem)} (${verified.stderr.trim()})`).toBe(true);
  }
  expect(verified.exitCode, `pgbk verify exit code with problems ${JSON.stringify(report.problems)}`).toBe(report.problems.length === 0 ? 0 : 1);

  // 4. PITR to the last acknowledged commit.
  if (opts.pitr) await provePitr(rig);
  return {provenNow, rawKeys, verify: report, backups};
}

/**
 * The last commit is acknowledged once its segment is archived: switch, wait, restore --latest --start into a new
 * directory, and compare the rows with those recorded at the commit.
 */
export async function provePitr(rig: FaultRig, extra: string[] = []): Promise<void> {
  expect(rig.expectedRows, 'nothing committed to prove').toBeDefined();
  const wal = await rig.switchWal();
  await rig.waitArchived(wal);
  const restored = await restoreLatest(rig, extra);
  try {
    expect(restored.result.exitCode, `restore --latest --start: ${restored.result.stderr}`).toBe(0);
    expect(await rowsOf(restored.url)).toEqual(rig.expectedRows);
  } finally {
    await restored.stop();
  }
}

export async function restoreLatest(rig: FaultRig, extra: string[] = []): Promise<{result: {exitCode: number; stdout: string; stderr: string}; url: string; dataDir: string; stop(): Promise<void>}> {
  const base = makeTempDir('pgbk-fault-restored-');
  const dataDir = join(base, 'data');
  const port = await freePort();
  const result = await rig.pgbk(['restore', '--to', dataDir, '--latest', '--start', '--port', String(port), '--timeout', '120', ...extra], {timeoutMs: 200_000});
  return {
    result, dataDir, url: `postgresql://postgres@127.0.0.1:${port}/postgres`,
    stop: async () => {
      await runAsPostgres(join(pgBinDir(), 'pg_ctl'), ['-D', dataDir, '-m', 'immediate', '-w', 'stop'], {timeoutMs: 30_000});
    },
  };
}

/** The first JSON document of a --json output (an error document may follow the report). */
export function firstJson(stdout: string): unknown {
  try {
    return JSON.parse(stdout);
  } catch {
    const end = stdout.indexOf('\n}\n');
    return JSON.parse(end >= 0 ? stdout.slice(0, end + 2) : stdout.split('\n')[0]!);
  }
}
