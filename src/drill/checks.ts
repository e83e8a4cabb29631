// The user's drill checks (policy drill.checks) and pg_amcheck, run against the restored cluster.

import type {Client} from 'pg';
import {execa} from 'execa';
import type {DrillCheckConfig} from '../policy/types.js';
import {pgBinary} from '../pg/bin.js';
import type {DrillCheckResult} from './report.js';

/** Compares what a check query returned (first column of the first row) with its expectation (pure). */
export function judgeCheck(check: DrillCheckConfig, value: unknown): DrillCheckResult {
  const text = value === null || value === undefined ? null : value instanceof Date ? value.toISOString() : String(value);
  if (check.expect !== undefined) {
    return {name: check.name, ok: text === check.expect, detail: `expected ${JSON.stringify(check.expect)}, got ${text === null ? 'NULL' : JSON.stringify(text)}`};
  }
  if (check.min !== undefined || check.max !== undefined) {
    const bounds = [check.min !== undefined ? `>= ${check.min}` : '', check.max !== undefined ? `<= ${check.max}` : ''].filter(Boolean).join(' and ');
    const number = text === null ? Number.NaN : Number(text);
    if (Number.isNaN(number)) return {name: check.name, ok: false, detail: `expected a number ${bounds}, got ${text === null ? 'NULL' : JSON.stringify(text)}`};
    const ok = (check.min === undefined || number >= check.min) && (check.max === undefined || number <= check.max);
    return {name: check.name, ok, detail: `${text} (expected ${bounds})`};
  }
  // No expectation: the query must run and return a row.
  return {name: check.name, ok: text !== null || value === null, detail: `returned ${text === null ? 'NULL' : JSON.stringify(text)}`};
}

export async function runUserChecks(client: Client, checks: readonly DrillCheckConfig[]): Promise<DrillCheckResult[]> {
  const results: DrillCheckResult[] = [];
  for (const check of checks) {
    try {
      const result = await client.query({text: check.sql, rowMode: 'array'});
      const rows = result.rows as unknown[][];
      if (rows.length === 0 && check.expect === undefined && check.min === undefined && check.max === undefined) {
        results.push({name: check.name, ok: false, detail: 'the query returned no row'});
        continue;
      }
      results.push(rows.length === 0 ? {name: check.name, ok: false, detail: 'the query returned no row'} : judgeCheck(check, rows[0]![0]));
    } catch (error) {
      results.push({name: check.name, ok: false, detail: `query failed: ${(error as Error).message}`});
    }
  }
  return results;
}

export interface AmcheckTarget {
  /** Connection through the scratch server's socket directory (host) and port, or a URL for dumps. */
  host?: string;
  port?: number;
  user?: string;
  url?: string;
  /** Check only this database (dumps); else --all. */
  database?: string;
  env?: Record<string, string>;
  binDir?: string;
  timeoutMs: number;
}

/**
 * pg_amcheck on the restored databases: heap and btree index checks. A nonzero exit is a failed check that quotes
 * what pg_amcheck reported. PostgreSQL before 14 has no pg_amcheck: the check is then reported as skipped (ok).
 */
export async function runAmcheck(target: AmcheckTarget): Promise<DrillCheckResult> {
  let file: string;
  try {
    file = pgBinary(target.binDir, 'pg_amcheck');
  } catch {
    return {name: 'pg_amcheck', ok: true, detail: 'skipped: pg_amcheck is not installed (PostgreSQL 14 or later has it)'};
  }
  const args = ['--no-password', '--install-missing', '--heapallindexed'];
  if (target.url) {
    // pg_amcheck takes a connection string only as --maintenance-db (used with --all): pass the parts.
    const url = new URL(target.url);
    if (url.hostname) args.push('--host', decodeURIComponent(url.hostname).replace(/^\[(.*)\]$/, '$1'));
    if (url.port) args.push('--port', url.port);
    if (url.username) args.push('--username', decodeURIComponent(url.username));
    if (target.database) args.push('--database', target.database);
    else args.push('--all', '--maintenance-db', target.url);
  } else {
    args.push('--all', '--host', target.host!, '--port', String(target.port), '--username', target.user ?? 'postgres');
  }
  const result = await execa(file, args, {
    reject: false, stdin: 'ignore', timeout: target.timeoutMs, env: {LC_ALL: 'C', PGAPPNAME: 'pgbk-drill', ...target.env}, extendEnv: true,
  });
  if (result.exitCode === 0) return {name: 'pg_amcheck', ok: true, detail: `no corruption found (${target.database ? `database ${target.database}` : 'all databases'}, heap and btree indexes)`};
  const said = `${String(result.stdout ?? '')}\n${String(result.stderr ?? '')}`.trim().split('\n').filter(Boolean);
  const summary = said.slice(0, 8).join('; ') || result.shortMessage || `exit ${result.exitCode}`;
  return {name: 'pg_amcheck', ok: false, detail: `pg_amcheck exited ${result.exitCode ?? (result.timedOut ? 'on timeout' : 'by signal')}: ${summary}`};
}
