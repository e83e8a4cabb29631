// Where a patroni-strategy backup reads from: a healthy replica within maximum_lag_on_failover, else the leader.
//
// chooseBackupMember() is pure (cluster + health in, choice and reason out); resolvePatroniSource() asks the REST
// API. The connection URL of the chosen member keeps the user, database, password and parameters of the policy's
// postgres.url and takes host and port from GET /cluster (the member's postgresql.connect_address).

import {PolicyError} from '../errors.js';
import type {Policy} from '../policy/types.js';
import {PatroniError} from './errors.js';
import {
  fetchCluster, healthCheck, isLeader, isReplica, memberApiBase,
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
export function chooseBackupMember(cluster: PatroniCluster, maxLagBytes: number, healthy: ReadonlySet<string>): BackupMemberChoice {
  const leader = findLeader(cluster);
  if (!leader) {
    throw new PatroniError(`the Patroni cluster has no leader (GET ${cluster.source}/cluster: ${describeMembers(cluster)})`,
      'wait for Patroni to elect a leader (patronictl list); a backup needs the leader to archive its last WAL segment');
  }
  if (!leader.host || !leader.port) throw new PatroniError(`GET ${cluster.source}/cluster gives no host and port for the leader ${leader.name}`);
  const replicas = cluster.members.filter(isReplica);
  const candidate = replicaCandidates(cluster, maxLagBytes).find((member) => healthy.has(member.name));
  if (candidate) {
    return {member: candidate, role: 'replica', leader, reason: `replica ${candidate.name} is healthy and ${candidate.lagBytes} bytes behind (at most ${maxLagBytes})`};
  }
  const why = replicas.length === 0 ? 'the cluster has no replica'
    : `no healthy replica within ${maxLagBytes} bytes (${replicas.map((m) => `${m.name} ${m.state}, lag ${m.lagBytes ?? 'unknown'}${healthy.has(m.name) ? '' : ', GET /replica not 200'}`).join('; ')})`;
  return {member: leader, role: 'leader', leader, reason: `${why}: backing up from the leader ${leader.name}`};
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
}

/** GET /cluster, then GET /replica?lag=<max> on each candidate replica (as HAProxy would), then choose. */
export async function resolvePatroniSource(policy: Policy, options: RestOptions = {}): Promise<PatroniSource> {
  const config = requirePatroniConfig(policy);
  const cluster = await fetchCluster(config.restApi, options);
  const healthy = new Set<string>();
  for (const member of replicaCandidates(cluster, config.maximumLagOnFailover)) {
    const base = memberApiBase(member);
    if (base && await healthCheck(base, 'replica', {...options, lagBytes: config.maximumLagOnFailover})) {
      healthy.add(member.name);
      break; // the best candidate answered: that is the one
    }
  }
  const choice = chooseBackupMember(cluster, config.maximumLagOnFailover, healthy);
  return {
    url: urlForMember(policy.postgres.url, choice.member),
    role: choice.role,
    member: choice.member.name,
    leaderUrl: urlForMember(policy.postgres.url, choice.leader),
    leader: choice.leader.name,
    reason: choice.reason,
    cluster,
  };
}
