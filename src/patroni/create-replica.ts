// pgbk as a Patroni replica creation method (postgresql.create_replica_methods): lay out the newest base backup
// in the directory Patroni gives, so that a new member is built from the repository instead of from the leader.
//
// Patroni 3.0 runs `<command> [--<key>=<value> for each key of the method's config] --scope=<scope> --role=replica
// --datadir=<data_dir> --connstring=<conninfo of the member to clone from>` with PGPASSFILE set; exit 0 means the
// data directory is ready. Patroni then writes postgresql.conf with its own recovery settings (standby.signal,
// primary_conninfo, restore_command from postgresql.recovery_conf) and starts the member as a replica, which replays
// the archive and then streams from the leader. So nothing recovery-related is left here: no recovery.signal
// (it would make a later promotion pick a new timeline on its own), no restore_command in postgresql.auto.conf
// (Patroni strips recovery settings from that file, and one written here would override Patroni's).
// A non-zero exit makes Patroni try the next method (basebackup).

import {readFile, rm, writeFile} from 'node:fs/promises';
import {join} from 'node:path';
import {readCatalog, type BackupManifest} from '../backup/manifest.js';
import {NothingToRestoreError, UsageError} from '../errors.js';
import type {Policy} from '../policy/types.js';
import {checkDestination, layOutDataDirectory} from '../restore/layout.js';
import type {RestorePlan} from '../restore/plan.js';
import type {Repository} from '../storage/repository.js';
import {PatroniError} from './errors.js';
import {fetchNode, memberApiBase, fetchCluster, restOptionsFor, type RestOptions} from './rest.js';

export interface CreateReplicaRequest {
  scope?: string;
  datadir: string;
  role?: string;
  connstring?: string;
}

export interface CreateReplicaResult {
  backup: string;
  dataDir: string;
  fetchedBytes: number;
  fetchMs: number;
  /** What was checked against the cluster (scope, system identifier), or why it could not be. */
  clusterCheck: string;
}

export interface CreateReplicaDeps {
  policy: Policy;
  repo: Repository;
  log: (line: string) => void;
  rest?: RestOptions;
}

export async function createReplicaFromBackup(request: CreateReplicaRequest, deps: CreateReplicaDeps): Promise<CreateReplicaResult> {
  const {policy, repo} = deps;
  if (request.role && request.role !== 'replica') throw new UsageError(`--role ${request.role}: pgbk builds replicas only (Patroni passes --role=replica)`);
  if (!request.datadir.startsWith('/')) throw new UsageError(`--datadir ${request.datadir}: expected an absolute path`);

  const base = (await readCatalog(repo)).filter((backup) => backup.kind === 'base');
  const backup = base.at(-1);
  if (!backup) {
    throw new NothingToRestoreError(`the repository ${repo.description} holds no base backup to build a replica from`,
      'take one with "pgbk backup"; Patroni falls back to its next create_replica_method (basebackup) meanwhile');
  }
  const clusterCheck = await checkBackupBelongsToCluster(backup, request.scope, policy, deps.rest);
  deps.log(`pgbk: building replica in ${request.datadir} from backup ${backup.id} (${backup.backupFrom ?? 'primary'}, timeline ${backup.timeline}, LSN ${backup.startLsn}..${backup.stopLsn}); ${clusterCheck}`);

  // keep_data: Patroni leaves the directory as it was; pgbk has no delta restore, so its contents are replaced
  // (never while a postmaster runs there: checkDestination refuses).
  const state = await checkDestination(request.datadir, true, {repo, policy, catalog: base});
  const plan: RestorePlan = {
    backup, target: {kind: 'latest'},
    fetchBytes: backup.objects.reduce((sum, object) => sum + object.sizeBytes, 0),
    walFrom: backup.walStart!,
    warnings: [],
  };
  const layout = await layOutDataDirectory(repo, policy, plan, request.datadir, state, {targetTimeline: 'latest', archiveMode: 'preserve'});
  await leaveRecoveryToPatroni(layout.dataDir);
  return {backup: backup.id, dataDir: layout.dataDir, fetchedBytes: layout.fetchedBytes, fetchMs: layout.fetchMs, clusterCheck};
}

/**
 * The newest backup must be of this cluster: same scope (GET /patroni) and the same system identifier. A backup of
 * a cluster since re-initialized would never catch up; refusing lets Patroni fall back to pg_basebackup.
 */
async function checkBackupBelongsToCluster(backup: BackupManifest, scope: string | undefined, policy: Policy, rest?: RestOptions): Promise<string> {
  if (!policy.patroni) return 'no patroni.rest_api in the policy: scope and system identifier not checked';
  rest = {...restOptionsFor(policy.patroni), ...rest};
  let node: Awaited<ReturnType<typeof fetchNode>> | undefined;
  const failures: string[] = [];
  for (const api of policy.patroni.restApi) {
    try {
      node = await fetchNode(api, rest);
      if (node.systemId) break;
    } catch (error) {
      failures.push((error as Error).message);
    }
  }
  if (!node?.systemId) {
    // A member being bootstrapped may be the only one listed; ask the members /cluster knows.
    try {
      const cluster = await fetchCluster(policy.patroni.restApi, rest);
      for (const member of cluster.members) {
        const api = memberApiBase(member);
        if (!api) continue;
        node = await fetchNode(api, rest).catch(() => undefined);
        if (node?.systemId) break;
      }
    } catch (error) {
      failures.push((error as Error).message);
    }
  }
  if (!node?.systemId) return `cluster not checked (no member reported its system identifier${failures.length ? `: ${failures.join('; ')}` : ''})`;
  if (scope && node.scope && node.scope !== scope) {
    throw new PatroniError(`policy ${policy.name} describes Patroni cluster "${node.scope}", but Patroni builds a replica for "${scope}"`,
      'use a policy whose patroni.rest_api lists the members of this cluster');
  }
  if (backup.systemId && backup.systemId !== node.systemId) {
    throw new PatroniError(`the newest backup ${backup.id} is of database system ${backup.systemId}, the cluster is ${node.systemId}`,
      'the cluster was re-initialized since: take a new backup (pgbk backup); Patroni falls back to basebackup meanwhile');
  }
  return `cluster ${node.scope ?? scope ?? '?'} system identifier ${node.systemId} matches`;
}

/** Undo what `restore --to` adds for a stand-alone recovery: Patroni writes the recovery settings itself. */
export async function leaveRecoveryToPatroni(dataDir: string): Promise<void> {
  await rm(join(dataDir, 'recovery.signal'), {force: true});
  const file = join(dataDir, 'postgresql.auto.conf');
  const text = await readFile(file, 'utf8').catch(() => undefined);
  if (text === undefined) return;
  const stripped = stripPgbkRecoveryBlock(text);
  if (stripped !== text) await writeFile(file, stripped);
}

/** Removes the block `pgbk restore` appends to postgresql.auto.conf (a marker comment up to the next blank line). */
export function stripPgbkRecoveryBlock(text: string): string {
  const lines = text.split('\n');
  const kept: string[] = [];
  let skipping = false;
  for (const line of lines) {
    if (line.startsWith('# Added by pgbk restore')) {
      skipping = true;
      if (kept.at(-1) === '') kept.pop();
      continue;
    }
    if (skipping) {
      if (line.trim() === '') skipping = false;
      continue;
    }
    kept.push(line);
  }
  const result = kept.join('\n');
  return text.endsWith('\n') && !result.endsWith('\n') ? `${result}\n` : result;
}
