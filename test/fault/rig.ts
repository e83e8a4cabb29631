// The fault suite's set-up: a real PostgreSQL cluster whose archive_command is pgbk, a repository (S3 through the
// fault proxy, or a local directory), a copy of every WAL file PostgreSQL handed to archive_command (to compare
// restored bytes against), and ways to run pgbk as the postgres user and kill it at a chosen point.
import {spawn} from 'node:child_process';
import {existsSync, mkdirSync, readdirSync, readFileSync} from 'node:fs';
import {join} from 'node:path';
import {GetObjectCommand, ListObjectsV2Command, ListMultipartUploadsCommand, type S3Client} from '@aws-sdk/client-s3';
import pg from 'pg';
import {baseEnv, pgbkBin, runPgbk, type RunPgbkResult} from '../helpers/cli.js';
import {chownToPostgres, createCluster, freePort, isRoot, makeTempDir, pgBinDir, postgresUser, waitFor, type Cluster} from '../helpers/cluster.js';
import {writePolicy} from '../helpers/pitr.js';
import {createS3Client, repositoryPolicy, uniquePrefix, type S3TestEndpoint} from '../helpers/s3.js';
import {startFaultProxy, type FaultProxy} from './proxy.js';

export type RepoKind = 'local' | 's3';

export interface Spawned {
  readonly pid: number;
  readonly result: Promise<RunPgbkResult & {signal: NodeJS.Signals | null}>;
  kill(signal?: NodeJS.Signals): void;
}

export interface RigOptions {
  /** Local repositories: the directory to use as the repository root (e.g. on a small tmpfs). */
  repoDir?: string;
  conf?: Record<string, string | number | boolean>;
  policy?: Record<string, unknown>;
  /** Label for the S3 prefix. */
  label?: string;
}

export interface ArchiveStatus {
  archived: number;
  failed: number;
  lastArchived: string | null;
  lastFailed: string | null;
}

export class FaultRig {
  /** Segments already proven restorable byte for byte (archive-get compared with the kept copy). */
  readonly proven = new Set<string>();
  /** Rows as committed (and acknowledged) last, for the PITR invariant. */
  expectedRows: {rows: number; digest: string} | undefined;

  private constructor(
    readonly kind: RepoKind,
    readonly s3: S3TestEndpoint,
    readonly dir: string,
    readonly keepDir: string,
    readonly policyFile: string,
    readonly cluster: Cluster,
    readonly proxy: FaultProxy | undefined,
    readonly prefix: string | undefined,
    readonly repoDir: string | undefined,
    private readonly client: S3Client | undefined,
  ) {}

  static async create(kind: RepoKind, s3: S3TestEndpoint, opts: RigOptions = {}): Promise<FaultRig> {
    const dir = makeTempDir('pgbk-fault-');
    const keepDir = join(dir, 'keep');
    mkdirSync(keepDir);
    chownToPostgres(keepDir);
    let proxy: FaultProxy | undefined;
    let prefix: string | undefined;
    let repoDir: string | undefined;
    let section: Record<string, unknown>;
    if (kind === 's3') {
      proxy = await startFaultProxy(s3.endpoint);
      prefix = uniquePrefix(opts.label ?? 'fault');
      proxy.keyPrefix = `${prefix}/`;
      section = {...repositoryPolicy(s3, prefix), endpoint: proxy.endpoint};
    } else {
      repoDir = opts.repoDir ?? join(dir, 'repo');
      if (!existsSync(repoDir)) mkdirSync(repoDir);
      chownToPostgres(repoDir);
      section = {url: `file://${repoDir}`};
    }
    const port = await freePort();
    const policyFile = writePolicy(dir, 'fault', {
      strategy: 'pitr',
      postgres: {url: `postgresql://postgres@127.0.0.1:${port}/postgres`, bin_dir: pgBinDir()},
      repository: section,
      ...opts.policy,
    });
    // Keep a copy of what PostgreSQL hands over, then archive it: the copy is what a restore must give back.
    const archiveCommand = `cp %p ${keepDir}/%f.tmp && mv ${keepDir}/%f.tmp ${keepDir}/%f && exec ${process.execPath} ${pgbkBin} archive-push --policy ${policyFile} %p`;
    let cluster: Cluster;
    try {
      cluster = await createCluster({
        port,
        conf: {wal_level: 'replica', archive_mode: 'on', archive_command: archiveCommand, max_wal_senders: 4, archive_timeout: 0, ...opts.conf},
      });
    } catch (error) {
      await proxy?.close();
      throw error;
    }
    const rig = new FaultRig(kind, s3, dir, keepDir, policyFile, cluster, proxy, prefix, repoDir, kind === 's3' ? createS3Client(s3) : undefined);
    await rig.init();
    return rig;
  }

  /** `pgbk init` where this pgbk has it (repository identity, issue 8); older builds have no such command. */
  private async init(): Promise<void> {
    const result = await this.pgbk(['init']);
    if (result.exitCode === 0) return;
    if (/unknown command/i.test(result.stderr)) return;
    throw new Error(`pgbk init failed (exit ${result.exitCode}):\n${result.stderr}${result.stdout}`);
  }

