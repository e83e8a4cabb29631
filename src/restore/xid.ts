// Is a --target-xid within reach of the archive? Asked of the policy's server before anything is written.
//
// The rule: the archive along a timeline is a prefix of the WAL its server wrote on that timeline. So when the
// policy's server is this repository's cluster and on the timeline the restore follows, a transaction that server
// has not assigned yet (xid >= its next xid), or that is still in progress there, has no commit or abort record in
// the archive: recovery could only fail at the end of the archive ("recovery ended before configured recovery
// target was reached") after replaying all of it. Such a target is refused (exit 2). A transaction that ended on the
// server may still sit in a segment not archived yet; nothing short of reading the WAL says where its commit is, so
// that is left to recovery. Without the server (unreachable, another timeline) nothing can be proven without reading
// all the WAL after the backup, so the restore goes ahead with a warning.

import {TargetError} from '../errors.js';
import type {BackupManifest} from '../backup/manifest.js';
import type {Policy} from '../policy/types.js';
import {redactUrl} from '../pg/conninfo.js';
import type {Target} from './target.js';

const MASK32 = 0xffffffffn;

export interface XidServerView {
  systemId: string;
  timeline: number;
  /** The server's next full (epoch-qualified) transaction id. */
  next: bigint;
}

/** The full transaction id a target means on a server whose next xid is `next`; undefined: not assigned yet (pure). */
export function widenXid(xid: bigint, next: bigint): bigint | undefined {
  if (xid > MASK32) return xid < next ? xid : undefined;
  let epoch = next >> 32n;
  if (xid >= (next & MASK32)) {
    if (epoch === 0n) return undefined;
    epoch -= 1n;
  }
  return (epoch << 32n) | xid;
}

/** Refuses an xid target the archive cannot hold (TargetError); returns a warning when it cannot be told. */
export async function checkXidReachable(policy: Policy, target: Target & {kind: 'xid'}, timeline: number, backup: BackupManifest): Promise<string | undefined> {
  const server = redactUrl(policy.postgres.url);
  const cannotTell = (why: string) => `cannot check up front that transaction ${target.xid} ended within the archived WAL (${why}); ` +
    'if it did not, recovery replays the whole archive and then fails (recovery ended before configured recovery target was reached)';
  const {withClient} = await import('../pg/client.js');
  let view: XidServerView & {status: string | null};
  try {
    view = await withClient(policy.postgres.url, async (client) => {
      const {rows} = await client.query<{system_id: string; timeline: number; next: string; in_recovery: boolean}>(`
        select (select system_identifier::text from pg_control_system()) as system_id,
               pg_is_in_recovery() as in_recovery,
               txid_snapshot_xmax(txid_current_snapshot())::text as next,
               case when pg_is_in_recovery() then (select timeline_id from pg_control_checkpoint())
                    else ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int end as timeline`);
      const row = rows[0]!;
      const next = BigInt(row.next);
      const full = widenXid(target.xid, next);
      let status: string | null = 'not assigned';
      if (full !== undefined) {
        status = (await client.query<{status: string | null}>('select txid_status($1::bigint) as status', [full.toString()])).rows[0]?.status ?? null;
      }
      return {systemId: row.system_id, timeline: Number(row.timeline), next, status};
    }, {connectTimeoutMs: 3000});
  } catch {
    return cannotTell(`the policy's server ${server} does not answer`);
  }
  if (backup.systemId && view.systemId !== backup.systemId) return cannotTell(`the policy's server ${server} is another cluster`);
  if (view.timeline !== timeline) return cannotTell(`the policy's server is on timeline ${view.timeline}, the restore follows timeline ${timeline}`);
  if (view.status === 'not assigned') {
    throw new TargetError(`--target-xid ${target.xid} is beyond the archive: the policy's server ${server} has not assigned that transaction id yet (its next one is ${view.next})`,
      'check the id (select txid_current() in the transaction; pg_current_xact_id() on PostgreSQL 13+), or restore by --target-time or --target-lsn');
  }
  if (view.status === 'in progress') {
    throw new TargetError(`--target-xid ${target.xid} is beyond the archive: transaction ${target.xid} is still in progress on the policy's server ${server}, so no commit or abort of it can be archived`,
      'wait until it ends and its WAL is archived (select pg_switch_wal() on the server), or restore to another target');
  }
  return undefined;
}
