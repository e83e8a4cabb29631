// pgbk verify: every stored object against its checksum, and WAL continuity for each backup. Exit 1 on any problem.

import type {Command} from 'commander';
import {formatBytes} from '../util/progress.js';
import {withContext, printJson, type GlobalOptions, type Io} from './context.js';

interface VerifyCommandOptions {
  backup?: string;
}

export function registerVerifyCommand(program: Command, io: Io, globals: () => GlobalOptions): void {
  program.command('verify')
    .description('check every stored object against its checksum, and WAL continuity for each backup')
    .option('--backup <id>', 'check only this backup and the WAL it can use')
    .action(async (options: VerifyCommandOptions) => {
      await withContext(globals(), io, async ({policy, repo}) => {
        const {verifyRepository, VerifyFailedError} = await import('../verify/verify.js');
        const json = globals().json;
        const started = Date.now();
        const report = await verifyRepository(repo, {
          backupId: options.backup,
          now: io.now(),
          onProblem: json ? undefined : (problem) => io.stdout.write(`problem: ${problem.object}: ${problem.message}\n`),
        });
        const seconds = (Date.now() - started) / 1000;
        const document = {policy: policy.name, ...report, durationMs: Math.round(seconds * 1000)};
        if (json) {
          if (report.problems.length === 0) printJson(io, {...document, ok: true});
        } else {
          io.stdout.write(`verified ${report.backups.length} backup${report.backups.length === 1 ? '' : 's'} (${report.backupObjects} object${report.backupObjects === 1 ? '' : 's'})` +
            ` and ${report.walFiles} WAL file${report.walFiles === 1 ? '' : 's'} in ${repo.description}: ${formatBytes(report.bytesRead)} read in ${seconds.toFixed(1)}s\n`);
          for (const folder of report.unfinished) {
            io.stdout.write(folder.live
              ? `in progress: backups/${folder.id}/ is being written by ${folder.owner} (${folder.objects} object(s) so far)\n`
              : `abandoned: backups/${folder.id}/ has ${folder.objects} object(s), ${formatBytes(folder.bytes)}, and no manifest (a backup that did not finish); not restorable, expire removes it after a day\n`);
          }
          io.stdout.write(report.problems.length === 0 ? 'ok\n' : `${report.problems.length} problem${report.problems.length === 1 ? '' : 's'} found\n`);
        }
        if (report.problems.length > 0) {
          throw new VerifyFailedError(`verify found ${report.problems.length} problem${report.problems.length === 1 ? '' : 's'} in ${repo.description}` +
            (json ? '' : '; first: ' + `${report.problems[0]!.object}`),
          'restores that need these objects would fail: take a new backup (pgbk backup), and find out what damaged or removed them').withReport(document);
        }
      });
    });
}
