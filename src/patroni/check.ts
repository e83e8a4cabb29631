// `pgbk check` for the patroni strategy: the REST API answers, and the policy's connection reaches the role it
// expects — the leader — whether it names a member or goes through HAProxy's primary port.

import type {Client} from 'pg';
import type {Policy} from '../policy/types.js';
import type {CheckResult} from '../status/check.js';
import {fetchCluster, fetchNode, isLeader, memberApiBase, restOptionsFor, type PatroniCluster, type PatroniMember, type RestOptions} from './rest.js';
import {describeMembers, findLeader, memberSystemRefusal} from './source.js';

export interface ServerIdentity {
  inRecovery: boolean;
  /** inet_server_addr()/inet_server_port(): where the server took the connection (null over a Unix socket). */
  address: string | null;
  port: number | null;
}

const ROUTING_FIX = 'point postgres.url at the leader: HAProxy\'s read-write port (a backend checked with "option httpchk GET /primary"), ' +
  'or the leader\'s host and port; replicas are reached through the port checked with GET /replica';

/** Pure: the verdict on where the connection landed, given the cluster. */
export function connectionRoleCheck(policyUrl: string, server: ServerIdentity, cluster: PatroniCluster): CheckResult {
  const name = 'connection role';
  const urlHost = hostPort(policyUrl);
  const member = cluster.members.find((m) => m.host && m.port && server.address && sameHost(m.host, server.address) && m.port === server.port)
    ?? cluster.members.find((m) => m.host && m.port && urlHost && sameHost(m.host, urlHost.host) && m.port === urlHost.port);
  const leader = findLeader(cluster);
  const via = member && urlHost && !(sameHost(member.host!, urlHost.host) && member.port === urlHost.port) ? ` through ${urlHost.host}:${urlHost.port}` : '';
  if (server.inRecovery) {
    return {name, status: 'fail', detail: `postgres.url reaches ${member ? `replica ${member.name}` : 'a server in recovery'}${via}; the patroni strategy expects the leader${leader ? ` (${leader.name})` : ''}`, fix: ROUTING_FIX};
  }
  if (member && isLeader(member)) return {name, status: 'ok', detail: `postgres.url reaches the leader ${member.name}${via} (Patroni REST API and pg_is_in_recovery() agree)`};
  if (member) {
    return {name, status: 'fail', detail: `postgres.url reaches ${member.name}, which is not in recovery but Patroni lists as ${member.role} ${member.state}`,
      fix: `${ROUTING_FIX}; check patronictl list: a primary Patroni does not lead is not part of the cluster's history`};
  }
  if (!leader) return {name, status: 'fail', detail: `the Patroni cluster has no leader (${describeMembers(cluster)})`, fix: 'wait for Patroni to elect a leader (patronictl list)'};
  return {name, status: 'ok', detail: `postgres.url reaches a primary at ${server.address ?? 'a Unix socket'}${server.port ? `:${server.port}` : ''}, not an address GET /cluster lists; the leader is ${leader.name} (${leader.host}:${leader.port})`};
}

export async function patroniChecks(policy: Policy, client: Client, options: RestOptions = {}): Promise<CheckResult[]> {
  if (!policy.patroni) {
    return [{name: 'patroni', status: 'fail', detail: 'patroni.rest_api is not set: pgbk cannot find leader and replicas',
      fix: 'add to the policy: patroni: {rest_api: [http://<member>:8008, ...]} (restapi.connect_address of each member)'}];
  }
  let cluster: PatroniCluster;
  let rest: RestOptions;
  try {
    rest = {...restOptionsFor(policy.patroni), ...options};
    cluster = await fetchCluster(policy.patroni.restApi, rest);
  } catch (error) {
    return [{name: 'patroni', status: 'fail', detail: (error as Error).message,
      fix: 'check patroni.rest_api in the policy and that Patroni runs; the REST API must be reachable from this host'}];
  }
  const {rows} = await client.query(`select pg_is_in_recovery() as in_recovery, host(inet_server_addr()) as address, inet_server_port() as port,
    (select system_identifier::text from pg_control_system()) as system_id`);
  const server: ServerIdentity = {inRecovery: rows[0].in_recovery, address: rows[0].address ?? null, port: rows[0].port ?? null};
  const replicas = cluster.members.filter((m: PatroniMember) => !isLeader(m));
  return [
    {name: 'patroni', status: 'ok', detail: `${cluster.source}/cluster: ${describeMembers(cluster)}${replicas.length === 0 ? ' (no replica: backups read from the leader)' : ''}`},
    connectionRoleCheck(policy.postgres.url, server, cluster),
    await systemIdentifierCheck(cluster, String(rows[0].system_id), rest),
  ];
}

/** Every member's GET /patroni database_system_identifier against the server postgres.url reaches. */
async function systemIdentifierCheck(cluster: PatroniCluster, serverSystemId: string, rest: RestOptions): Promise<CheckResult> {
  const reports = await Promise.all(cluster.members.map(async (member) => {
    const base = memberApiBase(member);
    const node = base ? await fetchNode(base, rest).catch(() => undefined) : undefined;
    return {member, base: base ?? member.name, systemId: node?.systemId};
  }));
  return systemIdentifierVerdict(reports, serverSystemId);
}

/** Pure: the verdict on the members' system identifiers (undefined: the member did not report one). */
export function systemIdentifierVerdict(reports: Array<{member: Pick<PatroniMember, 'name'>; base: string; systemId: string | undefined}>, serverSystemId: string): CheckResult {
  const name = 'patroni system identifier';
  const expected = {systemId: serverSystemId, of: 'the server postgres.url reaches'};
  const refusals = reports.map((r) => (r.systemId === undefined ? undefined : memberSystemRefusal(r.member, r.base, r.systemId, expected))).filter((r): r is string => r !== undefined);
  const silent = reports.filter((r) => r.systemId === undefined).map((r) => r.member.name);
  if (refusals.length > 0) {
    return {name, status: 'fail', detail: refusals.join('; '),
      fix: 'patroni.rest_api must list the members of the cluster postgres.url reaches; a member of another system is never used as backup source'};
  }
  const agreeing = reports.length - silent.length;
  return {name, status: 'ok', detail: `${agreeing} member${agreeing === 1 ? '' : 's'} report database system ${serverSystemId}, as pg_control_system() does${silent.length ? `; not reported by ${silent.join(', ')} (not running?)` : ''}`};
}

function hostPort(url: string): {host: string; port: number} | undefined {
  const match = /^postgres(?:ql)?:\/\/(?:[^@/?#]*@)?(\[[^\]]+\]|[^:/?#,]+)(?::(\d+))?/.exec(url);
  if (!match) return undefined;
  return {host: match[1]!.replace(/^\[|\]$/g, ''), port: match[2] ? Number(match[2]) : 5432};
}

function sameHost(a: string, b: string): boolean {
  const norm = (host: string) => (host === 'localhost' ? '127.0.0.1' : host.replace(/^::ffff:/, '').toLowerCase());
  return norm(a) === norm(b);
}
