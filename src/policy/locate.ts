// Where a policy file is: cheap (no YAML, no schema), so archive-push's fast path can name the policy it runs for.

import {existsSync, statSync, type Stats} from 'node:fs';
import {dirname, extname, isAbsolute, join, resolve} from 'node:path';
import {PolicyError} from '../errors.js';

export interface PolicyLookup {
  /** --policy: a name (looked up in the policies dir) or a path. */
  policy?: string;
  /** --policies: the policies dir. */
  policiesDir?: string;
  env: NodeJS.ProcessEnv;
  cwd: string;
}

/** The default policies directory. The current directory is never searched: a name means the same file wherever pgbk runs. */
export const DEFAULT_POLICIES_DIR = '/etc/pgbk/policies';

/** Policy files end in .yaml or .yml, alike everywhere. */
export const POLICY_FILE_RE = /\.ya?ml$/;

/** The policies directory: --policies, else PGBK_POLICIES, else /etc/pgbk/policies. */
export function policiesDirectory(lookup: Omit<PolicyLookup, 'policy'>): string {
  return policiesDirectorySource(lookup).dir;
}

/** The policies directory and where that choice came from, for messages. */
export function policiesDirectorySource(lookup: Omit<PolicyLookup, 'policy'>): {dir: string; from: string} {
  if (lookup.policiesDir) return {dir: resolve(lookup.cwd, lookup.policiesDir), from: '--policies'};
  if (lookup.env.PGBK_POLICIES) return {dir: resolve(lookup.cwd, lookup.env.PGBK_POLICIES), from: 'PGBK_POLICIES'};
  return {dir: DEFAULT_POLICIES_DIR, from: 'the default; --policies and PGBK_POLICIES are not set'};
}

/** The policy name of a file: its base name without .yaml / .yml. */
export function policyNameOf(file: string): string {
  return file.slice(file.lastIndexOf('/') + 1).replace(POLICY_FILE_RE, '');
}

/**
 * The policy file --policy (or PGBK_POLICY) names. A value with a "/" or ending in .yaml/.yml is a path (relative to
 * the current directory); anything else is a name, looked up as <name>.yaml, then <name>.yml, in the policies dir.
 */
export function resolvePolicyPath(lookup: PolicyLookup): string {
  const ref = lookup.policy ?? lookup.env.PGBK_POLICY;
  if (!ref) {
    throw new PolicyError('no policy given', 'pass --policy <name|path> or set PGBK_POLICY');
  }
  if (ref.includes('/') || ['.yaml', '.yml'].includes(extname(ref))) {
    return isAbsolute(ref) ? ref : resolve(lookup.cwd, ref);
  }
  const {dir, from} = policiesDirectorySource(lookup);
  const candidates = [join(dir, `${ref}.yaml`), join(dir, `${ref}.yml`)];
  const found = candidates.filter((file) => existsSync(file));
  if (found.length === 2) {
    throw new PolicyError(`policy ${ref} is ambiguous: both ${found[0]} and ${found[1]} exist`, 'remove one of them');
  }
  if (found.length === 0) {
    throw new PolicyError(`no policy ${ref}: looked for ${candidates.join(' and ')} (policies directory ${dir}: ${from})`,
      'give the policies directory with --policies <dir> or PGBK_POLICIES, or the file\'s path with --policy <path>');
  }
  return found[0]!;
}

/** Who pgbk runs as, and what it may trust: injectable for tests. */
export interface RunningUser {
  uid: number;
}

/**
 * Refuses a policy file that someone else could rewrite. A policy decides which programs pgbk runs (postgres.bin_dir)
 * and where WAL goes, so when pgbk runs as root, or as a user other than the file's owner (PostgreSQL's OS user
 * running archive_command with an administrator's file), neither the file nor the directory holding it may be
 * writable by group or others. pgbk running as the file's owner trusts its owner's own choice.
 */
export function assertPolicyNotWritableByOthers(file: string, user: RunningUser | undefined = currentUser()): void {
  if (!user) return; // no POSIX uids (Windows)
  let fileStat: Stats;
  try {
    fileStat = statSync(file);
  } catch {
    return; // reading it reports what is wrong
  }
  const strict = user.uid === 0 || user.uid !== fileStat.uid;
  if (!strict) return;
  const dir = dirname(file);
  for (const [path, stats, what] of [[file, fileStat, 'policy file'], [dir, statSync(dir), 'policy directory']] as const) {
    if ((stats.mode & 0o022) === 0) continue;
    const mode = (stats.mode & 0o7777).toString(8).padStart(4, '0');
    throw new PolicyError(
      `${what} ${path} is writable by ${stats.mode & 0o002 ? 'every user' : 'its group'} (mode ${mode}): refused, since pgbk runs as ` +
        `${user.uid === 0 ? 'root' : `uid ${user.uid}`} and anyone who can write it decides which programs pgbk runs`,
      `chmod go-w ${path}`,
    );
  }
}

function currentUser(): RunningUser | undefined {
  return typeof process.geteuid === 'function' ? {uid: process.geteuid()} : undefined;
}
