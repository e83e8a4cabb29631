// pgbk init: create the repository's identity (idempotent for the same cluster, refused for another).

import type {Command} from 'commander';
import {printJson, withContext, type GlobalOptions, type Io} from './context.js';

export function registerInitCommand(program: Command, io: Io, globals: () => GlobalOptions): void {
  program.command('init')
    .description("create the repository's identity: the cluster's system identifier, WAL segment size, format (idempotent for the same cluster, refused for another)")
    .action(async () => {
      const [{clusterFacts, initRepository}] = await Promise.all([import('../identity/init.js')]);
      await withContext(globals(), io, async ({policy, repo}) => {
        const cluster = await clusterFacts(policy);
        const result = await initRepository(repo, cluster, io.now());
        const {identity} = result;
        if (globals().json) {
          const {salt: _salt, checksum: _checksum, ...shown} = identity;
          printJson(io, {ok: true, outcome: result.outcome, repository: repo.description, backupsChecked: result.backupsChecked, identity: shown});
          return;
        }
        const what = `database system ${identity.systemId} (PostgreSQL ${Math.floor(identity.pgVersionNum / 10000)}, ${identity.walSegmentSize / (1024 * 1024)} MiB WAL segments)`;
        const line = {
          created: `initialised ${repo.description} for ${what}, repository id ${identity.repositoryId}`,
          existing: `${repo.description} is already initialised for ${what}, repository id ${identity.repositoryId}`,
          adopted: `adopted ${repo.description} for ${what}: ${result.backupsChecked} backup(s) and the WAL checked, repository id ${identity.repositoryId}`,
        }[result.outcome];
        io.stdout.write(`${line}\n`);
      });
    });
}
