// Backups read from a standby: PostgreSQL archives no .backup file there and the standby cannot switch WAL
// segments, so the primary archives the WAL and is asked to close the segment the backup ends in.

import {PgServerError} from '../errors.js';
import {withClient} from '../pg/client.js';
import {redactUrl} from '../pg/conninfo.js';
import {switchWalFile} from '../pg/status-queries.js';
import type {Repository} from '../storage/repository.js';
import {findArchived} from '../wal/archive.js';

/** The primary's archiving, checked before a standby backup whose standby does not archive itself. */
export async function primaryArchiveMode(primaryUrl: string): Promise<{archiving: boolean; archiveMode: string; inRecovery: boolean}> {
  return withClient(primaryUrl, async (client) => {
    const {rows} = await client.query(`select current_setting('archive_mode') as archive_mode, pg_is_in_recovery() as in_recovery`);
    const archiveMode: string = rows[0].archive_mode;
    const inRecovery: boolean = rows[0].in_recovery;
    return {archiving: archiveMode === 'always' || (archiveMode === 'on' && !inRecovery), archiveMode, inRecovery};
  });
}

/**
 * The segment a standby backup ends in may still be the primary's current one, which nobody archives until it
 * fills. When it is not archived yet and the primary still writes into it (or before it), switch WAL there;
 * the caller then waits for the archive as for any backup. Returns whether a switch was made.
 */
export async function closeStopSegment(repo: Repository, primaryUrl: string, stopSegment: string): Promise<boolean> {
  if ((await findArchived(repo, stopSegment)).length > 0) return false;
  try {
    return await withClient(primaryUrl, async (client) => {
      const {rows} = await client.query(`select pg_is_in_recovery() as in_recovery,
        case when pg_is_in_recovery() then null else pg_walfile_name(pg_current_wal_insert_lsn()) end as current`);
      if (rows[0].in_recovery) return false;
      if (!needsSwitch(rows[0].current, stopSegment)) return false;
      await switchWalFile(client);
      return true;
    });
  } catch (error) {
    throw new PgServerError(`cannot switch WAL on the primary ${redactUrl(primaryUrl)} to archive the backup's last segment ${stopSegment}: ${(error as Error).message}`,
      'the primary (postgres.url) must be reachable while a standby is backed up; or wait for archive_timeout', {cause: error});
  }
}

/** Pure: the primary's current segment is at or before the one the backup ends in (same log/segment numbering). */
export function needsSwitch(currentSegment: string, stopSegment: string): boolean {
  // Positions compare by the log and segment part; timelines of one history only grow along with them.
  return currentSegment.slice(8) <= stopSegment.slice(8);
}

export interface StopWatch {
  /** Ends the watch; resolves once its connections are closed. */
  stop(): Promise<void>;
  /** WAL switches made on the primary. */
  readonly switches: number;
}

/**
 * With archive_mode = always on the standby, pg_backup_stop() there waits until the backup's last segment is
 * archived by the standby — which needs the primary to leave that segment first: pg_basebackup would hang. While
 * the backup runs, watch the standby for a walsender in that wait (BackupWaitWalArchive) and switch WAL on the
 * primary when one is (at most every 5 s). Seeing other sessions' wait events needs superuser or pg_monitor.
 */
export function watchStandbyBackupStop(standbyUrl: string, primaryUrl: string, options: {intervalMs?: number} = {}): StopWatch {
  const intervalMs = options.intervalMs ?? 500;
  let stopped = false;
  let switches = 0;
  let wake: (() => void) | undefined;
  const sleep = () => new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, intervalMs);
    wake = () => {
      clearTimeout(timer);
      resolve();
    };
  });
  const loop = (async () => {
    let lastSwitch = 0;
    await withClient(standbyUrl, async (client) => {
      while (!stopped) {
        const {rows} = await client.query(`select count(*)::int as waiting from pg_stat_activity where wait_event = 'BackupWaitWalArchive'`);
        if (rows[0].waiting > 0 && Date.now() - lastSwitch > 5000) {
          await withClient(primaryUrl, (primary) => switchWalFile(primary));
          lastSwitch = Date.now();
          switches++;
        }
        await sleep();
      }
    });
  })().catch((error) => {
    // The backup itself reports what matters; a watch that cannot run only risks a slower stop.
    if (!stopped) process.stderr.write(`pgbk: warning: cannot watch the standby backup's end: ${(error as Error).message}\n`);
  });
  return {
    get switches() {
      return switches;
    },
    async stop() {
      stopped = true;
      wake?.();
      await loop;
    },
  };
}

/**
 * Before a standby backup: a checkpoint on the primary, replayed by the standby, so that the restartpoint the
 * backup starts with moves the standby's minimum recovery point forward. pg_backup_stop() on a standby takes its
 * stop point from there; left stale (no checkpoint since the standby came up), it can name a segment the standby
 * got from pg_basebackup and will never archive itself, and with archive_mode = always the backup then waits
 * forever. pgBackRest does the same for backups from a standby.
 */
export async function prepareStandbyBackup(standbyUrl: string, primaryUrl: string, options: {timeoutMs?: number} = {}): Promise<void> {
  const lsn = await withClient(primaryUrl, async (client) => {
    try {
      await client.query('checkpoint');
    } catch (error) {
      throw new PgServerError(`cannot run CHECKPOINT on the primary ${redactUrl(primaryUrl)} before backing up the standby: ${(error as Error).message}`,
        'the backup role needs superuser or (PostgreSQL 15+) the pg_checkpoint role on the primary', {cause: error});
    }
    const {rows} = await client.query(`select pg_current_wal_lsn()::text as lsn`);
    return rows[0].lsn as string;
  });
  const deadline = Date.now() + (options.timeoutMs ?? 60_000);
  await withClient(standbyUrl, async (client) => {
    for (;;) {
      const {rows} = await client.query(`select pg_last_wal_replay_lsn() >= $1::pg_lsn as replayed`, [lsn]);
      if (rows[0].replayed) return;
      if (Date.now() > deadline) {
        throw new PgServerError(`the standby ${redactUrl(standbyUrl)} did not replay the primary's checkpoint (${lsn}) within ${Math.round((options.timeoutMs ?? 60_000) / 1000)}s`,
          'check replication (pg_stat_replication on the primary), or let the backup run on the primary');
      }
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  });
}
