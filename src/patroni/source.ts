// Where a patroni-strategy backup reads from: a healthy replica within maximum_lag_on_failover, else the leader.
//
// chooseBackupMember() is pure (cluster + health in, choice and reason out); resolvePatroniSource() asks the REST
// API. The connection URL of the chosen member keeps the user, database, password and parameters of the policy's
// postgres.url and takes host and port from GET /cluster (the member's postgresql.connect_address).

import {PolicyError, RepositoryIdentityError} from '../errors.js';
import type {Policy} from '../policy/types.js';
import {PatroniError} from './errors.js';
import {
  fetchCluster, fetchNode, healthCheck, isLeader, isReplica, memberApiBase, restOptionsFor,
  type PatroniCluster, type PatroniMember, type RestOptions,
} from './rest.js';

export interface BackupMemberChoice {
  member: PatroniMember;
  role: 'replica' | 'leader';
  leader: PatroniMember;
  /** Why this member: printed with --verbose, kept for status. */
  reason: string;
}

/** Replica states in which PostgreSQL replays and can serve pg_basebackup (3.0: running; 3.0.4+: streaming). */
const SERVING_STATES = new Set(['running', 'streaming', 'in archive recovery']);

/** The replicas that may serve a backup, best (least lag) first. */
export function replicaCandidates(cluster: PatroniCluster, maxLagBytes: number): PatroniMember[] {
  return cluster.members
    .filter((member) => isReplica(member) && SERVING_STATES.has(member.state) && member.host && member.port
      && typeof member.lagBytes === 'number' && member.lagBytes <= maxLagBytes)
    .sort((a, b) => (a.lagBytes! - b.lagBytes!) || a.name.localeCompare(b.name));
}

export function findLeader(cluster: PatroniCluster): PatroniMember | undefined {
  return cluster.members.find((member) => isLeader(member) && member.role !== 'standby_leader');
}

/** Picks the backup source from /cluster and the replicas' GET /replica answers (`healthy`). */
export function chooseBackupMember(cluster: PatroniCluster, maxLagBytes: number, healthy: ReadonlySet<string>, refused: ReadonlyMap<string, string> = new Map()): BackupMemberChoice {
  const leader = findLeader(cluster);
  if (!leader) {
    throw new PatroniError(`the Patroni cluster has no leader (GET ${cluster.source}/cluster: ${describeMembers(cluster)})`,
      'wait for Patroni to elect a leader (patronictl list); a backup needs the leader to archive its last WAL segment');
  }
  if (!leader.host || !leader.port) throw new PatroniError(`GET ${cluster.source}/cluster gives no host and port for the leader ${leader.name}`);
  const replicas = cluster.members.filter(isReplica);
  const candidate = replicaCandidates(cluster, maxLagBytes).find((member) => healthy.has(member.name) && !refused.has(member.name));
  if (candidate) {
    return {member: candidate, role: 'replica', leader, reason: `replica ${candidate.name} is healthy and ${candidate.lagBytes} bytes behind (at most ${maxLagBytes})`};
  }
  const why = replicas.length === 0 ? 'the cluster has no replica'
    : `no healthy replica within ${maxLagBytes} bytes (${replicas.map((m) => `${m.name} ${m.state}, lag ${m.lagBytes ?? 'unknown'}${refused.has(m.name) ? ', refused: database system identifier' : healthy.has(m.name) ? '' : ', GET /replica not 200'}`).join('; ')})`;
  return {member: leader, role: 'leader', leader, reason: `${why}: backing up from the leader ${leader.name}`};
}

/**
 * A member is trusted as backup source only when GET /patroni reports the database system identifier expected
 * (the repository's, else the leader's). Returns why it is refused, naming the member and both identifiers.
 */
export function memberSystemRefusal(member: Pick<PatroniMember, 'name'>, apiBase: string, reported: string | undefined, expected: {systemId: string; of: string}): string | undefined {
  if (reported === expected.systemId) return undefined;
  if (reported === undefined) {
    return `Patroni member ${member.name} (${apiBase}/patroni) reports no database_system_identifier, so it cannot be checked against ${expected.of} (database system ${expected.systemId}): not used as backup source`;
  }
  return `Patroni member ${member.name} (${apiBase}/patroni) reports database system ${reported}, but ${expected.of} is database system ${expected.systemId}: refused as backup source. ` +
    `It is a server of another PostgreSQL cluster: check its Patroni configuration (scope, DCS namespace) and patroni.rest_api; rebuild it (patronictl reinit) if it belongs to this cluster`;
}

