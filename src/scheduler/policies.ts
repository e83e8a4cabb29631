// Every policy file of the policies directory, for the scheduler (*.yaml, name order).

import {readdir} from 'node:fs/promises';
import {join} from 'node:path';
import {PolicyError} from '../errors.js';
import {loadPolicy} from '../policy/load.js';
import type {Policy} from '../policy/types.js';

export interface LoadedPolicies {
  policies: Policy[];
  /** Files that did not load, each with why (the message names the file). */
  failures: {file: string; error: Error}[];
}

/** The *.yaml files of `dir`, in name order; a missing or unreadable directory is a PolicyError. */
export async function policyFiles(dir: string): Promise<string[]> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new PolicyError(`cannot read the policies directory ${dir}: ${code === 'ENOENT' ? 'no such directory' : code}`,
      'give it with --policies <dir> or PGBK_POLICIES (default ./policies, then /etc/pgbk/policies)');
  }
  return names.filter((name) => name.endsWith('.yaml') && !name.startsWith('.')).sort().map((name) => join(dir, name));
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
