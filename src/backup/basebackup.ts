// pitr backups: pg_basebackup's tar streamed straight into the repository (never staged on local disk), then the
// WAL the backup needs checked in the archive, then the manifest written last.

import {once} from 'node:events';
import {pipeline} from 'node:stream/promises';
import {text} from 'node:stream/consumers';
import {BackupError, PgServerError} from '../errors.js';
import type {Policy} from '../policy/types.js';
import {withClient} from '../pg/client.js';
import {splitPassword} from '../pg/conninfo.js';
import {nextXid, serverInfo, type ServerInfo} from '../pg/queries.js';
import {checkServerVersion} from '../pg/version.js';
import {redactUrl} from '../pg/conninfo.js';
import {spawnPg, toolError} from '../pg/run.js';
import {decompressor} from '../util/codec.js';
import type {Repository} from '../storage/repository.js';
import {assertSameSystem, type RepositoryIdentity} from '../identity/identity.js';
import {createProgress} from '../util/progress.js';
import {codecOfWalKey, findArchived} from '../wal/archive.js';
import {formatLsn, type Lsn} from '../wal/lsn.js';
import {segmentName, segmentNameForLsn, lsnToSegmentNumber} from '../wal/name.js';
import {parseBackupLabel, parseManifestWalRanges, type BackupLabel} from './label.js';
import {writeManifest, type BackupManifest} from './manifest.js';
import {TarWatcher} from './tar-watch.js';
import {PartedUpload} from './parts.js';
import {protocolBaseBackup} from './base-backup-protocol.js';
import {claimBackupId} from './id.js';
import {withOwner} from './owner.js';
import {resolveBackupSource} from './source.js';
import {closeStopSegment, prepareStandbyBackup, primaryArchiveMode, watchStandbyBackupStop} from '../replica/backup.js';

export interface BackupDeps {
  policy: Policy;
  repo: Repository;
  now: () => Date;
  cancelSignal?: AbortSignal;
  /** The repository's identity: a server of another database system is refused before anything is written. */
  identity?: RepositoryIdentity;
  /** How long to wait for the backup's last WAL segment to reach the archive. */
  walWaitMs?: number;
}