export function describeMembers(cluster: PatroniCluster): string {
  return cluster.members.map((m) => `${m.name} ${m.role} ${m.state}`).join(', ') || 'no members';
}

/** The policy's libpq URL pointed at another host and port (user, password, database and parameters kept). */
export function urlForMember(policyUrl: string, member: Pick<PatroniMember, 'host' | 'port' | 'name'>): string {
  if (!member.host || !member.port) throw new PatroniError(`Patroni gives no host and port for member ${member.name}`);
  const match = /^(postgres(?:ql)?:\/\/)([^@/?#]*@)?([^/?#]*)(.*)$/s.exec(policyUrl);
  if (!match) throw new PolicyError(`postgres.url is not a libpq URL: cannot point it at member ${member.name}`);
  const host = member.host.includes(':') && !member.host.startsWith('[') ? `[${member.host}]` : member.host;
  return `${match[1]}${match[2] ?? ''}${host}:${member.port}${match[4]}`;
}

export function requirePatroniConfig(policy: Policy): NonNullable<Policy['patroni']> {
  if (!policy.patroni) {
    throw new PolicyError(`${policy.file}: patroni.rest_api is not set: the patroni strategy finds leader and replicas through Patroni's REST API`,
      'add to the policy:\npatroni:\n  rest_api: [http://<member 1>:8008, http://<member 2>:8008]');
  }
  return policy.patroni;
}

export interface PatroniSource {
  /** Connection URL of the member the backup reads from. */
  url: string;
  role: 'replica' | 'leader';
  member: string;
  /** Connection URL of the leader: pg_switch_wal() there archives the backup's last segment. */
  leaderUrl: string;
  leader: string;
  reason: string;
  cluster: PatroniCluster;
  /** Replicas refused as source (another database system, or none reported): one line each, for stderr. */
  refused: string[];
}

/**
 * GET /cluster; GET /patroni of the leader (its database system identifier must be the repository's, when one is
 * known: else nothing here is that cluster); then GET /replica?lag=<max> (as HAProxy would) and GET /patroni on
 * each candidate replica in turn until one is healthy and of the same database system; then choose.
 * The backup then checks pg_control_system() on the connection it opens to the chosen member: the authoritative
 * check, at no extra cost; this one picks among members without opening a connection to each.
 */
export async function resolvePatroniSource(policy: Policy, options: RestOptions = {}, repositorySystemId?: string): Promise<PatroniSource> {
  const config = requirePatroniConfig(policy);
  const rest: RestOptions = {...restOptionsFor(config), ...options};
  const cluster = await fetchCluster(config.restApi, rest);
  const leader = findLeader(cluster);
  let expected = repositorySystemId ? {systemId: repositorySystemId, of: 'the repository'} : undefined;
  const leaderApi = leader ? memberApiBase(leader) : undefined;
  if (leader && leaderApi) {
    const node = await fetchNode(leaderApi, rest).catch(() => undefined);
    if (node?.systemId && expected && node.systemId !== expected.systemId) {
      throw new RepositoryIdentityError(
        `the Patroni leader ${leader.name} (${leaderApi}/patroni) reports database system ${node.systemId}, but the repository of policy ${policy.name} belongs to database system ${expected.systemId}`,
        'patroni.rest_api reaches another cluster than the one this repository backs up (or the cluster was re-initialized): each cluster needs its own repository.url — nothing was written');
    }
    if (node?.systemId && !expected) expected = {systemId: node.systemId, of: `the leader ${leader.name}`};
  }
  const healthy = new Set<string>();
  const refused = new Map<string, string>();
  for (const member of replicaCandidates(cluster, config.maximumLagOnFailover)) {
    const base = memberApiBase(member);
    if (!base || !await healthCheck(base, 'replica', {...rest, lagBytes: config.maximumLagOnFailover})) continue;
    healthy.add(member.name);
    const node = await fetchNode(base, rest).catch(() => undefined);
    const refusal = expected ? memberSystemRefusal(member, base, node?.systemId, expected)
      : `Patroni member ${member.name}: no database system identifier to check it against (the leader's GET /patroni did not report one): not used as backup source`;
    if (!refusal) break; // the best candidate answered and is of this cluster: that is the one
    refused.set(member.name, refusal);
  }
  const choice = chooseBackupMember(cluster, config.maximumLagOnFailover, healthy, refused);
  return {
    url: urlForMember(policy.postgres.url, choice.member),
    role: choice.role,
    member: choice.member.name,
    leaderUrl: urlForMember(policy.postgres.url, choice.leader),
    leader: choice.leader.name,
    reason: choice.reason,
    cluster,
    refused: [...refused.values()],
  };
}
