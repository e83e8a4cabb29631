// pgbk patroni-create-replica: the command of a Patroni replica creation method. Patroni appends
// --scope=<scope> --role=replica --datadir=<dir> --connstring=<conninfo>, plus every other key of the method's
// config as --<key>=<value> (keep_data, no_leader, ...): those are accepted and ignored.

import type {Command} from 'commander';
import {formatBytes} from '../util/progress.js';
import {redactConninfo} from '../pg/conninfo.js';
import {UsageError} from '../errors.js';
import {withContext, printJson, type GlobalOptions, type Io} from './context.js';

interface CreateReplicaOptions {
  scope?: string;
  datadir?: string;
  role?: string;
  connstring?: string;
}

export function registerPatroniReplicaCommand(program: Command, io: Io, globals: () => GlobalOptions): void {
  program.command('patroni-create-replica')
    .description('Patroni create_replica_methods command: restore the newest base backup into --datadir for Patroni to start as a replica')
    .option('--scope <scope>', 'Patroni cluster name (checked against the REST API)')
    .option('--datadir <dir>', 'the data directory to create (Patroni\'s postgresql.data_dir)')
    .option('--role <role>', 'always replica', 'replica')
    .option('--connstring <conninfo>', 'the member Patroni would clone from (logged, not used: the repository is the source)')
    .allowUnknownOption(true)
    .allowExcessArguments(true)
    .action(async (options: CreateReplicaOptions, command: Command) => {
      if (!options.datadir) throw new UsageError('patroni-create-replica needs --datadir (Patroni passes --datadir=<postgresql.data_dir>)');
      await withContext(globals(), io, async ({policy, repo}) => {
        const log = (line: string) => void io.stderr.write(`${line}\n`);
        log(`pgbk: patroni-create-replica --scope=${options.scope ?? ''} --role=${options.role ?? ''} --datadir=${options.datadir} ` +
          `--connstring=${options.connstring ? redactConninfo(options.connstring) : ''}` +
          `${command.args.length > 0 ? `; ignored: ${command.args.map(redactConninfo).join(' ')}` : ''}`);
        const {createReplicaFromBackup} = await import('../patroni/create-replica.js');
        const result = await createReplicaFromBackup(
          {scope: options.scope, datadir: options.datadir!, role: options.role, connstring: options.connstring},
          {policy, repo, log},
        );
        if (globals().json) {
          printJson(io, result);
          return;
        }
        io.stdout.write(`restored backup ${result.backup} into ${result.dataDir} (${formatBytes(result.fetchedBytes)} in ${(result.fetchMs / 1000).toFixed(1)}s); ` +
          'Patroni starts it as a replica\n');
      });
    });
}
