// The patroni strategy with Patroni's REST API over https (a certificate from a CA made with openssl here) and
// restapi.authentication, against real etcd + two Patroni 3.0 members on loopback: pgbk backs up, builds n2 with
// patroni-create-replica, backs up from n2 and shows status/check, all through https verified against
// patroni.ca_file, with patroni.username/password (the password from ${PGBK_PATRONI_PASSWORD}, never printed).
//
// Patroni itself asks for restapi.authentication on its write endpoints only; pgbk only reads. So a wrong password
// is shown against an authenticating https proxy in front of n1's REST API (run by this test), which also plays
// a member of another database system (n0): pgbk must refuse it as backup source, name it and both identifiers,
// and take the backup from the real replica instead. n0's PostgreSQL address is a closed port: had pgbk trusted
// it, the backup would fail.

import {readFileSync} from 'node:fs';
import {createServer, type Server} from 'node:https';
import type {AddressInfo} from 'node:net';
import pg from 'pg';
import {parse} from 'yaml';
import {afterAll, beforeAll, describe, expect, it} from 'vitest';
import {freePort, makeTempDir, waitFor} from '../helpers/cluster.js';
import {runPgbk, type RunPgbkResult} from '../helpers/cli.js';
import {writePolicy} from '../helpers/pitr.js';
import {makeTestCertificates, preparePatroniCluster, type PatroniNode, type PatroniTestCluster} from '../helpers/patroni.js';

async function query<R = Record<string, unknown>>(url: string, sql: string): Promise<R[]> {
  const client = new pg.Client({connectionString: url, connectionTimeoutMillis: 3_000, query_timeout: 15_000});
  client.on('error', () => undefined);
  await client.connect();
  try {
    return (await client.query(sql)).rows as R[];
  } finally {
    await client.end().catch(() => undefined);
  }
}

const PASSWORD = `rest-pw-${process.pid}-${Date.now().toString(36)}`;
const FOREIGN_SYSTEM = '7000000000000000001';

