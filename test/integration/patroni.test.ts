// The patroni strategy against real components on loopback: etcd, two Patroni members (PostgreSQL run by Patroni
// as the postgres user, archive_command and restore_command = pgbk on every member) and HAProxy (read-write port
// → leader by GET /primary, read-only port → replicas by GET /replica).
//
// n1 bootstraps; pgbk backs it up (no replica yet: from the leader); n2 joins and Patroni builds it with pgbk's
// replica creation method from that backup; pgbk backs up again, now from the replica n2; rows are written through
// HAProxy; Patroni switches over to n2 (timeline 2) while a writer keeps writing through HAProxy; then pgbk verify
// finds no WAL missing across the timeline switch, and a restore to a time after the failover brings back exactly
// the rows HAProxy's leader held at that time. Needs the Debian packages patroni, etcd-server and haproxy
// (.ci/run installs them): without them the test fails, it does not skip.

import {readdirSync, readFileSync} from 'node:fs';
import {join} from 'node:path';
import pg from 'pg';
import {afterAll, beforeAll, describe, expect, it} from 'vitest';
import {makeTempDir, freePort, waitFor, pgBinDir, runAsPostgres} from '../helpers/cluster.js';
import {runPgbk} from '../helpers/cli.js';
import {writePolicy, snapshot, type RowSnapshot} from '../helpers/pitr.js';
import {preparePatroniCluster, tail, type PatroniNode, type PatroniTestCluster} from '../helpers/patroni.js';
import {parse} from 'yaml';

async function query<R = Record<string, unknown>>(url: string, sql: string, params: unknown[] = []): Promise<R[]> {
  const client = new pg.Client({connectionString: url, connectionTimeoutMillis: 3_000, query_timeout: 15_000});
  client.on('error', () => undefined);
  await client.connect();
  try {
    return (await client.query(sql, params)).rows as R[];
  } finally {
    await client.end().catch(() => undefined);
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function listFiles(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(dir, {withFileTypes: true})) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...listFiles(path));
    else out.push(path);
  }
  return out;
}