export async function runBaseBackup(deps: BackupDeps): Promise<BackupManifest> {
  const {policy, repo} = deps;
  // replica: a standby (the primary archives its WAL); else the policy's server.
  const source = await resolveBackupSource(policy, {systemId: deps.identity?.systemId});
  const conn = splitPassword(source.url);
  const started = deps.now();
  const server = await withClient(source.url, async (client) => {
    const info = await serverInfo(client);
    checkServerVersion(info.versionNum, `the server at ${redactUrl(source.url)}`);
    const {rows} = await client.query(`select current_setting('archive_mode') as archive_mode, current_setting('wal_level') as wal_level`);
    if (rows[0].wal_level === 'minimal') {
      throw new PgServerError('wal_level is minimal: a base backup needs WAL', 'set wal_level = replica in postgresql.conf and restart');
    }
    // pg_basebackup writes one tablespace only to a stream (-D - -Ft): a cluster with user tablespaces is backed up
    // over the replication protocol (BASE_BACKUP, one archive per tablespace), PostgreSQL 15 or later.
    const tablespaces = await client.query<{oid: string; name: string; location: string}>(
      `select oid::text as oid, spcname as name, pg_tablespace_location(oid) as location from pg_tablespace where spcname not in ('pg_default', 'pg_global') order by spcname`);
    if (tablespaces.rows.length > 0 && info.versionNum < 150000) {
      throw new BackupError(
        `the server at ${redactUrl(source.url)} has user tablespaces (${tablespaces.rows.map((row) => `${row.name} at ${row.location}`).join(', ')}) and runs PostgreSQL ${Math.floor(info.versionNum / 10000)}: pgbk backs up tablespaces from PostgreSQL 15 on; nothing was written`,
        'upgrade to PostgreSQL 15 or later, or move their tables to pg_default (ALTER TABLE ... SET TABLESPACE pg_default) and drop the tablespaces');
    }
    const archiving = rows[0].archive_mode === 'always' || (rows[0].archive_mode === 'on' && !info.inRecovery) ||
      (info.inRecovery && source.primaryUrl !== undefined && (await primaryArchiveMode(source.primaryUrl)).archiving);
    if (!archiving) {
      throw new PgServerError(
        `archive_mode is ${rows[0].archive_mode}${info.inRecovery ? ' on a standby' : ''}: the backup could not be restored without archived WAL`,
        `set archive_mode = ${info.inRecovery ? 'always' : 'on'} and archive_command = 'pgbk archive-push --policy ${policy.name} %p' in postgresql.conf, then restart`,
      );
    }
    return {...info, tablespaces: tablespaces.rows};
  });

  if (deps.identity) assertSameSystem(deps.identity, server.systemId, 'the backup source', repo);
  const {id, owner} = await claimBackupId(repo, started);
  return withOwner(repo, owner, async () => {
    const watcher = new TarWatcher(new Set(['backup_label', 'backup_manifest']));
    const progress = createProgress(`backup ${id}`);
    const args = [
      '--dbname', conn.url, '--pgdata', '-', '--format', 'tar', '--wal-method', 'none',
      '--checkpoint', policy.backup.checkpoint, '--label', `pgbk ${id}`, '--no-password',
    ];
    if (server.inRecovery && source.primaryUrl) await prepareStandbyBackup(source.url, source.primaryUrl);
    const viaProtocol = server.tablespaces.length > 0;
    const child = viaProtocol ? undefined : spawnPg('pg_basebackup', args, {binDir: policy.postgres.binDir, env: conn.env, cancelSignal: deps.cancelSignal, dieWithParent: true});
    // The tar cut into pieces of at most backup.max_object_size, each compressed on every core (gzip members side
    // by side, or one zstd stream) and uploaded as its own object while the next one fills.
    const newUpload = (tar: string): PartedUpload => new PartedUpload({repo, backupId: id, tar, compression: policy.compression, maxObjectBytes: policy.backup.maxObjectBytes});
    const uploads: PartedUpload[] = viaProtocol ? [] : [newUpload('base')];
    const tarsStarted: string[] = [];
    const discard = async (): Promise<void> => {
      await repo.remove(uploads.flatMap((upload) => upload.keys)).catch(() => undefined);
    };
    // Over the protocol: the manifest arrives after the archives; its tail holds the WAL-Ranges.
    let manifestTail = Buffer.alloc(0);
    let otherBytes = 0;
    // A standby archiving itself (archive_mode = always) waits in pg_backup_stop() for the primary to switch WAL.
    const stopWatch = server.inRecovery && source.primaryUrl ? watchStandbyBackupStop(source.url, source.primaryUrl) : undefined;
    try {
      watcher.on('data', () => progress.update(watcher.bytes + otherBytes));
      if (child) {
        await Promise.all([pipeline(child.stdout!, watcher, uploads[0]!), child]);
      } else {
        await protocolBaseBackup(source.url, {
          label: `pgbk ${id}`,
          checkpoint: policy.backup.checkpoint,
          cancelSignal: deps.cancelSignal,
          openArchive: (name) => {
            const tar = /^(base|[0-9]+)\.tar$/.exec(name)?.[1];
            if (!tar || (tar !== 'base' && !server.tablespaces.some((space) => space.oid === tar)) || tarsStarted.includes(tar)) {
              throw new BackupError(`BASE_BACKUP sent an unexpected archive "${name}"; the backup was discarded`);
            }
            const upload = newUpload(tar);
            uploads.push(upload);
            tarsStarted.push(tar);
            // backup_label is in base.tar; a tablespace's tar is only counted.
            const head = tar === 'base' ? watcher : new TarWatcher(new Set());
            if (tar !== 'base') head.on('data', (chunk: Buffer) => { otherBytes += chunk.length; progress.update(watcher.bytes + otherBytes); });
            const stored = pipeline(head, upload);
            stored.catch(() => undefined);
            return {
              write: async (chunk) => {
                if (!head.write(chunk)) await Promise.race([once(head, 'drain'), stored]);
              },
              end: async () => {
                head.end();
                await stored;
              },
            };
          },
          manifest: (chunk) => {
            manifestTail = Buffer.concat([manifestTail, chunk]);
            if (manifestTail.length > 512 * 1024) manifestTail = manifestTail.subarray(manifestTail.length - 256 * 1024);
          },
        });
        if (!tarsStarted.includes('base')) throw new BackupError('BASE_BACKUP sent no base.tar; the backup was discarded');
      }
      progress.done();
    } catch (error) {
      child?.kill();
      // Fail the uploads and let them finish failing (temp files removed, multipart uploads aborted) before removing
      // the keys: nothing of a broken backup may stay behind, not even out of sight.
      for (const parts of uploads) {
        if (!parts.destroyed) parts.destroy(error as Error);
        await new Promise((resolveClose) => (parts.closed ? resolveClose(undefined) : parts.once('close', resolveClose)));
      }
      await discard();
      if ((error as {stderr?: unknown}).stderr !== undefined || (error as Error).name === 'ExecaError') throw toolError('pg_basebackup', error);
      throw error;
    } finally {
      await stopWatch?.stop();
    }

    // What the backup needs: from backup_label (start) and backup_manifest or the archived .backup file (stop).
    const labelFile = watcher.files.get('backup_label');
    const label = labelFile ? parseBackupLabel(labelFile.content.toString('utf8')) : undefined;
    if (!label) {
      await discard();
      throw new BackupError('pg_basebackup output holds no readable backup_label; the backup was discarded');
    }
    const ranges = parseManifestWalRanges(viaProtocol ? manifestTail.toString('utf8') : watcher.files.get('backup_manifest')?.content.toString('utf8') ?? '');
    const history = server.inRecovery ? undefined : await waitForBackupHistory(repo, label, server, deps.walWaitMs ?? 60_000);
    const stopLsn = history?.stopLsn ?? ranges.at(-1)?.endLsn;
    const stopTimeline = history?.stopTimeline ?? ranges.at(-1)?.timeline ?? label.startTimeline;
    if (stopLsn === undefined) {
      await discard();
      throw new BackupError('cannot tell where the backup ends (no .backup file archived, no backup_manifest); the backup was discarded',
        'let pg_basebackup write its backup manifest (PostgreSQL 13 or later) and archive WAL with pgbk');
    }
    const walStart = segmentNameForLsn(label.startTimeline, label.startLsn, server.walSegmentSize);
    const walStop = segmentNameForLsn(stopTimeline, stopLsn, server.walSegmentSize);
    // A standby cannot switch segments: the primary closes the one the backup ends in, so that it gets archived.
    if (server.inRecovery && source.primaryUrl) {
      await closeStopSegment(repo, source.primaryUrl, walStop).catch(async (error) => {
        await discard();
        throw error;
      });
    }
    await waitForWal(repo, label.startTimeline, label.startLsn, stopLsn, server.walSegmentSize, deps.walWaitMs ?? 60_000)
      .catch(async (error) => {
        await discard();
        throw error;
      });

    const xid = await withClient(source.primaryUrl ?? source.url, (client) => nextXid(client));
    const finished = deps.now();
    // The .backup file's STOP TIME has whole seconds: round up so "finished before the target" is never optimistic.
    const stopTime = history?.stopTime ? new Date(history.stopTime.getTime() + 1000) : finished;
    const manifest: BackupManifest = {
      formatVersion: 1,
      id,
      kind: 'base',
      policy: policy.name,
      strategy: policy.strategy,
      label: `pgbk ${id}`,
      startTime: (label.startTime ?? started).toISOString(),
      stopTime: stopTime.toISOString(),
      startLsn: formatLsn(label.startLsn),
      stopLsn: formatLsn(stopLsn),
      timeline: label.startTimeline,
      stopTimeline,
      walStart,
      walStop,
      walSegmentSize: server.walSegmentSize,
      nextXid: xid,
      systemId: server.systemId,
      pgVersionNum: server.versionNum,
      sourceBytes: watcher.bytes + otherBytes,
      storedBytes: uploads.flatMap((upload) => upload.objects).reduce((sum, object) => sum + object.sizeBytes, 0),
      durationMs: finished.getTime() - started.getTime(),
      backupFrom: server.inRecovery ? 'standby' : 'primary',
      objects: uploads.flatMap((upload) => upload.objects),
      ...(viaProtocol ? {tablespaces: server.tablespaces.map(({oid, name, location}) => ({oid, name, location}))} : {}),
    };
    await writeManifest(repo, manifest);
    return manifest;
  });
}