describe('patroni strategy: REST API over https with basic auth, members\' system identifiers checked', () => {
  let cluster: PatroniTestCluster;
  let n1: PatroniNode;
  let n2: PatroniNode;
  let policy: Record<string, any>;
  let policyDir: string;
  let systemId: string;
  let proxy: Server;
  let proxyBase: string;
  const proxyHits: string[] = [];
  const outputs: RunPgbkResult[] = [];
  const fail = (message: string) => new Error(`${message}\n${cluster.logs()}`);

  async function pgbk(args: string[], policyFile = cluster.policyFile, password = PASSWORD): Promise<RunPgbkResult> {
    const result = await runPgbk([...args, '--policy', policyFile], {timeoutMs: 120_000, env: {PGBK_PATRONI_PASSWORD: password}});
    outputs.push(result);
    return result;
  }

  /** n2 healthy and within maximum_lag_on_failover in GET /cluster, twice in a row (one Patroni loop apart). */
  async function replicaSettled(): Promise<void> {
    let streak = 0;
    await waitFor(async () => {
      const members = (await cluster.rest(n1, '/cluster'))?.body?.members as Array<Record<string, any>> | undefined;
      const lag = members?.find((member) => member.name === 'n2')?.lag;
      const ok = typeof lag === 'number' && lag <= 1048576 && (await cluster.rest(n2, '/replica?lag=1048576'))?.status === 200;
      streak = ok ? streak + 1 : 0;
      return streak >= 2;
    }, {timeoutMs: 30_000, intervalMs: 2_000, what: 'n2 to be within maximum_lag_on_failover'});
  }

  beforeAll(async () => {
    const certs = makeTestCertificates(makeTempDir('pgbk-patroni-tls-'));
    cluster = await preparePatroniCluster({
      nodes: 2,
      restapi: {...certs, username: 'pgbk', password: PASSWORD},
      env: {PGBK_PATRONI_PASSWORD: PASSWORD},
    });
    [n1, n2] = cluster.nodes as [PatroniNode, PatroniNode];
    // The policy every member's archive_command, restore_command and create-replica method use: https + CA + auth,
    // the password from the environment Patroni (and so PostgreSQL) runs in; postgres.url names the leader.
    policy = parse(readFileSync(cluster.policyFile, 'utf8'));
    policy.postgres.url = n1.url;
    policy.patroni = {...policy.patroni, ca_file: certs.cafile, username: 'pgbk', password: '${PGBK_PATRONI_PASSWORD}'};
    policyDir = cluster.dir;
    writePolicy(policyDir, 'patroni', policy);
    expect(policy.patroni.rest_api[0]).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);

    // The authenticating https proxy in front of n1's REST API; under /foreign it adds member n0 of another system.
    const closedPort = await freePort();
    const expected = `Basic ${Buffer.from(`pgbk:${PASSWORD}`).toString('base64')}`;
    proxy = createServer({cert: readFileSync(certs.certfile), key: readFileSync(certs.keyfile)}, (req, res) => {
      const send = (status: number, body: unknown) => {
        res.writeHead(status, {'content-type': 'application/json'});
        res.end(JSON.stringify(body));
      };
      proxyHits.push(req.url ?? '');
      if (req.headers.authorization !== expected) {
        res.writeHead(401, {'www-authenticate': 'Basic realm="patroni"'});
        res.end('not authenticated');
        return;
      }
      const url = req.url ?? '';
      if (url.startsWith('/n0/')) {
        if (url.startsWith('/n0/replica')) return send(200, {state: 'running', role: 'replica'});
        if (url === '/n0/patroni') return send(200, {state: 'running', role: 'replica', database_system_identifier: FOREIGN_SYSTEM, patroni: {scope: cluster.scope}});
        return send(404, {});
      }
      const [, prefix, rest] = /^\/(plain|foreign)(\/.*)$/.exec(url) ?? [];
      if (!prefix) return send(404, {});
      void cluster.rest(n1, rest!).then((answer) => {
        if (!answer) return send(502, {});
        if (prefix === 'foreign' && rest === '/cluster') {
          answer.body.members.unshift({name: 'n0', role: 'replica', state: 'streaming', api_url: `${proxyBase}/n0/patroni`,
            host: '127.0.0.1', port: closedPort, timeline: 1, lag: 0});
        }
        send(answer.status, answer.body);
      });
    });
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    proxyBase = `https://127.0.0.1:${(proxy.address() as AddressInfo).port}`;

    await cluster.startEtcd();
    await cluster.startNode(n1);
    await waitFor(async () => (await cluster.rest(n1, '/primary'))?.status === 200,
      {timeoutMs: 90_000, intervalMs: 500, what: 'n1 to bootstrap and lead (REST API over https)'}).catch((error) => {
      throw fail((error as Error).message);
    });
    await query(n1.url, `create table items (id bigserial primary key, n int not null)`);
    await query(n1.url, `insert into items (n) select g from generate_series(1, 1000) g`);
    systemId = (await query<{id: string}>(n1.url, 'select system_identifier::text as id from pg_control_system()'))[0]!.id;
  }, 150_000);

  afterAll(async () => {
    await new Promise((resolve) => proxy ? proxy.close(resolve) : resolve(undefined));
    await cluster?.destroy();
    // Whatever happened, no output of pgbk ever held the password.
    for (const result of outputs) expect(`${result.stdout}${result.stderr}`).not.toContain(PASSWORD);
  }, 90_000);

  it('backs up, builds a replica and backs up from it through https with ca_file and basic auth; status and check agree on the system identifier', async () => {
    const first = await pgbk(['backup', '--json']);
    expect(first.exitCode, `${first.stderr}\n${cluster.logs()}`).toBe(0);
    expect(JSON.parse(first.stdout).backupFrom).toBe('primary');

    await cluster.startNode(n2);
    await waitFor(async () => {
      const members = (await cluster.rest(n1, '/cluster'))?.body?.members as Array<Record<string, any>> | undefined;
      const m = members?.find((member) => member.name === 'n2');
      return m?.role === 'replica' && ['running', 'streaming'].includes(m.state) && typeof m.lag === 'number' && (await cluster.rest(n2, '/replica'))?.status === 200;
    }, {timeoutMs: 120_000, intervalMs: 500, what: 'n2 to run as a healthy replica'}).catch((error) => {
      throw fail((error as Error).message);
    });
    // patroni-create-replica read the cluster's system identifier over https.
    expect(readFileSync(n2.log, 'utf8')).toMatch(new RegExp(`cluster ${cluster.scope} system identifier ${systemId} matches`));

    const second = await pgbk(['backup', '--json']);
    expect(second.exitCode, `${second.stderr}\n${cluster.logs()}`).toBe(0);
    expect(JSON.parse(second.stdout).backupFrom).toBe('standby');
    expect(second.stderr).not.toMatch(/refused/);

    // Right after a backup's pg_switch_wal, GET /cluster may show n2 more than 1 MB behind for one Patroni loop
    // (positions sampled at different times): status then rightly names the leader as source. Wait it out.
    await replicaSettled();
    const status = await pgbk(['status', '--json', '--no-commit-times']);
    expect(status.exitCode, `${status.stdout}${status.stderr}`).toBe(0);
    const patroni = JSON.parse(status.stdout).policies[0].patroni;
    expect(patroni.source).toBe(n1.restUrl);
    expect(patroni.members.map((m: {name: string; systemId: string}) => `${m.name}:${m.systemId}`)).toEqual([`n1:${systemId}`, `n2:${systemId}`]);
    expect(patroni.refused).toEqual([]);
    expect(patroni.backupSource, status.stdout).toMatchObject({member: 'n2', role: 'replica'});

    const check = await pgbk(['check', '--json', '--wait', '30']);
    const checks = JSON.parse(check.stdout).policies[0].checks as Array<{name: string; status: string; detail: string}>;
    expect(checks.find((c) => c.name === 'patroni system identifier'), check.stdout).toMatchObject({
      status: 'ok', detail: `2 members report database system ${systemId}, as pg_control_system() does`,
    });
    expect(check.exitCode, check.stdout).toBe(0);
  }, 200_000);

  it('a wrong password is a clear error naming the keys (exit non-zero, password not shown); no ca_file: the certificate is not trusted', async () => {
    const viaProxy = writePolicy(policyDir, 'proxy', {...policy, patroni: {...policy.patroni, rest_api: [`${proxyBase}/plain`]}});
    const good = await pgbk(['status', '--json', '--no-commit-times'], viaProxy);
    expect(good.exitCode, `${good.stdout}${good.stderr}`).toBe(0);
    expect(JSON.parse(good.stdout).policies[0].patroni.source).toBe(`${proxyBase}/plain`);

    const wrongPassword = 'not-the-rest-password';
    const status = await pgbk(['status', '--json', '--no-commit-times'], viaProxy, wrongPassword);
    expect(status.exitCode).toBe(1);
    expect(JSON.parse(status.stdout).policies[0].patroni.error).toMatch(
      new RegExp(`${proxyBase.replace(/[.]/g, '\\.')}/plain/cluster answered 401 Unauthorized: patroni\\.username/patroni\\.password were refused`));
    const backup = await pgbk(['backup'], viaProxy, wrongPassword);
    expect(backup.exitCode).not.toBe(0);
    expect(backup.stderr).toMatch(/answered 401 Unauthorized: patroni\.username\/patroni\.password were refused/);
    for (const result of [status, backup]) expect(`${result.stdout}${result.stderr}`).not.toContain(wrongPassword);

    const {ca_file: _caFile, ...withoutCa} = policy.patroni;
    const untrusted = await pgbk(['status', '--json', '--no-commit-times'], writePolicy(policyDir, 'noca', {...policy, patroni: withoutCa}));
    expect(untrusted.exitCode).toBe(1);
    expect(JSON.parse(untrusted.stdout).policies[0].patroni.error).toMatch(/TLS certificate is not trusted \(\w+\): set patroni\.ca_file/);
  }, 120_000);

  it('refuses a member of another database system as backup source, naming it and both identifiers, and backs up from the real replica', async () => {
    const foreign = writePolicy(policyDir, 'foreign', {...policy, patroni: {...policy.patroni, rest_api: [`${proxyBase}/foreign`]}});
    const refusal = new RegExp(`Patroni member n0 \\(${proxyBase.replace(/[.]/g, '\\.')}/n0/patroni\\) reports database system ${FOREIGN_SYSTEM}, ` +
      `but the repository is database system ${systemId}: refused as backup source\\. It is a server of another PostgreSQL cluster`);
    await replicaSettled();
    proxyHits.length = 0;
    const backup = await pgbk(['backup', '--json'], foreign);
    expect(backup.exitCode, `${backup.stderr}\n${cluster.logs()}`).toBe(0);
    expect(proxyHits).toContain('/n0/replica?lag=1048576'); // n0 was the best candidate...
    expect(backup.stderr).toMatch(refusal); // ...and was refused
    expect(JSON.parse(backup.stdout).backupFrom).toBe('standby'); // n2 served the backup

    // The backup's WAL switch can leave n2 briefly over the lag limit: status would then rightly name the leader.
    await replicaSettled();
    const status = await pgbk(['status', '--json', '--no-commit-times'], foreign);
    expect(status.exitCode).toBe(1);
    const report = JSON.parse(status.stdout).policies[0];
    expect(report.patroni.refused).toEqual([{member: 'n0', reason: expect.stringMatching(refusal)}]);
    expect(report.patroni.members.find((m: {name: string}) => m.name === 'n0').systemId).toBe(FOREIGN_SYSTEM);
    expect(report.patroni.backupSource).toMatchObject({member: 'n2', role: 'replica'});
    expect(report.problems).toEqual(expect.arrayContaining([expect.stringMatching(refusal)]));

    const check = await pgbk(['check', '--json', '--wait', '30'], foreign);
    expect(check.exitCode).toBe(1);
    const checks = JSON.parse(check.stdout).policies[0].checks as Array<{name: string; status: string; detail: string}>;
    expect(checks.find((c) => c.name === 'patroni system identifier'), check.stdout).toMatchObject({
      status: 'fail', detail: expect.stringMatching(new RegExp(`Patroni member n0 .* reports database system ${FOREIGN_SYSTEM}, but the server postgres\\.url reaches is database system ${systemId}`)),
    });
  }, 120_000);
});
