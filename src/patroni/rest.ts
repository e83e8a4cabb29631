// Patroni's REST API, read-only: GET /cluster (members, roles, lag), GET /patroni (this node, system id) and the
// health endpoints HAProxy checks (GET /primary, GET /replica: 200 or 503). Every request has a timeout.

import {PatroniError} from './errors.js';

export const DEFAULT_REST_TIMEOUT_MS = 5_000;

/** One member as GET /cluster lists it. */
export interface PatroniMember {
  name: string;
  /** leader, standby_leader, sync_standby or replica. */
  role: string;
  /** running, streaming, starting, stopped, creating replica, ... */
  state: string;
  /** http://host:8008/patroni */
  apiUrl?: string;
  /** Where PostgreSQL listens (postgresql.connect_address); absent while Patroni cannot tell. */
  host?: string;
  port?: number;
  timeline?: number;
  /** Bytes behind the leader (replicas); null when Patroni reports 'unknown'. Absent for the leader. */
  lagBytes?: number | null;
  tags?: Record<string, unknown>;
  pendingRestart?: boolean;
}

export interface PatroniCluster {
  /** The REST API that answered. */
  source: string;
  members: PatroniMember[];
  paused: boolean;
}

export interface RestOptions {
  timeoutMs?: number;
  fetch?: typeof fetch;
}

const isLeaderRole = (role: string) => role === 'leader' || role === 'master' || role === 'primary' || role === 'standby_leader';
export const isLeader = (member: PatroniMember): boolean => isLeaderRole(member.role);
export const isReplica = (member: PatroniMember): boolean => !isLeaderRole(member.role);

/** Parses GET /cluster (Patroni 2.x and 3.x shapes); throws on anything that is not a member list. */
export function parseCluster(body: unknown, source: string): PatroniCluster {
  const members = (body as {members?: unknown})?.members;
  if (!Array.isArray(members)) throw new PatroniError(`${source}/cluster answered without a member list`);
  return {
    source,
    paused: (body as {pause?: unknown}).pause === true,
    members: members.map((raw) => {
      const m = raw as Record<string, unknown>;
      const lag = m.lag;
      return {
        name: String(m.name ?? ''),
        role: String(m.role ?? ''),
        state: String(m.state ?? ''),
        ...(typeof m.api_url === 'string' ? {apiUrl: m.api_url} : {}),
        ...(typeof m.host === 'string' ? {host: m.host} : {}),
        ...(m.port !== undefined && Number.isInteger(Number(m.port)) ? {port: Number(m.port)} : {}),
        ...(m.timeline !== undefined && Number.isInteger(Number(m.timeline)) ? {timeline: Number(m.timeline)} : {}),
        ...(lag === undefined ? {} : {lagBytes: typeof lag === 'number' ? lag : Number.isFinite(Number(lag)) && lag !== '' ? Number(lag) : null}),
        ...(m.tags && typeof m.tags === 'object' ? {tags: m.tags as Record<string, unknown>} : {}),
        ...(m.pending_restart === true ? {pendingRestart: true} : {}),
      };
    }),
  };
}

async function getJson(url: string, options: RestOptions): Promise<{status: number; body: unknown}> {
  const doFetch = options.fetch ?? fetch;
  const timeoutMs = options.timeoutMs ?? DEFAULT_REST_TIMEOUT_MS;
  let response: Response;
  try {
    response = await doFetch(url, {signal: AbortSignal.timeout(timeoutMs), headers: {accept: 'application/json'}});
  } catch (error) {
    const reason = (error as Error).name === 'TimeoutError' ? `no answer within ${timeoutMs / 1000}s` : describeFetchError(error);
    throw new PatroniError(`GET ${url}: ${reason}`, undefined, {cause: error});
  }
  const text = await response.text();
  let body: unknown;
  try {
    body = text ? JSON.parse(text) : undefined;
  } catch {
    body = undefined;
  }
  return {status: response.status, body};
}

function describeFetchError(error: unknown): string {
  const cause = (error as {cause?: {code?: string; message?: string}}).cause;
  return cause?.code ?? cause?.message ?? (error as Error).message;
}

/** GET /cluster from the first REST API that answers; throws naming each one that did not. */
export async function fetchCluster(restApi: readonly string[], options: RestOptions = {}): Promise<PatroniCluster> {
  const failures: string[] = [];
  for (const base of restApi) {
    try {
      const {status, body} = await getJson(`${base}/cluster`, options);
      if (status !== 200) {
        failures.push(`${base}/cluster answered ${status}`);
        continue;
      }
      return parseCluster(body, base);
    } catch (error) {
      failures.push((error as Error).message);
    }
  }
  throw new PatroniError(`no Patroni REST API answered GET /cluster: ${failures.join('; ')}`,
    'check patroni.rest_api in the policy (the members\' restapi.connect_address, e.g. http://10.0.0.11:8008) and that Patroni runs');
}

/** The REST API base of a member: its api_url without /patroni. */
export function memberApiBase(member: PatroniMember): string | undefined {
  return member.apiUrl?.replace(/\/patroni\/?$/, '').replace(/\/+$/, '');
}

/**
 * HAProxy's check: GET /primary or /replica (with ?lag=<bytes>) answers 200 when the member can serve that role.
 * An unreachable member is not healthy.
 */
export async function healthCheck(apiBase: string, role: 'primary' | 'replica', options: RestOptions & {lagBytes?: number} = {}): Promise<boolean> {
  const query = role === 'replica' && options.lagBytes !== undefined ? `?lag=${options.lagBytes}` : '';
  try {
    return (await getJson(`${apiBase}/${role}${query}`, options)).status === 200;
  } catch {
    return false;
  }
}

/** GET /patroni of a node: its scope and the cluster's system identifier. */
export async function fetchNode(apiBase: string, options: RestOptions = {}): Promise<{scope?: string; systemId?: string; role?: string; timeline?: number}> {
  const {status, body} = await getJson(`${apiBase}/patroni`, options);
  if (!body || typeof body !== 'object') throw new PatroniError(`${apiBase}/patroni answered ${status} without JSON`);
  const node = body as {patroni?: {scope?: unknown}; database_system_identifier?: unknown; role?: unknown; timeline?: unknown};
  return {
    ...(typeof node.patroni?.scope === 'string' ? {scope: node.patroni.scope} : {}),
    ...(node.database_system_identifier !== undefined ? {systemId: String(node.database_system_identifier)} : {}),
    ...(typeof node.role === 'string' ? {role: node.role} : {}),
    ...(typeof node.timeline === 'number' ? {timeline: node.timeline} : {}),
  };
}
