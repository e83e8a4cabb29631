// Leftover cleanup shared by cluster.ts (process exit) and global-setup.ts (teardown).
// Every temp dir a helper creates is recorded as a file in <run dir>/dirs; at the end of the run any
// postmaster still running from one of them is stopped (SIGQUIT, then SIGKILL) and the dir removed.
import {existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync} from 'node:fs';
import {createHash} from 'node:crypto';
import {join} from 'node:path';
import {processAlive} from '../../src/util/process.js';

export const RUN_DIR_ENV = 'PGBK_TEST_RUN_DIR';

function recordName(dir: string): string {
  return createHash('sha1').update(dir).digest('hex');
}

/** Record a temp dir for end-of-run cleanup (no-op outside a vitest run with global-setup). */
export function recordDir(dir: string): void {
  const runDir = process.env[RUN_DIR_ENV];
  if (!runDir || !existsSync(runDir)) return;
  const dirs = join(runDir, 'dirs');
  mkdirSync(dirs, {recursive: true});
  writeFileSync(join(dirs, recordName(dir)), dir);
}

export function forgetDir(dir: string): void {
  const runDir = process.env[RUN_DIR_ENV];
  if (!runDir) return;
  rmSync(join(runDir, 'dirs', recordName(dir)), {force: true});
}

/** PID of the postmaster running from dataDir, if postmaster.pid names a live postgres process. */
export function livePostmasterPid(dataDir: string): number | undefined {
  let pid: number;
  try {
    pid = Number.parseInt(readFileSync(join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0] ?? '', 10);
  } catch {
    return undefined;
  }
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  try {
    const comm = readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
    if (!/postgres|postmaster/.test(comm)) return undefined;
  } catch {
    // No /proc (not Linux): fall back to "is there such a process".
    try {
      process.kill(pid, 0);
    } catch {
      return undefined;
    }
  }
  return pid;
}


/** Data dirs (dirs holding postmaster.pid) at depth 0..2 under root. */
export function findDataDirs(root: string, depth = 2): string[] {
  const found: string[] = [];
  if (existsSync(join(root, 'postmaster.pid'))) found.push(root);
  if (depth === 0) return found;
  let entries: string[];
  try {
    entries = readdirSync(root);
  } catch {
    return found;
  }
  for (const entry of entries) {
    const path = join(root, entry);
    try {
      if (statSync(path).isDirectory()) found.push(...findDataDirs(path, depth - 1));
    } catch {
      // vanished
    }
  }
  return found;
}

/** Synchronous: immediate-stop (SIGQUIT) each postmaster; returns the pids signalled. */
export function signalPostmasters(dataDirs: string[], signal: NodeJS.Signals = 'SIGQUIT'): number[] {
  const pids: number[] = [];
  for (const dataDir of dataDirs) {
    const pid = livePostmasterPid(dataDir);
    if (pid === undefined) continue;
    try {
      process.kill(pid, signal);
      pids.push(pid);
    } catch {
      // already gone
    }
  }
  return pids;
}

/** Stop postmasters (bounded: 10 s, then SIGKILL) and wait up to 5 s more for them to exit. */
export async function killPostmasters(dataDirs: string[]): Promise<void> {
  const pids = signalPostmasters(dataDirs);
  const deadline = Date.now() + 10_000;
  while (pids.some(processAlive) && Date.now() < deadline) await sleep(100);
  for (const pid of pids.filter(processAlive)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone
    }
  }
  const killDeadline = Date.now() + 5_000;
  while (pids.some(processAlive) && Date.now() < killDeadline) await sleep(100);
}

export async function cleanupRecordedDirs(runDir: string): Promise<void> {
  const dirsDir = join(runDir, 'dirs');
  if (!existsSync(dirsDir)) return;
  const dirs = readdirSync(dirsDir).map((name) => readFileSync(join(dirsDir, name), 'utf8'));
  await killPostmasters(dirs.flatMap((dir) => findDataDirs(dir)));
  for (const dir of dirs) rmSync(dir, {recursive: true, force: true});
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
