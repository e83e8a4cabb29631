// archive-push and archive-get: what PostgreSQL runs as archive_command and restore_command.

import {existsSync} from 'node:fs';
import {dirname, join, resolve} from 'node:path';
import {fileURLToPath} from 'node:url';
import type {Command} from 'commander';
import {CorruptObjectError, RecoveryAbortError, RepositoryError} from '../errors.js';
import {withContext, printJson, type GlobalOptions, type Io} from './context.js';

export function registerArchiveCommands(program: Command, io: Io, globals: () => GlobalOptions): void {
  program.command('archive-push')
    .description("archive one WAL file (archive_command = 'pgbk archive-push --policy P %p')")
    .argument('<wal-path>', 'path of the WAL file (%p)')
    .action(async (walPath: string) => {
      const {pushWalFile} = await import('../wal/push.js');
      await withContext(globals(), io, async ({policy, repo}) => {
        const result = await pushWalFile(repo, resolve(io.cwd, walPath), {compressionLevel: policy.backup.compressionLevel});
        if (globals().json) printJson(io, result);
        else if (result.alreadyArchived) io.stderr.write(`pgbk: warning: ${result.walFile} was already archived with the same content\n`);
      });
    });

  program.command('archive-get')
    .description("fetch one WAL file (restore_command = 'pgbk archive-get --policy P %f %p')")
    .argument('<wal-name>', 'WAL file name (%f)')
    .argument('<dest-path>', 'where PostgreSQL wants it (%p)')
    .action(async (walName: string, destPath: string) => {
      const {parseWalFileName} = await import('../wal/name.js');
      parseWalFileName(walName);
      const dest = resolve(io.cwd, destPath);
      const prefetch = await import('../wal/prefetch.js');
      const spool = prefetch.spoolOf(io.cwd);
      const startPrefetcher = (fromSegment: string) => prefetch.spawnPrefetcher({
        execPath: process.execPath, script: pgbkScript(), cwd: io.cwd,
        policyArgs: [...(globals().policy ? ['--policy', globals().policy!] : []), ...(globals().policies ? ['--policies', globals().policies!] : [])],
      }, fromSegment);
      // Fetched ahead by the prefetcher and verified then: no repository access at all.
      if (spool && (await prefetch.takeFromSpool(spool, walName, dest))) {
        await prefetch.planPrefetch(spool, walName, startPrefetcher);
        return;
      }
      const {getWalFile} = await import('../wal/get.js');
      await withContext(globals(), io, async ({repo}) => {
        try {
          await getWalFile(repo, walName, dest);
        } catch (error) {
          // A repository that cannot be read must not look like the end of the archive: PostgreSQL would stop
          // recovery early, at the wrong point, and promote. Exit 126 aborts recovery instead. A standby falls
          // back to streaming, so there "not available" (1) is the right answer.
          if ((error instanceof RepositoryError || error instanceof CorruptObjectError) && !existsSync(join(io.cwd, 'standby.signal'))) {
            throw new RecoveryAbortError(`${error.message}; aborting recovery rather than stopping short of the target`, error.hint, {cause: error});
          }
          throw error;
        }
      });
      if (spool) await prefetch.planPrefetch(spool, walName, startPrefetcher);
    });

  program.command('archive-prefetch', {hidden: true})
    .description('internal: fetch the segments after <from-segment> into the spool of the data directory it runs in')
    .argument('<from-segment>')
    .action(async (fromSegment: string) => {
      const {parseWalFileName} = await import('../wal/name.js');
      if (parseWalFileName(fromSegment).kind !== 'segment') return;
      const {runPrefetcher} = await import('../wal/prefetch.js');
      await withContext(globals(), io, async ({repo}) => {
        await runPrefetcher(repo, io.cwd, fromSegment);
      });
    });
}

/** bin/pgbk of this installation, by absolute path. */
function pgbkScript(): string {
  return resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', 'bin', 'pgbk');
}
