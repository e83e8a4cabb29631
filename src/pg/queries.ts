// The SQL pgbk runs, by name, with typed results.

import type {Client} from 'pg';

export interface ServerInfo {
  versionNum: number;
  systemId: string;
  timeline: number;
  inRecovery: boolean;
  walSegmentSize: number;
  dataDirectory: string;
}

export async function serverInfo(client: Client): Promise<ServerInfo> {
  const {rows} = await client.query(`
    select current_setting('server_version_num')::int as version_num,
           (select system_identifier::text from pg_control_system()) as system_id,
           (select timeline_id from pg_control_checkpoint()) as timeline,
           pg_is_in_recovery() as in_recovery,
           current_setting('wal_segment_size') as wal_segment_size,
           current_setting('data_directory') as data_directory`);
  const row = rows[0];
  return {
    versionNum: row.version_num,
    systemId: row.system_id,
    timeline: row.timeline,
    inRecovery: row.in_recovery,
    walSegmentSize: parseSizeSetting(row.wal_segment_size),
    dataDirectory: row.data_directory,
  };
}

/** A size setting as current_setting() shows it ("16MB") → bytes. */
export function parseSizeSetting(text: string): number {
  const match = /^(\d+)\s*(B|kB|MB|GB)?$/.exec(text.trim());
  if (!match) return 16 * 1024 * 1024;
  const unit = {B: 1, kB: 1024, MB: 1024 ** 2, GB: 1024 ** 3}[match[2] ?? 'B'] ?? 1;
  return Number(match[1]) * unit;
}

/** Next transaction id to be assigned (64-bit, epoch included), without consuming one. */
export async function nextXid(client: Client): Promise<string> {
  const {rows} = await client.query(`select pg_snapshot_xmax(pg_current_snapshot())::text as xid`);
  return rows[0].xid;
}

/**
 * The timeline the server is on now: a primary's current WAL file (pg_control_checkpoint() lags a promotion until
 * the next checkpoint), a standby's last checkpoint.
 */
export async function currentTimeline(client: Client): Promise<{timeline: number; systemId: string}> {
  const {rows} = await client.query(`
    select (select system_identifier::text from pg_control_system()) as system_id,
           case when pg_is_in_recovery() then (select timeline_id from pg_control_checkpoint())
                else ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int end as timeline`);
  return {timeline: Number(rows[0].timeline), systemId: rows[0].system_id};
}
