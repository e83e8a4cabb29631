// Logical replication in restored copies: a copy of a subscriber must never connect to the publisher and consume
// the production slot (the real subscriber would then miss those changes for good), and a copy of a publisher
// must not keep slots that pin WAL. Also the SQL that status shows for subscriptions and slots.
//
// Scratch servers (drills, restore --start) start with max_logical_replication_workers = 0: the launcher is not
// even registered, so no apply worker can start between promotion and the moment pgbk disables the subscriptions.
// max_worker_processes is left as the source had it (recovery refuses a lower value than the primary's with
// hot_standby on). Once the server accepts connections, every subscription is disabled and detached from its slot
// (slot_name = NONE: even a later ENABLE or DROP SUBSCRIPTION cannot touch the publisher's slot), and every
// replication slot found in the copy is dropped. pg_basebackup copies no slot, so a restored copy normally holds
// none; one found there (a data directory copied by other means) is a copy of the production slot in the copy's
// own pg_replslot — it can never advance the production slot, but it would pin the copy's WAL and could be
// consumed by a subscriber pointed at the copy by mistake.

import type {Client} from 'pg';

export interface NeutralisedSubscription {
  name: string;
  database: string;
  wasEnabled: boolean;
  /** The slot on the publisher it was attached to (null: already detached). */
  slot: string | null;
}

export interface DroppedSlot {
  name: string;
  type: string;
  database: string | null;
}

export interface NeutraliseResult {
  subscriptions: NeutralisedSubscription[];
  droppedSlots: DroppedSlot[];
}

/**
 * The server options a scratch copy starts with: no logical replication worker can run, and the usual extension
 * job schedulers run no job (a copy must not send the mails, refresh the views or purge the rows the production
 * cluster's scheduled jobs do): pg_cron 1.5+ (cron.launch_active_jobs) and TimescaleDB (its background workers).
 * Both are custom settings: a server without the extension keeps them as inert placeholders.
 */
export const SCRATCH_LOGICAL_SETTINGS: Readonly<Record<string, string>> = {
  max_logical_replication_workers: '0',
  'cron.launch_active_jobs': 'off',
  'timescaledb.max_background_workers': '0',
};

const ident = (name: string): string => `"${name.replace(/"/g, '""')}"`;

/**
 * Disables and detaches every subscription (in every database: pg_subscription is a shared catalog, ALTER
 * SUBSCRIPTION runs in the subscription's own database) and drops every replication slot of the copy.
 * `connect(database)` opens a client to that database of the copy (closed by this function).
 */
export async function neutraliseLogicalReplication(client: Client, connect: (database: string) => Promise<Client>): Promise<NeutraliseResult> {
  const {rows: subs} = await client.query<{name: string; database: string; enabled: boolean; slot: string | null}>(`
    select s.subname as name, d.datname as database, s.subenabled as enabled, s.subslotname as slot
      from pg_subscription s join pg_database d on d.oid = s.subdbid order by d.datname, s.subname`);
  const subscriptions: NeutralisedSubscription[] = [];
  const byDatabase = new Map<string, typeof subs>();
  for (const sub of subs) byDatabase.set(sub.database, [...(byDatabase.get(sub.database) ?? []), sub]);
  for (const [database, list] of byDatabase) {
    const db = await connect(database);
    try {
      for (const sub of list) {
        // Neither statement contacts the publisher: with slot_name = NONE the subscription forgets its slot.
        await db.query(`alter subscription ${ident(sub.name)} disable`);
        await db.query(`alter subscription ${ident(sub.name)} set (slot_name = none)`);
        subscriptions.push({name: sub.name, database, wasEnabled: sub.enabled, slot: sub.slot});
      }
    } finally {
      await db.end().catch(() => undefined);
    }
  }
  const {rows: slots} = await client.query<{name: string; type: string; database: string | null}>(
    `select slot_name as name, slot_type as type, database from pg_replication_slots order by slot_name`);
  for (const slot of slots) await client.query('select pg_drop_replication_slot($1)', [slot.name]);
  return {subscriptions, droppedSlots: slots};
}