  pgbk(args: string[], opts: {env?: Record<string, string>; cwd?: string; timeoutMs?: number} = {}): Promise<RunPgbkResult> {
    return runPgbk([...args, '--policy', this.policyFile], opts);
  }

  /** pgbk started directly as the postgres user (no wrapper process): `pid` is pgbk's own. */
  spawn(args: string[], opts: {env?: Record<string, string>; cwd?: string; policyFile?: string} = {}): Spawned {
    return spawnPgbk([...args, '--policy', opts.policyFile ?? this.policyFile], opts);
  }

  /** PIDs of pgbk processes (of this rig's policy) running `command` (exactly that sub-command). */
  pgbkPids(command: string): number[] {
    return pgbkProcesses(this.policyFile).filter((process) => process.argv.includes(command)).map((process) => process.pid);
  }

  async status(): Promise<ArchiveStatus> {
    const [row] = await this.cluster.query<{archived: string; failed: string; last: string | null; lastfailed: string | null}>(
      `select archived_count::text as archived, failed_count::text as failed, last_archived_wal as last, last_failed_wal as lastfailed from pg_stat_archiver`);
    return {archived: Number(row!.archived), failed: Number(row!.failed), lastArchived: row!.last, lastFailed: row!.lastfailed};
  }

  /** Commit `count` rows in one transaction, then remember the table's content as the expected PITR result. */
  async commit(label: string, count = 100): Promise<void> {
    await this.cluster.psql(`create table if not exists items (id bigserial primary key, label text not null, payload text not null)`);
    await this.cluster.psql(`insert into items (label, payload) select '${label}', md5(g::text || '${label}') from generate_series(1, ${count}) g`);
    this.expectedRows = await rowsOf(this.cluster.url);
  }

  /** pg_switch_wal(); returns the name of the segment just closed (now .ready). */
  async switchWal(): Promise<string> {
    const [row] = await this.cluster.query<{wal: string}>(`select pg_walfile_name(pg_switch_wal()) as wal`);
    return row!.wal;
  }

  /** Waits until PostgreSQL reports `wal` (or a later file) archived. */
  async waitArchived(wal: string, timeoutMs = 60_000): Promise<void> {
    await waitFor(async () => {
      const status = await this.status();
      return status.lastArchived !== null && status.lastArchived >= wal;
    }, {timeoutMs, intervalMs: 100, what: `archiving of ${wal} (${this.cluster.logFile})`});
  }

  /** Waits until archive_command has failed for `wal` at least `times` more times than `since`. */
  async waitFailed(wal: string, since: ArchiveStatus, times = 1, timeoutMs = 60_000): Promise<ArchiveStatus> {
    const status = await waitFor(async () => {
      const now = await this.status();
      return now.lastFailed === wal && now.failed >= since.failed + times ? now : undefined;
    }, {timeoutMs, intervalMs: 100, what: `a failed archiving of ${wal}`});
    return status!;
  }

  /** Switch, commit something first so the segment is not empty, and wait until archived. */
  async commitAndArchive(label: string, count = 100): Promise<string> {
    await this.commit(label, count);
    const wal = await this.switchWal();
    await this.waitArchived(wal);
    return wal;
  }

  readyFiles(): string[] {
    return readdirSync(join(this.cluster.dataDir, 'pg_wal', 'archive_status')).filter((name) => name.endsWith('.ready')).map((name) => name.slice(0, -6)).sort();
  }

  /** Kept copies of the WAL segments PostgreSQL has acknowledged as archived (names ≤ last_archived_wal). */
  async acknowledged(): Promise<string[]> {
    const {lastArchived} = await this.status();
    if (!lastArchived) return [];
    return readdirSync(this.keepDir).filter((name) => /^[0-9A-F]{24}$/.test(name) && name <= lastArchived).sort();
  }

  kept(walFile: string): Buffer {
    return readFileSync(join(this.keepDir, walFile));
  }

