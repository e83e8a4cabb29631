// Throwaway PostgreSQL clusters for integration tests.
//
// PostgreSQL refuses to run as root, so when the tests run as root every PostgreSQL binary (and the
// files it owns) runs as the `postgres` OS user through `runuser -u postgres --`. Each cluster lives
// in its own mkdtemp dir: <base>/data (the data dir, 0700), the Unix socket, and <base>/postgres.log.
// Every wait is bounded; leftovers are stopped by afterAll (per test file), on process exit, and by
// the global teardown (see cleanup.ts).
import {execFileSync} from 'node:child_process';
import {chmodSync, chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, appendFileSync, rmSync} from 'node:fs';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import {execa} from 'execa';
import pg from 'pg';
import {afterAll} from 'vitest';
import {forgetDir, killPostmasters, livePostmasterPid, recordDir, signalPostmasters, sleep} from './cleanup.js';
import {freeLoopbackPort} from '../../src/util/net.js';

export type ConfInput = string[] | Record<string, string | number | boolean>;
export type StopMode = 'smart' | 'fast' | 'immediate';

export interface ExecResult {
  exitCode: number;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

export interface ExecOptions {
  input?: string | Buffer;
  env?: Record<string, string>;
  cwd?: string;
  timeoutMs?: number;
}

export interface CreateClusterOptions {
  /** postgresql.conf settings, appended after the harness's (port, sockets, listen) so they win. */
  conf?: ConfInput;
  /** Extra initdb arguments. */
  initdbArgs?: string[];
  /** Start the server after initdb (default true). */
  start?: boolean;
  /** Fixed port (default: a free loopback port). */
  port?: number;
  /** PostgreSQL bin dir (default: pgBinDir()). */
  binDir?: string;
  /** mkdtemp prefix (default 'pgbk-cluster-'). */
  prefix?: string;
}

export interface StartExistingOptions {
  /** Seconds pg_ctl waits for the server to accept connections (default 120). */
  timeoutSec?: number;
  /** Extra server options for pg_ctl -o (e.g. '-c hot_standby=off'). */
  serverOptions?: string;
  /** Remove dataDir too on destroy() (default true). */
  removeDataDirOnDestroy?: boolean;
  binDir?: string;
}

export interface Cluster {
  /** Temp dir holding the socket and the log (and, for createCluster, data/). */
  readonly baseDir: string;
  readonly dataDir: string;
  readonly port: number;
  readonly binDir: string;
  readonly socketDir: string;
  readonly logFile: string;
  /** postgresql://postgres@127.0.0.1:<port>/postgres */
  readonly url: string;
  urlFor(database: string): string;
  start(timeoutSec?: number): Promise<void>;
  stop(mode?: StopMode): Promise<void>;
  restart(): Promise<void>;
  reload(): Promise<void>;
  /** A postmaster is running from dataDir. */
  isRunning(): boolean;
  query<R = Record<string, unknown>>(sql: string, params?: unknown[], opts?: {database?: string}): Promise<R[]>;
  /** psql -X -At -v ON_ERROR_STOP=1 -c sql; stdout without the final newline; throws on failure. */
  psql(sql: string, opts?: {database?: string; args?: string[]}): Promise<string>;
  /** Run <binDir>/<tool> as postgres (never throws on a non-zero exit). */
  exec(tool: string, args: string[], opts?: ExecOptions): Promise<ExecResult>;
  /** Append settings to postgresql.conf (takes effect on restart/reload). */
  appendConf(conf: ConfInput): void;
  /** The server log so far. */
  log(): string;
  /** Poll until the server has left recovery (bounded). */
  waitUntilPromoted(timeoutMs?: number): Promise<void>;
  /** Immediate stop (bounded, SIGKILL fallback) and rm -rf. */
  destroy(): Promise<void>;
}

const PG_CTL_TIMEOUT_SEC = 60;
const registry = new Set<Cluster>();

// ---------------------------------------------------------------------------------------------
// OS user, binaries, ports, temp dirs

export const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;

let postgresIds: {uid: number; gid: number; home: string} | undefined;
/** uid/gid/home of the `postgres` OS user (only needed, and only looked up, when running as root). */
export function postgresUser(): {uid: number; gid: number; home: string} {
  if (postgresIds) return postgresIds;
  const line = execFileSync('getent', ['passwd', 'postgres'], {encoding: 'utf8'}).trim();
  const [, , uid, gid, , home] = line.split(':');
  if (!uid || !gid) throw new Error(`cannot find the postgres OS user (getent passwd postgres: ${JSON.stringify(line)})`);
  postgresIds = {uid: Number(uid), gid: Number(gid), home: home || '/var/lib/postgresql'};
  return postgresIds;
}

let binDirCache: string | undefined;
/**
 * PostgreSQL bin dir: PGBK_TEST_PG_BIN_DIR, else `pg_config --bindir` (if it holds initdb), else the
 * newest /usr/lib/postgresql/<version>/bin.
 */
export function pgBinDir(): string {
  if (binDirCache) return binDirCache;
  const searched: string[] = [];
  const candidates: string[] = [];
  if (process.env.PGBK_TEST_PG_BIN_DIR) candidates.push(process.env.PGBK_TEST_PG_BIN_DIR);
  try {
    candidates.push(execFileSync('pg_config', ['--bindir'], {encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore']}).trim());
  } catch {
    searched.push('pg_config --bindir (not found)');
  }
  try {
    const versions = readdirSync('/usr/lib/postgresql')
      .filter((v) => /^\d+(\.\d+)?$/.test(v))
      .sort((a, b) => Number.parseFloat(b) - Number.parseFloat(a));
    candidates.push(...versions.map((v) => `/usr/lib/postgresql/${v}/bin`));
  } catch {
    searched.push('/usr/lib/postgresql/*/bin (none)');
  }
  for (const dir of candidates) {
    if (existsSync(join(dir, 'initdb')) && existsSync(join(dir, 'pg_ctl'))) return (binDirCache = dir);
    searched.push(dir);
  }
  throw new Error(`PostgreSQL server binaries (initdb, pg_ctl) not found; searched: ${searched.join(', ')}`);
}

/** A free TCP port on 127.0.0.1. */
export const freePort = freeLoopbackPort;

/** Give a path to the postgres user (when root; otherwise it is already ours). */
export function chownToPostgres(path: string): void {
  if (!isRoot) return;
  const {uid, gid} = postgresUser();
  chownSync(path, uid, gid);
}

/**
 * A fresh dir under os.tmpdir(), mode 0700, owned by postgres when running as root, recorded for
 * end-of-run cleanup (postmasters running from it are stopped, then it is removed).
 */
export function makeTempDir(prefix = 'pgbk-test-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  chmodSync(dir, 0o700);
  chownToPostgres(dir);
  recordDir(dir);
  return dir;
}

// ---------------------------------------------------------------------------------------------
// Running things as postgres

/**
 * Run a command as the postgres OS user when root (runuser -u postgres -- cmd ...), else as
 * ourselves. Never throws on a non-zero exit; bounded by timeoutMs (default 120 s).
 */
export async function runAsPostgres(cmd: string, args: string[], opts: ExecOptions = {}): Promise<ExecResult> {
  const [file, argv] = isRoot ? ['runuser', ['-u', 'postgres', '--', cmd, ...args]] : [cmd, args];
  const result = await execa(file, argv, {
    reject: false,
    input: opts.input,
    env: opts.env,
    cwd: opts.cwd,
    timeout: opts.timeoutMs ?? 120_000,
    killSignal: 'SIGTERM',
    forceKillAfterDelay: 5_000,
    stripFinalNewline: false,
    encoding: 'utf8',
  });
  return {
    exitCode: result.exitCode ?? (result.signal ? 128 : -1),
    stdout: String(result.stdout ?? ''),
    stderr: String(result.stderr ?? ''),
    timedOut: Boolean(result.timedOut),
  };
}

function describe(what: string, result: ExecResult): string {
  const status = result.timedOut ? 'timed out' : `exit ${result.exitCode}`;
  return `${what} failed (${status})\n${result.stdout}${result.stderr}`.trimEnd();
}

function tail(path: string, lines = 80): string {
  try {
    return readFileSync(path, 'utf8').split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

export function confLines(conf: ConfInput): string[] {
  if (Array.isArray(conf)) return conf;
  return Object.entries(conf).map(([key, value]) => {
    if (typeof value === 'boolean') return `${key} = ${value ? 'on' : 'off'}`;
    if (typeof value === 'number') return `${key} = ${value}`;
    if (/^'.*'$/s.test(value)) return `${key} = ${value}`;
    return `${key} = '${value.replace(/\\/g, '\\\\').replace(/'/g, "''")}'`;
  });
}

/** Poll fn until it returns a truthy value; throws after timeoutMs with the last error. */
export async function waitFor<T>(
  fn: () => Promise<T> | T,
  {timeoutMs = 30_000, intervalMs = 200, what = 'condition'}: {timeoutMs?: number; intervalMs?: number; what?: string} = {},
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await fn();
      if (value) return value;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() >= deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastError ? `: ${String(lastError)}` : ''}`);
    }
    await sleep(intervalMs);
  }
}

// ---------------------------------------------------------------------------------------------
// Clusters

class PgCluster implements Cluster {
  readonly url: string;
  private serverOptions: string;

  constructor(
    readonly baseDir: string,
    readonly dataDir: string,
    readonly port: number,
    readonly binDir: string,
    readonly socketDir: string,
    readonly logFile: string,
    serverOptions: string,
    private readonly removeOnDestroy: string[],
  ) {
    this.url = this.urlFor('postgres');
    this.serverOptions = serverOptions;
  }

  urlFor(database: string): string {
    return `postgresql://postgres@127.0.0.1:${this.port}/${encodeURIComponent(database)}`;
  }

  private pgCtl(args: string[], timeoutSec = PG_CTL_TIMEOUT_SEC): Promise<ExecResult> {
    return runAsPostgres(join(this.binDir, 'pg_ctl'), ['-D', this.dataDir, ...args], {timeoutMs: (timeoutSec + 30) * 1000});
  }

  async start(timeoutSec = PG_CTL_TIMEOUT_SEC): Promise<void> {
    const args = ['-l', this.logFile, '-w', '-t', String(timeoutSec)];
    if (this.serverOptions) args.push('-o', this.serverOptions);
    const result = await this.pgCtl([...args, 'start'], timeoutSec);
    if (result.exitCode !== 0) {
      // pg_ctl may give up while the postmaster lives on: do not leak it.
      await killPostmasters([this.dataDir]);
      throw new Error(`${describe(`pg_ctl start -D ${this.dataDir} (port ${this.port})`, result)}\n--- ${this.logFile} ---\n${tail(this.logFile)}`);
    }
  }

  async stop(mode: StopMode = 'fast'): Promise<void> {
    if (!this.isRunning()) return;
    const result = await this.pgCtl(['-m', mode, '-w', '-t', String(PG_CTL_TIMEOUT_SEC), 'stop']);
    if (result.exitCode !== 0 && this.isRunning()) {
      throw new Error(`${describe(`pg_ctl stop -m ${mode} -D ${this.dataDir}`, result)}\n--- ${this.logFile} ---\n${tail(this.logFile)}`);
    }
  }

  async restart(): Promise<void> {
    await this.stop('fast');
    await this.start();
  }

  async reload(): Promise<void> {
    const result = await this.pgCtl(['reload']);
    if (result.exitCode !== 0) throw new Error(describe('pg_ctl reload', result));
  }

  isRunning(): boolean {
    return livePostmasterPid(this.dataDir) !== undefined;
  }

  async query<R = Record<string, unknown>>(sql: string, params: unknown[] = [], opts: {database?: string} = {}): Promise<R[]> {
    const client = new pg.Client({
      host: '127.0.0.1',
      port: this.port,
      user: 'postgres',
      database: opts.database ?? 'postgres',
      connectionTimeoutMillis: 10_000,
      query_timeout: 120_000,
    });
    // Errors after connect (e.g. the server being stopped under us) must not crash the worker.
    client.on('error', () => {});
    await client.connect();
    try {
      const result = await client.query(sql, params);
      return result.rows as R[];
    } finally {
      await client.end().catch(() => {});
    }
  }

  async psql(sql: string, opts: {database?: string; args?: string[]} = {}): Promise<string> {
    const result = await this.exec('psql', [
      '-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1',
      '-h', '127.0.0.1', '-p', String(this.port), '-U', 'postgres', '-d', opts.database ?? 'postgres',
      ...(opts.args ?? []), '-c', sql,
    ]);
    if (result.exitCode !== 0) throw new Error(describe(`psql -c ${JSON.stringify(sql)}`, result));
    return result.stdout.replace(/\n$/, '');
  }

  exec(tool: string, args: string[], opts: ExecOptions = {}): Promise<ExecResult> {
    return runAsPostgres(tool.includes('/') ? tool : join(this.binDir, tool), args, {cwd: this.baseDir, ...opts});
  }

  appendConf(conf: ConfInput): void {
    appendFileSync(join(this.dataDir, 'postgresql.conf'), `${confLines(conf).join('\n')}\n`);
  }

  log(): string {
    try {
      return readFileSync(this.logFile, 'utf8');
    } catch {
      return '';
    }
  }

  async waitUntilPromoted(timeoutMs = 120_000): Promise<void> {
    try {
      await waitFor(async () => {
        if (!this.isRunning()) throw new Error('server is not running');
        const [row] = await this.query<{r: boolean}>('select pg_is_in_recovery() as r');
        return row?.r === false;
      }, {timeoutMs, intervalMs: 250, what: `promotion of the server on port ${this.port}`});
    } catch (err) {
      throw new Error(`${(err as Error).message}\n--- ${this.logFile} ---\n${tail(this.logFile)}`);
    }
  }

  async destroy(): Promise<void> {
    registry.delete(this);
    if (this.isRunning()) {
      await this.pgCtl(['-m', 'immediate', '-w', '-t', '30', 'stop'], 30);
      if (this.isRunning()) await killPostmasters([this.dataDir]);
    }
    for (const dir of this.removeOnDestroy) {
      rmSync(dir, {recursive: true, force: true});
      forgetDir(dir);
    }
  }
}

/**
 * initdb (-E UTF8, --locale=C, --auth=trust, data checksums) into a fresh temp dir, write the
 * harness settings (port, listen_addresses='127.0.0.1', unix_socket_directories=<base dir>) then the
 * caller's conf, and start it with pg_ctl -w (unless start: false).
 */
export async function createCluster(opts: CreateClusterOptions = {}): Promise<Cluster> {
  const binDir = opts.binDir ?? pgBinDir();
  const baseDir = makeTempDir(opts.prefix ?? 'pgbk-cluster-');
  const dataDir = join(baseDir, 'data');
  const logFile = join(baseDir, 'postgres.log');
  const port = opts.port ?? (await freePort());
  const cluster = new PgCluster(baseDir, dataDir, port, binDir, baseDir, logFile, '', [baseDir]);
  registry.add(cluster);
  try {
    const initdb = await runAsPostgres(join(binDir, 'initdb'), [
      '-D', dataDir, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--locale=C', '--data-checksums', '--no-sync',
      ...(opts.initdbArgs ?? []),
    ], {cwd: baseDir});
    if (initdb.exitCode !== 0) throw new Error(describe(`initdb -D ${dataDir}`, initdb));
    cluster.appendConf([
      '# pgbk test harness',
      `port = ${port}`,
      `listen_addresses = '127.0.0.1'`,
      `unix_socket_directories = '${baseDir}'`,
      `logging_collector = off`,
      ...(opts.conf ? confLines(opts.conf) : []),
    ]);
    if (opts.start ?? true) await cluster.start();
    return cluster;
  } catch (err) {
    await cluster.destroy();
    throw err;
  }
}

/**
 * Start an existing (e.g. restored) data dir: pg_ctl -D dataDir -l <log> -o "-p port -k <sock dir>
 * -c listen_addresses=127.0.0.1" -w -t timeout start. The socket dir and log live in a fresh temp
 * dir (so nothing depends on the original cluster's settings). On failure the error carries the
 * pg_ctl output and the server log, and no postmaster is left running.
 */
export async function startExisting(dataDir: string, port?: number, opts: StartExistingOptions = {}): Promise<Cluster> {
  const binDir = opts.binDir ?? pgBinDir();
  const sockDir = makeTempDir('pgbk-sock-');
  const logFile = join(sockDir, 'postgres.log');
  const thePort = port ?? (await freePort());
  const serverOptions = [`-p ${thePort}`, `-k '${sockDir}'`, `-c listen_addresses=127.0.0.1`, opts.serverOptions ?? '']
    .filter(Boolean)
    .join(' ');
  const remove = opts.removeDataDirOnDestroy ?? true ? [sockDir, dataDir] : [sockDir];
  const cluster = new PgCluster(sockDir, dataDir, thePort, binDir, sockDir, logFile, serverOptions, remove);
  registry.add(cluster);
  if (opts.removeDataDirOnDestroy ?? true) recordDir(dataDir);
  try {
    await cluster.start(opts.timeoutSec ?? 120);
  } catch (err) {
    registry.delete(cluster);
    rmSync(sockDir, {recursive: true, force: true});
    forgetDir(sockDir);
    throw err;
  }
  return cluster;
}

/** Destroy every cluster this process created and has not destroyed yet. */
export async function destroyAllClusters(): Promise<void> {
  await Promise.allSettled([...registry].map((cluster) => cluster.destroy()));
}

// Per test file: clean up what the file forgot. Harmless outside a test file (then it throws and we
// rely on the exit hook and the global teardown).
try {
  afterAll(destroyAllClusters);
} catch {
  // not collecting a test file
}

process.once('exit', () => {
  const clusters = [...registry];
  signalPostmasters(clusters.map((cluster) => cluster.dataDir));
});

/** Rows of one query on a fresh connection to `url` (a server the test does not hold a Cluster for). */
export async function queryAt(url: string, sql: string): Promise<Array<Record<string, unknown>>> {
  const client = new pg.Client({connectionString: url});
  await client.connect();
  try {
    return (await client.query(sql)).rows;
  } finally {
    await client.end();
  }
}
