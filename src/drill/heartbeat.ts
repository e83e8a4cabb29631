// The opt-in heartbeat (policy drill.heartbeat: true): pgbk writes a row into pgbk_heartbeat on the source — at the
// start of every drill, and from anything that calls writeHeartbeat() on a schedule — so that a drill has a known,
// recent commit to look for in the restored cluster, whatever the user's schema and however idle the database.

import type {Client} from 'pg';
import {PgServerError} from '../errors.js';
import type {Policy} from '../policy/types.js';
import {withClient} from '../pg/client.js';
import type {DrillCheckResult} from './report.js';
import {formatMicros} from './target.js';

const TABLE = 'public.pgbk_heartbeat';

/**
 * Inserts a heartbeat row (its time is clock_timestamp(), taken just before the commit); with `archived`, switches
 * WAL and waits until the segment holding it is archived. Returns the row's time (UTC, microseconds).
 */
export async function writeHeartbeat(policy: Policy, options: {archived: boolean; timeoutMs: number}): Promise<string> {
  return withClient(policy.postgres.url, async (client) => {
    await client.query(`create table if not exists ${TABLE} (at timestamptz primary key default clock_timestamp())`);
    const {rows} = await client.query<{at: string}>(
      `insert into ${TABLE} default values returning to_char(at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') as at`);
    if (options.archived) await switchAndWait(client, options.timeoutMs);
    return rows[0]!.at;
  });
}

async function switchAndWait(client: Client, timeoutMs: number): Promise<void> {
  const {rows} = await client.query<{wal: string}>('select pg_walfile_name(pg_switch_wal()) as wal');
  const wal = rows[0]!.wal;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const {rows: status} = await client.query<{last: string | null}>('select last_archived_wal as last from pg_stat_archiver');
    if (status[0]?.last && status[0].last >= wal) return;
    if (Date.now() > deadline) {
      throw new PgServerError(`the heartbeat's WAL segment ${wal} was not archived within ${Math.round(timeoutMs / 1000)}s`,
        'check archive_command and pg_stat_archiver on the source (pgbk check)');
    }
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

/**
 * The newest heartbeat in the restored cluster must be the newest one the source wrote at or before the target.
 * A heartbeat whose time is within a second before the target may have committed just after it: then the one
 * before it is accepted too (its commit record is what the WAL proof checks exactly).
 */
export async function checkHeartbeat(policy: Policy, restored: Client, targetMicros: bigint, written?: string): Promise<DrillCheckResult> {
  const name = 'heartbeat';
  const target = formatMicros(targetMicros);
  const query = `select to_char(at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') as at from ${TABLE} where at <= $1::timestamptz order by at desc limit 2`;
  let got: string | undefined;
  try {
    const {rows} = await restored.query<{at: string}>(`select to_char(max(at) at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') as at from ${TABLE}`);
    got = rows[0]?.at ?? undefined;
  } catch (error) {
    return {name, ok: false, detail: `cannot read ${TABLE} in the restored cluster: ${(error as Error).message}`};
  }
  const source = await withClient(policy.postgres.url, (client) => client.query<{at: string}>(query, [target])).then((result) => result.rows.map((row) => row.at));
  const [newest, previous] = source;
  if (!newest) return {name, ok: got === undefined, detail: got ? `restored ${got}, but the source has no heartbeat before ${target}` : `no heartbeat before ${target} on the source`};
  const nearTarget = targetMicros - BigInt(Date.parse(newest)) * 1000n < 1_000_000n;
  const ok = got === newest || (nearTarget && got === previous);
  return {name, ok, detail: `newest restored heartbeat ${got ?? 'none'}; source's newest at or before the target ${newest}${written ? ` (the drill wrote ${written})` : ''}`};
}
