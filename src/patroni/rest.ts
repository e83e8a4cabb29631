// Patroni's REST API, read-only: GET /cluster (members, roles, lag), GET /patroni (this node, system id) and the
// health endpoints HAProxy checks (GET /primary, GET /replica: 200 or 503). Every request has a timeout.
// http:// or https:// (the server's certificate verified against patroni.ca_file, else the system CAs; not at all
// only with patroni.insecure: true), with HTTP basic auth when patroni.username/password are set. The password
// goes into the Authorization header only: never into a URL, a message or --json.

import {readFileSync} from 'node:fs';
import {request as httpRequest} from 'node:http';
import {Agent as HttpsAgent, request as httpsRequest} from 'node:https';
import {PolicyError} from '../errors.js';
import type {PatroniConfig} from '../policy/types.js';
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
  /** Test seam: requests go through this instead of node:http(s) (TLS and auth options are then not used). */
  fetch?: typeof fetch;
  /** For https:// URLs: the CA to verify against (patroni.ca_file), or no verification (patroni.insecure). */
  agent?: HttpsAgent;
  /** `Basic <base64>`: sent with every request. */
  authorization?: string;
}

/** The REST options a policy's patroni section asks for; an unreadable ca_file is bad input (exit 2). */
export function restOptionsFor(config: Pick<PatroniConfig, 'caFile' | 'insecure' | 'username' | 'password'>): RestOptions {
  let ca: Buffer | undefined;
  if (config.caFile) {
    try {
      ca = readFileSync(config.caFile);
    } catch (error) {
      throw new PolicyError(`patroni.ca_file ${config.caFile}: cannot read it (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`,
        'give the PEM file of the CA that signed the Patroni REST API certificates (restapi.certfile), readable by the user pgbk runs as');
    }
  }
  return {
    ...(ca || config.insecure ? {agent: new HttpsAgent({...(ca ? {ca} : {}), rejectUnauthorized: !config.insecure})} : {}),
    ...(config.username !== undefined ? {authorization: basicAuthorization(config.username, config.password ?? '')} : {}),
  };
}

export function basicAuthorization(username: string, password: string): string {
  return `Basic ${Buffer.from(`${username}:${password}`, 'utf8').toString('base64')}`;
}

const TLS_TRUST_CODES = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT', 'SELF_SIGNED_CERT_IN_CHAIN', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'UNABLE_TO_GET_ISSUER_CERT', 'CERT_UNTRUSTED', 'CERT_SIGNATURE_FAILURE', 'CERT_HAS_EXPIRED', 'CERT_NOT_YET_VALID', 'ERR_TLS_CERT_ALTNAME_INVALID',
]);

/** Why a request failed, in words; a certificate problem names the key that fixes it. */
export function describeRequestError(error: unknown): string {
  const err = error as NodeJS.ErrnoException & {cause?: {code?: string; message?: string}};
  const code = err.code ?? err.cause?.code;
  if (code && TLS_TRUST_CODES.has(code)) {
    return `the server's TLS certificate is not trusted (${code}): set patroni.ca_file to the CA that signed it (patroni.insecure: true skips the check)`;
  }
  if (code === 'EPROTO' || /wrong version number|packet length too long/i.test(err.message ?? '')) return `TLS handshake failed (${code ?? err.message}): does the URL's scheme (http/https) match restapi.certfile?`;
  return code ?? err.cause?.message ?? err.message;
}

/** What a 401/403 means for the policy. */
export function describeStatus(url: string, status: number, authorization: boolean): string {
  if (status === 401) {
    return `${url} answered 401 Unauthorized: ${authorization ? 'patroni.username/patroni.password were refused' : 'it asks for credentials: set patroni.username and patroni.password'}`;
  }
  if (status === 403) return `${url} answered 403 Forbidden (restapi.allowlist, or a client certificate required)`;
  return `${url} answered ${status}`;
}

/** One GET with node:http(s): status and body text; rejects on a network/TLS error or after timeoutMs. */
function nodeGet(url: string, options: RestOptions, timeoutMs: number): Promise<{status: number; text: string}> {
  return new Promise((resolve, reject) => {
    const https = url.startsWith('https:');
    const headers: Record<string, string> = {accept: 'application/json', ...(options.authorization ? {authorization: options.authorization} : {})};
    const req = (https ? httpsRequest : httpRequest)(url, {method: 'GET', headers, ...(https && options.agent ? {agent: options.agent} : {})}, (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > 4 * 1024 * 1024) req.destroy(new Error('answer larger than 4 MiB'));
        else chunks.push(chunk);
      });
      res.on('end', () => {
        clearTimeout(timer);
        resolve({status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8')});
      });
      res.on('error', reject);
    });
    const timer = setTimeout(() => req.destroy(Object.assign(new Error('timeout'), {name: 'TimeoutError'})), timeoutMs);
    req.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    req.end();
  });
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
  const timeoutMs = options.timeoutMs ?? DEFAULT_REST_TIMEOUT_MS;
  let status: number;
  let text: string;
  try {
    if (options.fetch) {
      const headers: Record<string, string> = {accept: 'application/json', ...(options.authorization ? {authorization: options.authorization} : {})};
      const response = await options.fetch(url, {signal: AbortSignal.timeout(timeoutMs), headers});
      status = response.status;
      text = await response.text();
    } else {
      ({status, text} = await nodeGet(url, options, timeoutMs));
    }
  } catch (error) {
    const reason = (error as Error).name === 'TimeoutError' ? `no answer within ${timeoutMs / 1000}s` : describeRequestError(error);
    throw new PatroniError(`GET ${url}: ${reason}`, undefined, {cause: error});
  }
  let body: unknown;
  try {
    body = text ? JSON.parse(text) : undefined;
  } catch {
    body = undefined;
  }
  return {status, body};
}

/** GET /cluster from the first REST API that answers; throws naming each one that did not. */
export async function fetchCluster(restApi: readonly string[], options: RestOptions = {}): Promise<PatroniCluster> {
  const failures: string[] = [];
  for (const base of restApi) {
    try {
      const {status, body} = await getJson(`${base}/cluster`, options);
      if (status !== 200) {
        failures.push(describeStatus(`${base}/cluster`, status, options.authorization !== undefined));
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
  if (status === 401 || status === 403) throw new PatroniError(describeStatus(`${apiBase}/patroni`, status, options.authorization !== undefined));
  if (!body || typeof body !== 'object') throw new PatroniError(`${apiBase}/patroni answered ${status} without JSON`);
  const node = body as {patroni?: {scope?: unknown}; database_system_identifier?: unknown; role?: unknown; timeline?: unknown};
  return {
    ...(typeof node.patroni?.scope === 'string' ? {scope: node.patroni.scope} : {}),
    ...(node.database_system_identifier !== undefined ? {systemId: String(node.database_system_identifier)} : {}),
    ...(typeof node.role === 'string' ? {role: node.role} : {}),
    ...(typeof node.timeline === 'number' ? {timeline: node.timeline} : {}),
  };
}