/** The .backup history file PostgreSQL archives at the end of a backup taken on a primary. */
async function waitForBackupHistory(repo: Repository, label: BackupLabel, server: ServerInfo, waitMs: number): Promise<BackupLabel | undefined> {
  const segment = segmentNameForLsn(label.startTimeline, label.startLsn, server.walSegmentSize);
  const offset = Number(label.startLsn % BigInt(server.walSegmentSize)).toString(16).toUpperCase().padStart(8, '0');
  const name = `${segment}.${offset}.backup`;
  const deadline = Date.now() + waitMs;
  for (;;) {
    const [copy] = await findArchived(repo, name);
    if (copy) {
      const stored = await repo.get(copy.key);
      const decompress = decompressor(codecOfWalKey(copy.key));
      return parseBackupLabel(await text(decompress ? stored.pipe(decompress) : stored));
    }
    if (Date.now() > deadline) return undefined;
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}

/** Every segment from the backup's start to its stop must be archived before the backup counts. */
async function waitForWal(repo: Repository, timeline: number, startLsn: Lsn, stopLsn: Lsn, segmentSize: number, waitMs: number): Promise<void> {
  const first = lsnToSegmentNumber(startLsn, segmentSize);
  const last = lsnToSegmentNumber(stopLsn, segmentSize);
  const deadline = Date.now() + waitMs;
  for (let segno = first; segno <= last; segno++) {
    const name = segmentName(timeline, segno, segmentSize);
    for (;;) {
      if ((await findArchived(repo, name)).length > 0) break;
      if (Date.now() > deadline) {
        throw new BackupError(
          `WAL segment ${name}, needed to make the backup consistent, did not reach the archive within ${Math.round(waitMs / 1000)}s`,
          'check archive_command (pg_stat_archiver shows failures) — the backup was discarded',
        );
      }
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
  }
}

