// A standby as seen from itself: in recovery or not, streaming or not, how far replay is behind.

import type {Client} from 'pg';
import {withClient} from '../pg/client.js';

export type StandbyProbe =
  | {
    reachable: true;
    inRecovery: boolean;
    /** pg_stat_wal_receiver.status ('streaming', 'catchup'...), null when no WAL receiver runs. */
    receiver: string | null;
    receiveLsn: string | null;
    replayLsn: string | null;
    /**
     * Seconds replay is behind: 0 when streaming and everything received is replayed (an idle primary commits
     * nothing, so the last replay timestamp alone would grow forever); else now() - pg_last_xact_replay_timestamp();
     * null when nothing was replayed yet.
     */
    lagSeconds: number | null;
  }
  | {reachable: false; error: string};

export async function probeStandby(url: string): Promise<StandbyProbe> {
  try {
    return await withClient(url, (client) => standbyState(client));
  } catch (error) {
    return {reachable: false, error: (error as Error).message};
  }
}

export async function standbyState(client: Client): Promise<StandbyProbe & {reachable: true}> {
  const {rows} = await client.query(`
    select pg_is_in_recovery() as in_recovery,
           (select status from pg_stat_wal_receiver limit 1) as receiver,
           pg_last_wal_receive_lsn()::text as receive_lsn,
           pg_last_wal_replay_lsn()::text as replay_lsn,
           extract(epoch from now() - pg_last_xact_replay_timestamp())::float8 as since_replay`);
  const row = rows[0];
  return {
    reachable: true,
    inRecovery: row.in_recovery,
    receiver: row.receiver ?? null,
    receiveLsn: row.receive_lsn,
    replayLsn: row.replay_lsn,
    lagSeconds: standbyLagSeconds(row.receiver ?? null, row.receive_lsn, row.replay_lsn, row.since_replay),
  };
}

/** Pure: see StandbyProbe.lagSeconds. */
export function standbyLagSeconds(receiver: string | null, receiveLsn: string | null, replayLsn: string | null, sinceReplay: number | null): number | null {
  if (receiver === 'streaming' && receiveLsn !== null && receiveLsn === replayLsn) return 0;
  return sinceReplay === null ? null : Math.max(0, sinceReplay);
}
