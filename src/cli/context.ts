// What every command gets: the policy, the repository, output helpers, the clock.

import type {Policy} from '../policy/types.js';
import type {Repository} from '../storage/repository.js';

export interface GlobalOptions {
  policy?: string;
  policies?: string;
  json?: boolean;
  verbose?: boolean;
}

export interface Io {
  env: NodeJS.ProcessEnv;
  cwd: string;
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
  now: () => Date;
}

export interface CommandContext {
  policy: Policy;
  repo: Repository;
  io: Io;
}

export async function openContext(options: GlobalOptions, io: Io): Promise<CommandContext> {
  // Loaded on demand: archive-push's fast path never needs YAML or the schema.
  const [{loadPolicy}, {openRepository}] = await Promise.all([import('../policy/load.js'), import('../storage/open.js')]);
  const policy = await loadPolicy({policy: options.policy, policiesDir: options.policies, env: io.env, cwd: io.cwd});
  const repo = await openRepository(policy.repository);
  return {policy, repo, io};
}

/** Runs `work` with an opened context and always closes the repository. */
export async function withContext<T>(options: GlobalOptions, io: Io, work: (ctx: CommandContext) => Promise<T>): Promise<T> {
  const ctx = await openContext(options, io);
  try {
    return await work(ctx);
  } finally {
    await ctx.repo.close();
  }
}

export function printJson(io: Io, value: unknown): void {
  io.stdout.write(`${JSON.stringify(value, (_key, v) => (typeof v === 'bigint' ? v.toString() : v), 2)}\n`);
}
