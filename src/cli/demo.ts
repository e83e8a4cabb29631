// pgbk demo: the whole cycle on a throwaway cluster and a local repository, with nothing to set up.

import type {Command} from 'commander';
import type {GlobalOptions, Io} from './context.js';

export function registerDemoCommand(program: Command, io: Io, _globals: () => GlobalOptions): void {
  program.command('demo')
    .description('the whole cycle on a throwaway cluster and a local repository, no setup needed')
    .option('--keep', 'keep the temporary directory (clusters stopped) for a look afterwards')
    .action(async (options: {keep?: boolean}) => {
      const {runDemo} = await import('../demo/run.js');
      await runDemo(io, Boolean(options.keep));
    });
}
