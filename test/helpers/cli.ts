// Run the pgbk CLI the way PostgreSQL would: `node <repo>/bin/pgbk ...` as the postgres OS user when
// the tests run as root (runuser -u postgres -- env -i VAR=... node ...). The environment is built
// explicitly (a small base plus opts.env), so nothing leaks in from the test runner's environment.
import {dirname, resolve} from 'node:path';
import {fileURLToPath} from 'node:url';
import {isRoot, postgresUser, runAsPostgres} from './cluster.js';

export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const pgbkBin = resolve(repoRoot, 'bin', 'pgbk');

export interface RunPgbkOptions {
  /** Added to the base environment (PATH, HOME, LANG, TZ, TMPDIR). */
  env?: Record<string, string>;
  /** Working directory (default: the repo root). Must be readable by postgres when root. */
  cwd?: string;
  /** Written to stdin. */
  input?: string | Buffer;
  /** Default 120 s; the process is then SIGTERMed (SIGKILL 5 s later). */
  timeoutMs?: number;
}

export interface RunPgbkResult {
  exitCode: number;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

/** The environment runPgbk gives pgbk, before opts.env. */
export function baseEnv(): Record<string, string> {
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
    HOME: isRoot ? postgresUser().home : (process.env.HOME ?? '/tmp'),
    LANG: process.env.LANG ?? 'C.UTF-8',
  };
  for (const name of ['TZ', 'TMPDIR', 'LC_ALL']) {
    const value = process.env[name];
    if (value !== undefined) env[name] = value;
  }
  return env;
}

/** Run `pgbk ...args`; never throws on a non-zero exit. */
export async function runPgbk(args: string[], opts: RunPgbkOptions = {}): Promise<RunPgbkResult> {
  const env = {...baseEnv(), ...opts.env};
  const assignments = Object.entries(env).map(([name, value]) => `${name}=${value}`);
  // env -i: runuser keeps most of root's environment; start from nothing instead.
  return runAsPostgres('env', ['-i', ...assignments, process.execPath, pgbkBin, ...args], {
    cwd: opts.cwd ?? repoRoot,
    input: opts.input,
    timeoutMs: opts.timeoutMs ?? 120_000,
  });
}
