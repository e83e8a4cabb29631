// The scratch cluster of a drill: a temp directory holding the data directory, its own socket directory, its own
// pg_hba.conf and log, started on a free loopback port with archiving off, and always stopped and removed —
// also when the drill fails or pgbk receives SIGTERM/SIGINT.

import {chown, mkdir, mkdtemp, readFile, rm, stat, writeFile, access} from 'node:fs/promises';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import {execa} from 'execa';
import {RestoreError} from '../errors.js';
import {pgBinary} from '../pg/bin.js';
import {asOwnerOf, isRoot} from '../pg/owner.js';
import {postmasterPid} from '../pg/postmaster.js';
import {processAlive} from '../util/process.js';

export interface ScratchDirs {
  baseDir: string;
  dataDir: string;
  socketDir: string;
  logFile: string;
  hbaFile: string;
}

export async function makeScratchDirs(drillId: string): Promise<ScratchDirs> {
  const baseDir = await mkdtemp(join(tmpdir(), `pgbk-drill-${drillId.replace(/[^0-9A-Za-z]/g, '')}-`));
  return {baseDir, dataDir: join(baseDir, 'data'), socketDir: join(baseDir, 'socket'), logFile: join(baseDir, 'server.log'), hbaFile: join(baseDir, 'pg_hba.conf')};
}

export {freeLoopbackPort} from '../util/net.js';

export interface ScratchServerOptions {
  dirs: ScratchDirs;
  binDir?: string;
  port: number;
}

/**
 * Starts the restored data directory without waiting: the server never touches the source's port, sockets or
 * archive. Only local (socket) connections are accepted, from our 0700 socket directory, with trust.
 */
export async function startScratchServer(options: ScratchServerOptions): Promise<void> {
  const {dirs} = options;
  await mkdir(dirs.socketDir, {mode: 0o700, recursive: true});
  await writeFile(dirs.hbaFile, '# pgbk drill: only the drill, through its private socket directory\nlocal all all trust\n', {mode: 0o600});
  // A data directory restored from a Debian-style cluster holds no postgresql.conf (it lives in /etc).
  await access(join(dirs.dataDir, 'postgresql.conf')).catch(() => writeFile(join(dirs.dataDir, 'postgresql.conf'), '', {mode: 0o600}));
  if (isRoot()) {
    const owner = await stat(join(dirs.dataDir, 'PG_VERSION'));
    for (const path of [dirs.baseDir, dirs.socketDir, dirs.hbaFile, join(dirs.dataDir, 'postgresql.conf')]) await chown(path, owner.uid, owner.gid);
  }
  const settings: Record<string, string> = {
    port: String(options.port),
    listen_addresses: '127.0.0.1',
    unix_socket_directories: dirs.socketDir,
    hba_file: dirs.hbaFile,
    archive_mode: 'off',
    logging_collector: 'off',
    log_timezone: 'UTC',
    // The drill reads where recovery stopped from this log: PostgreSQL's English, whatever postgresql.conf says.
    lc_messages: 'C',
    synchronous_standby_names: '',
    cluster_name: 'pgbk-drill',
    hot_standby: 'off',
  };
  const serverOptions = Object.entries(settings).map(([name, value]) => `-c ${name}='${value.replace(/'/g, '')}'`).join(' ');
  const [file, args] = asOwnerOf(dirs.dataDir, pgBinary(options.binDir, 'pg_ctl'), ['-D', dirs.dataDir, '-l', dirs.logFile, '-W', '-o', serverOptions, 'start']);
  try {
    await execa(file, args, {env: {LC_ALL: 'C'}, stdin: 'ignore', stdout: 'ignore', stderr: 'pipe', timeout: 60_000});
  } catch (error) {
    throw new RestoreError(`cannot start the scratch server: ${(error as {shortMessage?: string}).shortMessage}\n${await logTail(dirs.logFile, 8)}`, undefined, {cause: error});
  }
}

/** The postmaster's pid from postmaster.pid, when it is alive. */

/** pg_ctl -m immediate stop, then SIGKILL if the postmaster is still there; bounded. */
export async function stopScratchServer(dataDir: string, binDir?: string): Promise<void> {
  const pid = await postmasterPid(dataDir);
  if (pid === undefined) return;
  try {
    const [file, args] = asOwnerOf(dataDir, pgBinary(binDir, 'pg_ctl'), ['-D', dataDir, '-m', 'immediate', '-w', '-t', '20', 'stop']);
    await execa(file, args, {reject: false, stdin: 'ignore', stdout: 'ignore', stderr: 'ignore', timeout: 30_000});
  } catch {
    // fall through to SIGKILL
  }
  const deadline = Date.now() + 10_000;
  while (processAlive(pid) && Date.now() < deadline) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      break;
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

export async function logTail(logFile: string, count: number): Promise<string> {
  return (await readFile(logFile, 'utf8').catch(() => '')).trim().split('\n').slice(-count).join('\n');
}

// ---------------------------------------------------------------------------------------------------------------
// Cleanup on SIGTERM / SIGINT while a drill runs.

type Cleanup = () => Promise<void>;
const cleanups = new Set<Cleanup>();
let installed: {term: () => void; int: () => void} | undefined;

/**
 * Registers `cleanup` to run if pgbk is told to stop (SIGTERM, SIGINT) before `release` is called. The handler
 * runs every registered cleanup, then re-raises the signal so that pgbk ends as the signal demands.
 */
export function onInterrupt(cleanup: Cleanup): () => void {
  cleanups.add(cleanup);
  if (!installed) {
    const handler = (signal: NodeJS.Signals) => () => {
      void runCleanups().finally(() => {
        uninstall();
        process.kill(process.pid, signal);
      });
    };
    installed = {term: handler('SIGTERM'), int: handler('SIGINT')};
    process.on('SIGTERM', installed.term);
    process.on('SIGINT', installed.int);
  }
  return () => {
    cleanups.delete(cleanup);
    if (cleanups.size === 0) uninstall();
  };
}

let running: Promise<void> | undefined;
function runCleanups(): Promise<void> {
  running ??= (async () => {
    process.stderr.write('pgbk: drill interrupted: stopping the scratch server and removing its directory\n');
    for (const cleanup of [...cleanups]) await cleanup().catch(() => undefined);
  })();
  return running;
}

function uninstall(): void {
  if (!installed) return;
  process.off('SIGTERM', installed.term);
  process.off('SIGINT', installed.int);
  installed = undefined;
}

export async function removeDir(dir: string): Promise<void> {
  await rm(dir, {recursive: true, force: true, maxRetries: 3});
}
