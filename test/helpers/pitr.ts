// Shared set-up for the backup/restore integration tests: a cluster whose archive_command is pgbk, a policy
// file pointing at a local or S3 repository, and helpers to snapshot rows and run restores.

import {writeFileSync, mkdirSync} from 'node:fs';
import {join} from 'node:path';
import {stringify} from 'yaml';
import pg from 'pg';
import {chownToPostgres, createCluster, makeTempDir, pgBinDir, runAsPostgres, freePort, type Cluster, waitFor} from './cluster.js';
import {pgbkBin, runPgbk, type RunPgbkResult} from './cli.js';
import {repositoryPolicy, uniquePrefix, type S3TestEndpoint} from './s3.js';

export type RepoKind = 'local' | 's3';

export interface ArchivingSetup {
  kind: RepoKind;
  dir: string;
  policyFile: string;
  cluster: Cluster;
  repoUrl: string;
  /** Local repositories: their directory. */
  repoDir?: string;
  pgbk(args: string[], opts?: {env?: Record<string, string>; cwd?: string}): Promise<RunPgbkResult>;
  destroy(): Promise<void>;
}

export function repositorySection(kind: RepoKind, dir: string, s3: S3TestEndpoint): {section: Record<string, unknown>; repoDir?: string} {
  if (kind === 'local') {
    const repoDir = join(dir, 'repo');
    mkdirSync(repoDir);
    chownToPostgres(repoDir);
    return {section: {url: `file://${repoDir}`}, repoDir};
  }
  return {section: repositoryPolicy(s3, uniquePrefix('pitr'))};
}

export function writePolicy(dir: string, name: string, policy: Record<string, unknown>): string {
  const file = join(dir, `${name}.yaml`);
  writeFileSync(file, stringify(policy), {mode: 0o640});
  chownToPostgres(file);
  return file;
}

export async function setupArchiving(kind: RepoKind, s3: S3TestEndpoint, opts: {strategy?: string; conf?: Record<string, string | number>; policy?: Record<string, unknown>} = {}): Promise<ArchivingSetup> {
  const dir = makeTempDir('pgbk-it-');
  const {section, repoDir} = repositorySection(kind, dir, s3);
  const port = await freePort();
  const policyFile = writePolicy(dir, 'it', {
    strategy: opts.strategy ?? 'pitr',
    postgres: {url: `postgresql://postgres@127.0.0.1:${port}/postgres`, bin_dir: pgBinDir()},
    repository: section,
    ...opts.policy,
  });
  const cluster = await createCluster({
    port,
    conf: {
      wal_level: 'replica',
      archive_mode: 'on',
      archive_command: `${process.execPath} ${pgbkBin} archive-push --policy ${policyFile} %p`,
      max_wal_senders: 4,
      ...opts.conf,
    },
  });
  // The repository's identity, before the server completes its first segment (archive-push never creates one).
  const init = await runPgbk(['init', '--policy', policyFile]);
  if (init.exitCode !== 0) {
    await cluster.destroy();
    throw new Error(`pgbk init failed (exit ${init.exitCode}):\n${init.stderr}${init.stdout}`);
  }
  return {
    kind, dir, policyFile, cluster, repoUrl: String(section.url), repoDir,
    pgbk: (args, runOpts = {}) => runPgbk([...args, '--policy', policyFile], runOpts),
    destroy: () => cluster.destroy(),
  };
}

export interface RowSnapshot {
  rows: number;
  digest: string;
}

/** Count and digest of a table's rows; `absent` when the table does not exist. */
export async function snapshot(url: string, table = 'items'): Promise<RowSnapshot | 'absent'> {
  const client = new pg.Client({connectionString: url});
  await client.connect();
  try {
    const exists = await client.query(`select to_regclass($1) as t`, [table]);
    if (!exists.rows[0].t) return 'absent';
    const {rows} = await client.query(`select count(*)::int as rows, coalesce(md5(string_agg(t::text, ',' order by t::text)), '') as digest from ${table} t`);
    return {rows: rows[0].rows, digest: rows[0].digest};
  } finally {
    await client.end();
  }
}

/** Switch to a new segment and wait until the server reports it archived. */
export async function switchAndWaitArchived(cluster: Cluster): Promise<string> {
  const [row] = await cluster.query<{wal: string}>(`select pg_walfile_name(pg_switch_wal()) as wal`);
  const wal = row!.wal;
  await waitFor(async () => {
    const [status] = await cluster.query<{last: string | null; failed: string | null}>(
      `select last_archived_wal as last, last_failed_wal as failed from pg_stat_archiver`);
    return status!.last !== null && status!.last >= wal;
  }, {timeoutMs: 60_000, intervalMs: 100, what: `archiving of ${wal}`});
  return wal;
}

export interface RestoredServer {
  dataDir: string;
  port: number;
  url: string;
  result: RunPgbkResult;
  stop(): Promise<void>;
}

/** pgbk restore --to <new dir> <target args> --start on a free port; the caller stops it. */
export async function restoreAndStart(setup: ArchivingSetup, targetArgs: string[], extra: string[] = []): Promise<RestoredServer> {
  const base = makeTempDir('pgbk-restored-');
  const dataDir = join(base, 'data');
  const port = await freePort();
  const result = await setup.pgbk(['restore', '--to', dataDir, ...targetArgs, '--start', '--port', String(port), ...extra]);
  const server: RestoredServer = {
    dataDir, port, url: `postgresql://postgres@127.0.0.1:${port}/postgres`, result,
    stop: async () => {
      await runAsPostgres(join(pgBinDir(), 'pg_ctl'), ['-D', dataDir, '-m', 'immediate', '-w', 'stop'], {timeoutMs: 30_000});
    },
  };
  if (result.exitCode !== 0) {
    await server.stop();
    throw new Error(`pgbk restore ${targetArgs.join(' ')} failed (exit ${result.exitCode}):\n${result.stderr}\n${result.stdout}`);
  }
  return server;
}
