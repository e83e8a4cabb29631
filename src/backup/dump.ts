// dump strategy: pg_dump (custom format) streamed into the repository; restore with pg_restore into --to-db.

import {pipeline} from 'node:stream/promises';
import type {Policy} from '../policy/types.js';
import {withClient} from '../pg/client.js';
import {splitPassword} from '../pg/conninfo.js';
import {serverInfo} from '../pg/queries.js';
import {checkServerVersion} from '../pg/version.js';
import {redactUrl} from '../pg/conninfo.js';
import {spawnPg, toolError} from '../pg/run.js';
import {backupObjectKey} from '../storage/layout.js';
import type {Repository} from '../storage/repository.js';
import {assertSameSystem, type RepositoryIdentity} from '../identity/identity.js';
import {ChecksumVerifier} from '../util/streams.js';
import {createProgress} from '../util/progress.js';
import {claimBackupId} from './id.js';
import {withOwner} from './owner.js';
import {writeManifest, type BackupManifest} from './manifest.js';

export interface DumpDeps {
  policy: Policy;
  repo: Repository;
  now: () => Date;
  cancelSignal?: AbortSignal;
  /** The repository's identity: a server of another database system is refused before anything is written. */
  identity?: RepositoryIdentity;
}

export async function runDump(deps: DumpDeps): Promise<BackupManifest> {
  const {policy, repo} = deps;
  const conn = splitPassword(policy.postgres.url);
  const started = deps.now();
  const {server, database} = await withClient(policy.postgres.url, async (client) => {
    const {rows} = await client.query('select current_database() as db');
    return {server: await serverInfo(client), database: rows[0].db as string};
  });
  if (deps.identity) assertSameSystem(deps.identity, server.systemId, 'the database to dump', repo);
  checkServerVersion(server.versionNum, `the server at ${redactUrl(policy.postgres.url)}`);
  const {id, owner} = await claimBackupId(repo, started);
  return withOwner(repo, owner, async () => {
    const key = backupObjectKey(id, 'dump.pgdump');
    const tables = policy.dump.tables.flatMap((table) => ['--table', table]);
    const child = spawnPg('pg_dump', ['--dbname', conn.url, '--format', 'custom', '--compress', '6', '--no-password', ...tables],
      {binDir: policy.postgres.binDir, env: conn.env, cancelSignal: deps.cancelSignal, dieWithParent: true});
    const progress = createProgress(`dump ${id}`);
    let stored;
    const upload = repo.put(key, child.stdout!, {onProgress: (bytes) => progress.update(bytes)});
    upload.catch(() => undefined); // awaited below; a failure is handled there
    try {
      const [result] = await Promise.all([upload, child]);
      stored = result;
      progress.done();
    } catch (error) {
      child.kill();
      // A killed pg_dump ends its output early: the upload could still complete. Fail it, let it settle, then remove.
      child.stdout?.destroy(error as Error);
      await upload.catch(() => undefined);
      await repo.remove([key]).catch(() => undefined);
      throw (error as Error).name === 'ExecaError' ? toolError('pg_dump', error) : error;
    }
    const finished = deps.now();
    const manifest: BackupManifest = {
      formatVersion: 1,
      id,
      kind: 'dump',
      policy: policy.name,
      strategy: policy.strategy,
      label: `pgbk ${id}`,
      // pg_dump's snapshot is taken as it starts: the dump shows the database as of startTime.
      startTime: started.toISOString(),
      stopTime: finished.toISOString(),
      systemId: server.systemId,
      pgVersionNum: server.versionNum,
      database,
      sourceBytes: stored.sizeBytes,
      storedBytes: stored.sizeBytes,
      durationMs: finished.getTime() - started.getTime(),
      backupFrom: server.inRecovery ? 'standby' : 'primary',
      objects: [{name: 'dump.pgdump', key, sizeBytes: stored.sizeBytes, sha256: stored.sha256, compression: 'none'}],
    };
    await writeManifest(repo, manifest);
    return manifest;
  });
}

export interface DumpRestoreOptions {
  policy: Policy;
  repo: Repository;
  backup: BackupManifest;
  toDb: string;
}

/**
 * Restores a dump into `toDb` in one transaction (--single-transaction): on any error nothing is changed.
 * Objects the dump holds are dropped and recreated (--clean --if-exists).
 */
export async function restoreDump(options: DumpRestoreOptions): Promise<{bytes: number}> {
  const object = options.backup.objects[0]!;
  const conn = splitPassword(options.toDb);
  const body = await options.repo.get(object.key);
  const child = spawnPg('pg_restore', ['--dbname', conn.url, '--clean', '--if-exists', '--single-transaction', '--exit-on-error', '--no-password'],
    {binDir: options.policy.postgres.binDir, env: conn.env, input: body});
  // On a checksum mismatch pg_restore is killed before it sees end-of-input, so its transaction never commits.
  const verifier = new ChecksumVerifier(object.sha256, object.key, () => child.kill('SIGKILL'));
  try {
    await Promise.all([pipeline(body, verifier, child.stdin!), child]);
  } catch (error) {
    child.kill();
    if ((error as Error).name === 'ExecaError') throw toolError('pg_restore', error);
    throw error;
  }
  return {bytes: verifier.bytes};
}