/** One line for the drill report and restore --start. */
export function describeNeutralised(result: NeutraliseResult): string {
  const parts: string[] = [];
  for (const sub of result.subscriptions) {
    parts.push(`subscription ${sub.name} (database ${sub.database}) ${sub.wasEnabled ? 'disabled' : 'kept disabled'}` +
      `${sub.slot ? ` and detached from the publisher's slot ${sub.slot}` : ''}`);
  }
  for (const slot of result.droppedSlots) parts.push(`${slot.type} slot ${slot.name} of the copy dropped`);
  return parts.length > 0 ? parts.join('; ') : 'no subscription, no replication slot';
}

// ---------------------------------------------------------------------------------------------------------------
// status

export interface SubscriptionStatus {
  name: string;
  database: string;
  enabled: boolean;
  slot: string | null;
  /** An apply worker runs for it. */
  running: boolean;
  receivedLsn: string | null;
  latestEndLsn: string | null;
  /** Seconds since the publisher's last reported end position (null: never). */
  lagSeconds: number | null;
}

export interface SlotStatus {
  name: string;
  type: string;
  database: string | null;
  active: boolean;
  restartLsn: string | null;
  confirmedFlushLsn: string | null;
  /** WAL the slot keeps on the server: current position minus restart_lsn. */
  retainedBytes: number | null;
  walStatus: string | null;
}

/** pg_subscription with pg_stat_subscription's apply workers (table-sync workers left out). */
export async function subscriptionStatus(client: Client): Promise<SubscriptionStatus[]> {
  const {rows} = await client.query(`
    select s.subname as name, d.datname as database, s.subenabled as enabled, s.subslotname as slot,
           st.pid is not null as running, st.received_lsn::text as received_lsn, st.latest_end_lsn::text as latest_end_lsn,
           extract(epoch from now() - st.latest_end_time)::float8 as lag_seconds
      from pg_subscription s join pg_database d on d.oid = s.subdbid
      left join pg_stat_subscription st on st.subid = s.oid and st.relid is null
     order by d.datname, s.subname`);
  return rows.map((row) => ({
    name: row.name, database: row.database, enabled: row.enabled, slot: row.slot, running: row.running,
    receivedLsn: row.received_lsn, latestEndLsn: row.latest_end_lsn,
    lagSeconds: row.lag_seconds === null ? null : Math.max(0, Math.round(Number(row.lag_seconds) * 10) / 10),
  }));
}

/** Every replication slot with the WAL it retains. */
export async function slotStatus(client: Client): Promise<SlotStatus[]> {
  const {rows} = await client.query(`
    select slot_name as name, slot_type as type, database, active, restart_lsn::text as restart_lsn,
           confirmed_flush_lsn::text as confirmed_flush_lsn, wal_status,
           pg_wal_lsn_diff(case when pg_is_in_recovery() then pg_last_wal_receive_lsn() else pg_current_wal_lsn() end, restart_lsn)::int8::text as retained
      from pg_replication_slots order by slot_name`);
  return rows.map((row) => ({
    name: row.name, type: row.type, database: row.database, active: row.active, restartLsn: row.restart_lsn,
    confirmedFlushLsn: row.confirmed_flush_lsn, walStatus: row.wal_status, retainedBytes: row.retained === null ? null : Number(row.retained),
  }));
}

// ---------------------------------------------------------------------------------------------------------------
// restore --start

/**
 * After restore --start: the same, through 127.0.0.1:<port> with the policy's user and password (the restored
 * pg_hba.conf is the source's, which admits the policy's connections).
 */
export async function neutraliseRestored(policyUrl: string, port: number): Promise<NeutraliseResult> {
  const {splitPassword} = await import('../pg/conninfo.js');
  const pg = (await import('pg')).default;
  const {url, password} = splitPassword(policyUrl);
  const parsed = new URL(url);
  const user = decodeURIComponent(parsed.username) || 'postgres';
  const open = async (database: string): Promise<Client> => {
    const client = new pg.Client({host: '127.0.0.1', port, user, password, database, application_name: 'pgbk-restore', connectionTimeoutMillis: 30_000});
    await client.connect();
    return client;
  };
  const client = await open(decodeURIComponent(parsed.pathname.slice(1)) || 'postgres');
  try {
    return await neutraliseLogicalReplication(client, open);
  } finally {
    await client.end().catch(() => undefined);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// dumps

/**
 * The subscriptions of the database `client` is connected to — and only those: a dump restored next to production
 * on the same server must not touch the server's other subscriptions — disabled and detached from their slot
 * (pg_restore creates them with connect = false, still naming the publisher's slot); `drop` also drops them
 * (DROP DATABASE refuses a database with subscriptions).
 */
export async function detachDatabaseSubscriptions(client: Client, options: {drop: boolean}): Promise<string[]> {
  const {rows} = await client.query<{name: string}>(
    'select subname as name from pg_subscription where subdbid = (select oid from pg_database where datname = current_database()) order by subname');
  for (const {name} of rows) {
    await client.query(`alter subscription ${ident(name)} disable`);
    await client.query(`alter subscription ${ident(name)} set (slot_name = none)`);
    if (options.drop) await client.query(`drop subscription ${ident(name)}`);
  }
  return rows.map((row) => row.name);
}
