// Where a policy file is: cheap (no YAML, no schema), so archive-push's fast path can name the policy it runs for.

import {existsSync} from 'node:fs';
import {extname, isAbsolute, join, resolve} from 'node:path';
import {PolicyError} from '../errors.js';

export interface PolicyLookup {
  /** --policy: a name (looked up in the policies dir) or a path. */
  policy?: string;
  /** --policies: the policies dir. */
  policiesDir?: string;
  env: NodeJS.ProcessEnv;
  cwd: string;
}

/** The policies directory: --policies, else PGBK_POLICIES, else ./policies, else /etc/pgbk/policies. */
export function policiesDirectory(lookup: PolicyLookup): string {
  if (lookup.policiesDir) return resolve(lookup.cwd, lookup.policiesDir);
  if (lookup.env.PGBK_POLICIES) return resolve(lookup.cwd, lookup.env.PGBK_POLICIES);
  const local = join(lookup.cwd, 'policies');
  if (existsSync(local)) return local;
  return '/etc/pgbk/policies';
}

export function resolvePolicyPath(lookup: PolicyLookup): string {
  const ref = lookup.policy ?? lookup.env.PGBK_POLICY;
  if (!ref) {
    throw new PolicyError('no policy given', 'pass --policy <name|path> or set PGBK_POLICY');
  }
  if (ref.includes('/') || ['.yaml', '.yml'].includes(extname(ref))) {
    return isAbsolute(ref) ? ref : resolve(lookup.cwd, ref);
  }
  return join(policiesDirectory(lookup), `${ref}.yaml`);
}

