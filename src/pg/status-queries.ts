// The SQL of `pgbk status` and `pgbk check`: the archiver, replication, and the settings a strategy needs.

import type {Client} from 'pg';

export interface ArchiverStats {
  archivedCount: number;
  lastArchivedWal: string | null;
  lastArchivedTime: Date | null;
  failedCount: number;
  lastFailedWal: string | null;
  lastFailedTime: Date | null;
}

/** pg_stat_archiver (since the last stats reset). */
export async function archiverStats(client: Client): Promise<ArchiverStats> {
  const {rows} = await client.query(`
    select archived_count::int8::text as archived_count, last_archived_wal, last_archived_time,
           failed_count::int8::text as failed_count, last_failed_wal, last_failed_time
      from pg_stat_archiver`);
  const row = rows[0];
  return {
    archivedCount: Number(row.archived_count),
    lastArchivedWal: row.last_archived_wal,
    lastArchivedTime: row.last_archived_time,
    failedCount: Number(row.failed_count),
    lastFailedWal: row.last_failed_wal,
    lastFailedTime: row.last_failed_time,
  };
}

export interface WalPosition {
  inRecovery: boolean;
  /** The segment holding the newest WAL the primary has inserted (null on a standby). */
  currentWalFile: string | null;
  /** pg_current_wal_insert_lsn() (null on a standby). */
  currentLsn: string | null;
  walSegmentSize: string;
  serverTime: Date;
}

export async function walPosition(client: Client): Promise<WalPosition> {
  const {rows} = await client.query(`
    select pg_is_in_recovery() as in_recovery,
           case when pg_is_in_recovery() then null else pg_walfile_name(pg_current_wal_insert_lsn()) end as current_wal_file,
           case when pg_is_in_recovery() then null else pg_current_wal_insert_lsn()::text end as current_lsn,
           current_setting('wal_segment_size') as wal_segment_size,
           now() as server_time`);
  const row = rows[0];
  return {
    inRecovery: row.in_recovery,
    currentWalFile: row.current_wal_file,
    currentLsn: row.current_lsn,
    walSegmentSize: row.wal_segment_size,
    serverTime: row.server_time,
  };
}

export interface StandbyReplication {
  applicationName: string;
  clientAddr: string | null;
  state: string;
  /** pg_wal_lsn_diff(sent_lsn, replay_lsn): sent to the standby, not replayed yet. */
  lagBytes: number | null;
  replayLagSeconds: number | null;
}

/** pg_stat_replication on a primary: one row per walsender (standbys and pg_basebackup). */
export async function replicationStats(client: Client): Promise<StandbyReplication[]> {
  const {rows} = await client.query(`
    select application_name, client_addr::text as client_addr, state,
           pg_wal_lsn_diff(sent_lsn, replay_lsn)::int8::text as lag_bytes,
           extract(epoch from replay_lag)::float8 as replay_lag_seconds
      from pg_stat_replication
     order by application_name`);
  return rows.map((row) => ({
    applicationName: row.application_name,
    clientAddr: row.client_addr,
    state: row.state,
    lagBytes: row.lag_bytes === null ? null : Number(row.lag_bytes),
    replayLagSeconds: row.replay_lag_seconds,
  }));
}

export interface StandbyDelay {
  /**
   * now() - pg_last_xact_replay_timestamp(); 0 when everything received is replayed (an idle primary commits
   * nothing, so the timestamp alone would grow forever); null when nothing was replayed yet.
   */
  replayDelaySeconds: number | null;
  receiveLsn: string | null;
  replayLsn: string | null;
}

/** On a standby: how far replay is behind. */
export async function standbyDelay(client: Client): Promise<StandbyDelay> {
  const {rows} = await client.query(`
    select pg_last_wal_receive_lsn()::text as receive_lsn, pg_last_wal_replay_lsn()::text as replay_lsn,
           case when pg_last_wal_receive_lsn() is not null and pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() then 0
                else extract(epoch from now() - pg_last_xact_replay_timestamp())::float8 end as delay`);
  const row = rows[0];
  return {replayDelaySeconds: row.delay, receiveLsn: row.receive_lsn, replayLsn: row.replay_lsn};
}

export interface ServerSettings {
  inRecovery: boolean;
  versionNum: number;
  walLevel: string;
  archiveMode: string;
  archiveCommand: string;
  /** PostgreSQL 15+: an archive library replaces archive_command. */
  archiveLibrary: string;
  maxWalSenders: number;
  currentUser: string;
  superuser: boolean;
  replication: boolean;
  /** Roles that can log in and replicate (for a standby's primary_conninfo). */
  replicationRoles: string[];
}

export async function serverSettings(client: Client): Promise<ServerSettings> {
  const {rows} = await client.query(`
    select pg_is_in_recovery() as in_recovery,
           current_setting('server_version_num')::int as version_num,
           current_setting('wal_level') as wal_level,
           current_setting('archive_mode') as archive_mode,
           current_setting('archive_command') as archive_command,
           coalesce(current_setting('archive_library', true), '') as archive_library,
           current_setting('max_wal_senders')::int as max_wal_senders,
           current_user as current_user,
           r.rolsuper as superuser, r.rolreplication as replication,
           array(select rolname::text from pg_roles where rolreplication and rolcanlogin order by rolname) as replication_roles
      from pg_roles r where r.rolname = current_user`);
  const row = rows[0];
  return {
    inRecovery: row.in_recovery,
    versionNum: row.version_num,
    walLevel: row.wal_level,
    archiveMode: row.archive_mode,
    archiveCommand: row.archive_command,
    archiveLibrary: row.archive_library,
    maxWalSenders: row.max_wal_senders,
    currentUser: row.current_user,
    superuser: row.superuser,
    replication: row.replication,
    replicationRoles: row.replication_roles ?? [],
  };
}

/**
 * Writes a WAL record (so the switch is real even on an idle server, where pg_switch_wal() does nothing) and
 * switches to a new segment; returns the name of the segment that was closed.
 */
export async function switchWalFile(client: Client): Promise<string> {
  try {
    await client.query(`select pg_logical_emit_message(false, 'pgbk-check', 'archive round trip')`);
  } catch {
    // not allowed for this role: switch anyway (the segment may then already be archived)
  }
  const {rows} = await client.query(`select pg_walfile_name(pg_switch_wal()) as wal`);
  return rows[0].wal;
}
