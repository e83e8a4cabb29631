// pgbk drill: restore into a scratch cluster (or database), verify, measure RTO/RPO, store and print the report.

import type {Command} from 'commander';
import {TargetError} from '../errors.js';
import {parseTarget, type TargetOptions} from '../restore/target.js';
import {withContext, printJson, type GlobalOptions, type Io} from './context.js';

interface DrillOptions extends TargetOptions {
  keep?: boolean;
}

export function registerDrillCommand(program: Command, io: Io, globals: () => GlobalOptions): void {
  program.command('drill')
    .description('restore into a scratch cluster, prove it reached the target, check it, measure RTO and RPO, store the report')
    .option('--target-time <timestamp>', 'restore to this time (default: a random moment in the recoverable window)')
    .option('--latest', 'restore to the end of the archived WAL')
    .option('--keep', 'keep the scratch directory (server stopped) or, for dumps, the scratch database')
    .action(async (options: DrillOptions) => {
      const target = parseTarget(options);
      if (target.kind !== 'time' && target.kind !== 'latest') throw new TargetError('a drill takes --target-time or --latest');
      const given = options.targetTime !== undefined || options.latest ? target : undefined;
      const [{runDrill}, {renderReport, failures}, {DrillFailedError}] = await Promise.all([
        import('../drill/run.js'), import('../drill/report.js'), import('../drill/errors.js'),
      ]);
      await withContext(globals(), io, async ({policy, repo}) => {
        const report = await runDrill({
          policy, repo, target: given, keep: Boolean(options.keep), now: io.now,
          progress: (line) => {
            if (globals().verbose) io.stderr.write(`pgbk: drill: ${line}\n`);
          },
        });
        if (!globals().json) io.stdout.write(renderReport(report));
        if (!report.ok) {
          const why = failures(report);
          throw new DrillFailedError(`drill ${report.id} failed: ${why.join('; ')}`, {
            hint: `the report is stored in the repository as drills/${report.id}.json; rerun with --verbose to follow each step`,
          }).withReport({...report});
        }
        if (globals().json) printJson(io, report);
      });
    });
}
