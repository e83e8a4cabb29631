// Every policy file of the policies directory, for the scheduler (*.yaml and *.yml, name order).

import {readdir} from 'node:fs/promises';
import {join} from 'node:path';
import {PolicyError} from '../errors.js';
import {loadPolicy} from '../policy/load.js';
import {POLICY_FILE_RE, policyNameOf} from '../policy/locate.js';
import type {Policy} from '../policy/types.js';

export interface LoadedPolicies {
  policies: Policy[];
  /** Files that did not load, each with why (the message names the file). */
  failures: {file: string; error: Error}[];
}

/**
 * The *.yaml and *.yml files of `dir`, in name order; a missing or unreadable directory is a PolicyError, and so
 * are two files of one policy name (orders.yaml and orders.yml).
 */
export async function policyFiles(dir: string): Promise<string[]> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new PolicyError(`cannot read the policies directory ${dir}: ${code === 'ENOENT' ? 'no such directory' : code}`,
      'give it with --policies <dir> or PGBK_POLICIES (default /etc/pgbk/policies)');
  }
  const files = names.filter((name) => POLICY_FILE_RE.test(name) && !name.startsWith('.')).sort().map((name) => join(dir, name));
  const seen = new Map<string, string>();
  for (const file of files) {
    const other = seen.get(policyNameOf(file));
    if (other) throw new PolicyError(`policy ${policyNameOf(file)} is defined twice: ${other} and ${file}`, 'remove one of them');
    seen.set(policyNameOf(file), file);
  }
  return files;
}

export async function loadAllPolicies(dir: string, env: NodeJS.ProcessEnv, cwd: string): Promise<LoadedPolicies> {
  const loaded: LoadedPolicies = {policies: [], failures: []};
  for (const file of await policyFiles(dir)) {
    try {
      loaded.policies.push(await loadPolicy({policy: file, env, cwd}));
    } catch (error) {
      loaded.failures.push({file, error: error as Error});
    }
  }
  return loaded;
}

/** Policies that share one repository would share its leases and job records: worth a warning. */
export function sharedRepositories(policies: Policy[]): string[][] {
  const byUrl = new Map<string, string[]>();
  for (const policy of policies) byUrl.set(policy.repository.url, [...(byUrl.get(policy.repository.url) ?? []), policy.name]);
  return [...byUrl.values()].filter((names) => names.length > 1);
}
