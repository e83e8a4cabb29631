// The Patroni cluster as `pgbk status` shows it: members, roles, states, timelines and lag from GET /cluster, the
// backup source pgbk would choose, and what is wrong with it. evaluatePatroni() is pure.

import type {Policy} from '../policy/types.js';
import {fetchCluster, fetchNode, healthCheck, isLeader, memberApiBase, restOptionsFor, type PatroniCluster, type RestOptions} from './rest.js';
import {chooseBackupMember, findLeader, memberSystemRefusal, replicaCandidates} from './source.js';

export interface PatroniMemberStatus {
  name: string;
  role: string;
  state: string;
  host: string | null;
  port: number | null;
  timeline: number | null;
  lagBytes: number | null;
  /** database_system_identifier from the member's GET /patroni; null when it did not report one. */
  systemId: string | null;
}

export type PatroniStatus =
  | {
    reachable: true;
    /** The REST API that answered. */
    source: string;
    paused: boolean;
    leader: string | null;
    members: PatroniMemberStatus[];
    maximumLagOnFailover: number;
    /** Where `pgbk backup` would read from now. */
    backupSource: {member: string; role: 'replica' | 'leader'; reason: string} | null;
    /** The repository's database system, when it has an identity. */
    repositorySystemId: string | null;
    /** Members refused as backup source: another database system than the repository's (else the leader's). */
    refused: Array<{member: string; reason: string}>;
  }
  | {reachable: false; error: string};

export async function gatherPatroniStatus(policy: Policy, options: RestOptions = {}, repositorySystemId?: string): Promise<PatroniStatus> {
  if (!policy.patroni) return {reachable: false, error: 'patroni.rest_api is not set in the policy'};
  const maxLag = policy.patroni.maximumLagOnFailover;
  let cluster: PatroniCluster;
  let rest: RestOptions;
  try {
    rest = {...restOptionsFor(policy.patroni), ...options};
    cluster = await fetchCluster(policy.patroni.restApi, rest);
  } catch (error) {
    return {reachable: false, error: (error as Error).message};
  }
  // Every member's GET /patroni at once (a handful of members; each request bounded by the REST timeout).
  const systemIds = new Map<string, string | undefined>(await Promise.all(cluster.members.map(async (member) => {
    const base = memberApiBase(member);
    const node = base ? await fetchNode(base, rest).catch(() => undefined) : undefined;
    return [member.name, node?.systemId] as [string, string | undefined];
  })));
  const leader = findLeader(cluster);
  const leaderSystemId = leader ? systemIds.get(leader.name) : undefined;
  const expected = repositorySystemId ? {systemId: repositorySystemId, of: 'the repository'}
    : leader && leaderSystemId ? {systemId: leaderSystemId, of: `the leader ${leader.name}`} : undefined;
  const refused = new Map<string, string>();
  if (expected) {
    for (const member of cluster.members) {
      const reported = systemIds.get(member.name);
      if (reported === undefined) continue; // not running or unreachable: the state column says so
      const refusal = memberSystemRefusal(member, memberApiBase(member) ?? member.name, reported, expected);
      if (refusal) refused.set(member.name, refusal);
    }
  }
  const healthy = new Set<string>();
  for (const member of replicaCandidates(cluster, maxLag)) {
    const base = memberApiBase(member);
    if (refused.has(member.name) || systemIds.get(member.name) === undefined) continue;
    if (base && await healthCheck(base, 'replica', {...rest, lagBytes: maxLag})) {
      healthy.add(member.name);
      break;
    }
  }
  let backupSource: {member: string; role: 'replica' | 'leader'; reason: string} | null = null;
  try {
    const choice = leader && refused.has(leader.name) ? undefined : chooseBackupMember(cluster, maxLag, healthy, refused);
    if (choice) backupSource = {member: choice.member.name, role: choice.role, reason: choice.reason};
  } catch {
    // no leader: reported by evaluatePatroni
  }
  return {
    reachable: true,
    source: cluster.source,
    paused: cluster.paused,
    leader: leader?.name ?? null,
    maximumLagOnFailover: maxLag,
    backupSource,
    repositorySystemId: repositorySystemId ?? null,
    refused: [...refused].map(([member, reason]) => ({member, reason})),
    members: cluster.members.map((member) => ({
      name: member.name, role: member.role, state: member.state, host: member.host ?? null, port: member.port ?? null,
      timeline: member.timeline ?? null, lagBytes: isLeader(member) ? 0 : member.lagBytes ?? null,
      systemId: systemIds.get(member.name) ?? null,
    })),
  };
}

/** Problems (exit 1) and warnings of a Patroni cluster. */
export function evaluatePatroni(status: PatroniStatus): {problems: string[]; warnings: string[]} {
  const problems: string[] = [];
  const warnings: string[] = [];
  if (!status.reachable) {
    problems.push(`Patroni REST API unreachable: ${status.error}`);
    return {problems, warnings};
  }
  if (!status.leader) problems.push(`the Patroni cluster has no leader (${status.members.map((m) => `${m.name} ${m.role} ${m.state}`).join(', ') || 'no members'})`);
  const leader = status.members.find((member) => member.name === status.leader);
  const replicas = status.members.filter((member) => member.name !== status.leader);
  if (status.leader && replicas.length === 0) warnings.push('the Patroni cluster has no replica: a failover has nowhere to go, backups read from the leader');
  for (const member of replicas) {
    if (!['running', 'streaming'].includes(member.state)) warnings.push(`Patroni member ${member.name} is ${member.state}`);
    else if (member.lagBytes === null) warnings.push(`Patroni member ${member.name}: lag unknown`);
    else if (member.lagBytes > status.maximumLagOnFailover) {
      warnings.push(`Patroni member ${member.name} is ${member.lagBytes} bytes behind the leader (maximum_lag_on_failover ${status.maximumLagOnFailover}): it would not be promoted, nor backed up from`);
    }
    if (leader?.timeline && member.timeline && member.timeline !== leader.timeline) {
      warnings.push(`Patroni member ${member.name} is on timeline ${member.timeline}, the leader on ${leader.timeline}`);
    }
  }
  for (const {reason} of status.refused) problems.push(reason);
  if (status.paused) warnings.push('the Patroni cluster is paused (maintenance mode): no automatic failover');
  return {problems, warnings};
}

/** Human lines for `pgbk status`. */
export function renderPatroni(status: PatroniStatus): string[] {
  if (!status.reachable) return [`UNREACHABLE: ${status.error}`];
  const rows = [['MEMBER', 'ROLE', 'STATE', 'HOST', 'TL', 'LAG', 'SYSTEM']];
  for (const member of status.members) {
    rows.push([
      member.name, member.role, member.state, member.host ? `${member.host}:${member.port ?? ''}` : '-',
      member.timeline === null ? '-' : String(member.timeline),
      member.name === status.leader ? '' : member.lagBytes === null ? 'unknown' : `${member.lagBytes} B`,
      `${member.systemId ?? '-'}${status.refused.some((r) => r.member === member.name) ? ' (other system)' : ''}`,
    ]);
  }
  const widths = rows[0]!.map((_, col) => Math.max(...rows.map((row) => row[col]!.length)));
  const lines = [`cluster from ${status.source}/cluster${status.paused ? ' (paused)' : ''}`];
  lines.push(...rows.map((row) => row.map((cell, col) => cell.padEnd(widths[col]!)).join('  ').trimEnd()));
  if (status.backupSource) lines.push(`backups read from ${status.backupSource.role} ${status.backupSource.member}: ${status.backupSource.reason}`);
  return lines;
}