  /** Every object key in the repository as the store itself shows it (not through pgbk). */
  async rawKeys(): Promise<string[]> {
    if (this.kind === 'local') return walk(this.repoDir!, '');
    const keys: string[] = [];
    let token: string | undefined;
    do {
      const page = await this.client!.send(new ListObjectsV2Command({Bucket: this.s3.bucket, Prefix: `${this.prefix}/`, ContinuationToken: token}));
      for (const object of page.Contents ?? []) keys.push(object.Key!.slice(this.prefix!.length + 1));
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    return keys.sort();
  }

  /** Multipart uploads begun and neither completed nor aborted (S3 only; s3rver has none to report). */
  async pendingUploads(): Promise<string[]> {
    if (this.kind === 'local') return [];
    try {
      const result = await this.client!.send(new ListMultipartUploadsCommand({Bucket: this.s3.bucket, Prefix: `${this.prefix}/`}));
      return (result.Uploads ?? []).map((upload) => upload.Key!.slice(this.prefix!.length + 1));
    } catch {
      return []; // s3rver does not implement ListMultipartUploads
    }
  }

  /** Another policy file for the same server and repository, with `extra` top-level sections (e.g. retention). */
  policyWith(name: string, extra: Record<string, unknown>): string {
    const section = this.kind === 's3'
      ? {...repositoryPolicy(this.s3, this.prefix!), endpoint: this.proxy!.endpoint}
      : {url: `file://${this.repoDir}`};
    return writePolicy(this.dir, name, {
      strategy: 'pitr',
      postgres: {url: this.cluster.url, bin_dir: pgBinDir()},
      repository: section,
      ...extra,
    });
  }

  /** A backup's manifest, read from the store directly. */
  async manifest(id: string): Promise<{walStart: string; objects: Array<{key: string}>}> {
    const key = `backups/${id}/manifest.json`;
    if (this.kind === 'local') return JSON.parse(readFileSync(join(this.repoDir!, key), 'utf8'));
    const response = await this.client!.send(new GetObjectCommand({Bucket: this.s3.bucket, Key: `${this.prefix}/${key}`}));
    return JSON.parse(await response.Body!.transformToString());
  }

  /** Backup ids `pgbk list` shows. */
  async listedBackups(): Promise<string[]> {
    const listed = await this.pgbk(['list', '--json']);
    if (listed.exitCode !== 0) throw new Error(`pgbk list failed (exit ${listed.exitCode}): ${listed.stderr}`);
    return (JSON.parse(listed.stdout) as {backups: Array<{id: string}>}).backups.map((backup) => backup.id);
  }

  async destroy(): Promise<void> {
    await this.cluster.destroy();
    await this.proxy?.close();
    this.client?.destroy();
  }
}

/** Count and digest of the items table. */
export async function rowsOf(url: string): Promise<{rows: number; digest: string}> {
  const client = new pg.Client({connectionString: url});
  client.on('error', () => undefined);
  await client.connect();
  try {
    const {rows} = await client.query(`select count(*)::int as rows, coalesce(md5(string_agg(id::text || ':' || label || ':' || payload, ',' order by id)), '') as digest from items`);
    return {rows: rows[0].rows, digest: rows[0].digest};
  } finally {
    await client.end().catch(() => undefined);
  }
}

function walk(root: string, below: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(join(root, below), {withFileTypes: true})) {
    const key = below ? `${below}/${entry.name}` : entry.name;
    if (entry.isDirectory()) out.push(...walk(root, key));
    else out.push(key);
  }
  return out.sort();
}

/** Start `node bin/pgbk ...args` as the postgres user (uid/gid of the child itself when root). */
export function spawnPgbk(args: string[], opts: {env?: Record<string, string>; cwd?: string} = {}): Spawned {
  const ids = isRoot ? postgresUser() : undefined;
  const child = spawn(process.execPath, [pgbkBin, ...args], {
    cwd: opts.cwd ?? '/tmp',
    env: {...baseEnv(), ...opts.env},
    uid: ids?.uid,
    gid: ids?.gid,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const result = new Promise<RunPgbkResult & {signal: NodeJS.Signals | null}>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({exitCode: code ?? 128, signal, stdout, stderr, timedOut: false}));
  });
  return {pid: child.pid!, result, kill: (signal = 'SIGKILL') => child.kill(signal)};
}

/** Running pgbk processes whose command line names `policyFile` (or any file below it, when it is a directory). */
export function pgbkProcesses(policyFile: string): Array<{pid: number; argv: string[]}> {
  const found: Array<{pid: number; argv: string[]}> = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let argv: string[];
    try {
      argv = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0').filter(Boolean);
    } catch {
      continue;
    }
    if (argv.includes(pgbkBin) && argv.some((arg) => arg === policyFile || arg.startsWith(`${policyFile}/`))) found.push({pid: Number(entry), argv});
  }
  return found;
}

/** Processes (any user) whose command line contains `needle`, e.g. pg_basebackup's `pgbk <id>` label. */
export function processesMatching(needle: string): Array<{pid: number; cmdline: string}> {
  const found: Array<{pid: number; cmdline: string}> = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0').join(' ');
      if (cmdline.includes(needle)) found.push({pid: Number(entry), cmdline});
    } catch {
      // gone
    }
  }
  return found;
}

/** Waits for a rule to fire (bounded: a rule that never matches must fail the test, not hang it). */
export async function hitWithin<T>(hit: Promise<T>, what: string, ms = 60_000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      hit,
      new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms))),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** SIGKILL and wait until the process is gone (bounded). */
export async function killHard(pid: number): Promise<void> {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    return;
  }
  await waitFor(() => !existsSync(`/proc/${pid}`) || /\) Z /.test(readFileSync(`/proc/${pid}/stat`, 'utf8')), {timeoutMs: 10_000, intervalMs: 20, what: `pid ${pid} to die`});
}