describe('patroni strategy: Patroni + etcd + HAProxy on loopback', () => {
  let cluster: PatroniTestCluster;
  let n1: PatroniNode;
  let n2: PatroniNode;
  const pgbk = (args: string[], timeoutMs = 120_000) => runPgbk([...args, '--policy', cluster.policyFile], {timeoutMs});
  const fail = (message: string) => new Error(`${message}\n${cluster.logs()}`);

  /** The member GET /cluster lists under this name. */
  async function member(name: string): Promise<Record<string, any> | undefined> {
    for (const node of cluster.nodes) {
      const answer = await cluster.rest(node, '/cluster');
      if (answer?.status === 200) return (answer.body.members as Array<Record<string, any>>).find((m) => m.name === name);
    }
    return undefined;
  }

  async function waitForReplica(node: PatroniNode, timeoutMs: number): Promise<void> {
    await waitFor(async () => {
      const m = await member(node.name);
      const health = await cluster.rest(node, '/replica');
      return m && m.role === 'replica' && ['running', 'streaming'].includes(m.state) && typeof m.lag === 'number' && health?.status === 200;
    }, {timeoutMs, intervalMs: 500, what: `${node.name} to run as a healthy replica`}).catch((error) => {
      throw fail((error as Error).message);
    });
  }

  beforeAll(async () => {
    cluster = await preparePatroniCluster({nodes: 2});
    [n1, n2] = cluster.nodes as [PatroniNode, PatroniNode];
    await cluster.startEtcd();
    await cluster.startNode(n1);
    await waitFor(async () => (await cluster.rest(n1, '/primary'))?.status === 200,
      {timeoutMs: 90_000, intervalMs: 500, what: 'n1 to bootstrap and lead'}).catch((error) => {
      throw fail((error as Error).message);
    });
    await cluster.startHaproxy();
    await waitFor(async () => {
      const [row] = await query<{r: boolean}>(cluster.primaryUrl, 'select pg_is_in_recovery() as r');
      return row?.r === false;
    }, {timeoutMs: 20_000, intervalMs: 250, what: 'HAProxy read-write port to reach the leader'}).catch((error) => {
      throw fail((error as Error).message);
    });
    await query(cluster.primaryUrl, `create table items (id bigserial primary key, phase text not null, n int not null, written_at timestamptz not null default clock_timestamp())`);
    await query(cluster.primaryUrl, `insert into items (phase, n) select 'bootstrap', g from generate_series(1, 1000) g`);
  }, 150_000);

  afterAll(async () => {
    await cluster?.destroy();
  }, 90_000);

  it('backs up the leader when there is no replica, and Patroni builds a new member from that backup (create_replica_methods: pgbk)', async () => {
    const first = await pgbk(['backup', '--json']);
    expect(first.exitCode, `${first.stderr}\n${cluster.logs()}`).toBe(0);
    expect(JSON.parse(first.stdout).backupFrom).toBe('primary');
    expect(first.stderr).toMatch(/no replica: backing up from the leader n1/);

    await cluster.startNode(n2);
    await waitForReplica(n2, 120_000);
    const log = readFileSync(n2.log, 'utf8');
    // What Patroni 3.0 passes: the method's own keys, then --scope, --role, --datadir, --connstring.
    expect(log).toMatch(new RegExp(`pgbk: patroni-create-replica --scope=${cluster.scope} --role=replica --datadir=${n2.dataDir} --connstring=\\S`));
    expect(log).toMatch(/; ignored: --no_leader=True/); // the method's other config keys come as --key=value
    expect(log).toMatch(new RegExp(`from backup ${JSON.parse(first.stdout).id} .*cluster ${cluster.scope} system identifier \\d+ matches`));
    expect(log).toMatch(/replica has been created using pgbk/);
    expect(log).not.toMatch(/replica has been created using basebackup/);
  }, 200_000);

  it('takes the next backup from the healthy replica, and status/check read the cluster from the REST API', async () => {
    await query(cluster.primaryUrl, `insert into items (phase, n) select 'before-backup', g from generate_series(1, 500) g`);
    const backup = await pgbk(['backup', '--json']);
    expect(backup.exitCode, `${backup.stderr}\n${cluster.logs()}`).toBe(0);
    const manifest = JSON.parse(backup.stdout);
    expect(manifest.backupFrom).toBe('standby');
    expect(manifest.timeline).toBe(1);

    // Right after the backup's pg_switch_wal() on the leader, GET /cluster can show n2 more than 1 MB behind for
    // one Patroni loop (the two positions are sampled at different times): status would then rightly name the
    // leader as source. Wait until n2 is within maximum_lag_on_failover twice in a row.
    let streak = 0;
    await waitFor(async () => {
      const lag = (await member('n2'))?.lag;
      streak = typeof lag === 'number' && lag <= 1048576 && (await cluster.rest(n2, '/replica?lag=1048576'))?.status === 200 ? streak + 1 : 0;
      return streak >= 2;
    }, {timeoutMs: 30_000, intervalMs: 2_000, what: 'n2 to be within maximum_lag_on_failover'});
    const status = await pgbk(['status', '--json', '--no-commit-times']);
    expect(status.exitCode, `${status.stdout}${status.stderr}`).toBe(0);
    const patroni = JSON.parse(status.stdout).policies[0].patroni;
    expect(patroni.reachable).toBe(true);
    expect(patroni.leader).toBe('n1');
    expect(patroni.members.map((m: {name: string; role: string}) => `${m.name}:${m.role}`)).toEqual(['n1:leader', 'n2:replica']);
    expect(patroni.backupSource, status.stdout).toMatchObject({member: 'n2', role: 'replica'});
    const text = await pgbk(['status', '--no-commit-times']);
    expect(text.stdout).toMatch(/patroni\s+cluster from http:\/\/127\.0\.0\.1:\d+\/cluster/);
    expect(text.stdout).toMatch(/n2\s+replica\s+(running|streaming)\s+127\.0\.0\.1:\d+\s+1\s+\d+ B/);

    // check: the policy goes through HAProxy's read-write port, so it reaches the leader...
    const check = await pgbk(['check', '--json', '--wait', '60']);
    expect(check.exitCode, `${check.stdout}${check.stderr}`).toBe(0);
    const checks = JSON.parse(check.stdout).policies[0].checks as Array<{name: string; status: string; detail: string}>;
    expect(checks.find((c) => c.name === 'connection role'), check.stdout).toMatchObject({status: 'ok'});
    expect(checks.find((c) => c.name === 'connection role')!.detail).toMatch(/reaches the leader n1 through 127\.0\.0\.1:\d+/);
    // ...and one through the read-only port reaches a replica, which check reports.
    const policy = parse(readFileSync(cluster.policyFile, 'utf8'));
    const readOnly = writePolicy(makeTempDir('pgbk-patroni-ro-'), 'readonly', {...policy, postgres: {...policy.postgres, url: cluster.replicaUrl}});
    const roCheck = await runPgbk(['check', '--json', '--wait', '5', '--policy', readOnly]);
    expect(roCheck.exitCode).toBe(1);
    const roChecks = JSON.parse(roCheck.stdout).policies[0].checks as Array<{name: string; status: string; detail: string}>;
    expect(roChecks.find((c) => c.name === 'connection role'), roCheck.stdout).toMatchObject({status: 'fail'});
    expect(roChecks.find((c) => c.name === 'connection role')!.detail).toMatch(/reaches replica n2/);
  }, 200_000);

  it('keeps the archive whole across a switchover and restores to a time after it exactly', async () => {
    await query(cluster.primaryUrl, `insert into items (phase, n) select 'before-failover', g from generate_series(1, 200) g`);

    // A writer through HAProxy's read-write port for the whole switchover; each acknowledged row is recorded.
    const acknowledged: number[] = [];
    let writing = true;
    let counter = 0;
    const writer = (async () => {
      while (writing) {
        counter++;
        try {
          const [row] = await query<{id: string}>(cluster.primaryUrl, `insert into items (phase, n) values ('during-failover', $1) returning id`, [counter]);
          acknowledged.push(Number(row!.id));
        } catch {
          await sleep(200); // leader going away / not elected yet: retry
        }
        await sleep(50);
      }
    })();

    const switchover = await cluster.patronictl(['switchover', '--leader', 'n1', '--candidate', 'n2', '--force', cluster.scope]);
    expect(switchover.exitCode, `${switchover.stdout}${switchover.stderr}\n${cluster.logs()}`).toBe(0);
    // The new leader accepts writes through HAProxy (bounded).
    await waitFor(async () => {
      const [row] = await query<{port: number; r: boolean}>(cluster.primaryUrl, 'select inet_server_port() as port, pg_is_in_recovery() as r');
      if (row?.port !== n2.pgPort || row.r) return false;
      await query(cluster.primaryUrl, `insert into items (phase, n) values ('after-failover', 0)`);
      return true;
    }, {timeoutMs: 90_000, intervalMs: 500, what: 'n2 to accept writes through HAProxy'}).catch((error) => {
      throw fail((error as Error).message);
    });
    writing = false;
    await writer;
    // Patroni publishes the member's new timeline on its next loop.
    await waitFor(async () => (await member('n2'))?.timeline === 2, {timeoutMs: 30_000, intervalMs: 500, what: 'GET /cluster to show n2 on timeline 2'});

    for (let batch = 1; batch <= 5; batch++) {
      await query(cluster.primaryUrl, `insert into items (phase, n) select 'after-failover', g from generate_series(${batch * 100}, ${batch * 100 + 49}) g`);
    }
    const expected = (await snapshot(cluster.primaryUrl)) as RowSnapshot;
    const [{ids}] = await query<{ids: string[]}>(cluster.primaryUrl, `select array_agg(id::text order by id) as ids from items where phase in ('during-failover', 'after-failover')`) as [{ids: string[]}];
    await sleep(1_100);
    const [{target}] = await query<{target: string}>(cluster.primaryUrl, `select to_char(clock_timestamp() at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') as target`) as [{target: string}];
    await sleep(1_100);
    // After the target: must not come back.
    await query(cluster.primaryUrl, `insert into items (phase, n) select 'after-target', g from generate_series(1, 100) g`);
    await query(cluster.primaryUrl, `delete from items where phase = 'bootstrap' and n % 2 = 0`);
    const [{wal}] = await query<{wal: string}>(cluster.primaryUrl, 'select pg_walfile_name(pg_switch_wal()) as wal') as [{wal: string}];
    await waitFor(async () => {
      const [row] = await query<{last: string | null}>(cluster.primaryUrl, 'select last_archived_wal as last from pg_stat_archiver');
      return row?.last !== null && row!.last! >= wal;
    }, {timeoutMs: 60_000, intervalMs: 250, what: `the new leader to archive ${wal}`});

    const archived = listFiles(cluster.repoDir).map((file) => file.split('/').at(-1)!);
    expect(archived.some((name) => name.startsWith('00000002.history'))).toBe(true);
    expect(acknowledged.every((id) => ids.includes(String(id)))).toBe(true);

    const verify = await pgbk(['verify']);
    expect(verify.exitCode, `${verify.stdout}${verify.stderr}`).toBe(0);
    const after = JSON.parse((await pgbk(['status', '--json', '--no-commit-times'])).stdout).policies[0].patroni;
    expect(after.leader).toBe('n2');
    expect(after.members.find((m: {name: string}) => m.name === 'n2')).toMatchObject({role: 'leader', timeline: 2});

    const restoreDir = join(makeTempDir('pgbk-patroni-restore-'), 'data');
    const port = await freePort();
    const restore = await pgbk(['restore', '--to', restoreDir, '--target-time', target, '--start', '--port', String(port), '--archive-mode', 'off'], 180_000);
    try {
      expect(restore.exitCode, `${restore.stdout}${restore.stderr}\n${tail(join(restoreDir, 'pgbk-start.log'))}`).toBe(0);
      const restoredUrl = `postgresql://postgres@127.0.0.1:${port}/postgres`;
      expect(await snapshot(restoredUrl)).toEqual(expected);
      const [{restoredIds}] = await query<{restoredIds: string[]}>(restoredUrl,
        `select array_agg(id::text order by id) as "restoredIds" from items where phase in ('during-failover', 'after-failover')`) as [{restoredIds: string[]}];
      expect(restoredIds).toEqual(ids);
      const [{after}] = await query<{after: number}>(restoredUrl, `select count(*)::int as after from items where phase = 'after-target'`) as [{after: number}];
      expect(after).toBe(0);
    } finally {
      await runAsPostgres(join(pgBinDir(), 'pg_ctl'), ['-D', restoreDir, '-m', 'immediate', '-w', 'stop'], {timeoutMs: 30_000});
    }
  }, 230_000);
});
