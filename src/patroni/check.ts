// `pgbk check` for the patroni strategy: the REST API answers, and the policy's connection reaches the role it
// expects — the leader — whether it names a member or goes through HAProxy's primary port.

import type {Client} from 'pg';
import type {Policy} from '../policy/types.js';
import type {CheckResult} from '../status/check.js';
import {fetchCluster, isLeader, type PatroniCluster, type PatroniMember, type RestOptions} from './rest.js';
import {describeMembers, findLeader} from './source.js';

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
  try {
    cluster = await fetchCluster(policy.patroni.restApi, options);
  } catch (error) {
    return [{name: 'patroni', status: 'fail', detail: (error as Error).message,
      fix: 'check patroni.rest_api in the policy and that Patroni runs; the REST API must be reachable from this host'}];
  }
  const {rows} = await client.query(`select pg_is_in_recovery() as in_recovery, host(inet_server_addr()) as address, inet_server_port() as port`);
  const server: ServerIdentity = {inRecovery: rows[0].in_recovery, address: rows[0].address ?? null, port: rows[0].port ?? null};
  const replicas = cluster.members.filter((m: PatroniMember) => !isLeader(m));
  return [
    {name: 'patroni', status: 'ok', detail: `${cluster.source}/cluster: ${describeMembers(cluster)}${replicas.length === 0 ? ' (no replica: backups read from the leader)' : ''}`},
    connectionRoleCheck(policy.postgres.url, server, cluster),
  ];
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
