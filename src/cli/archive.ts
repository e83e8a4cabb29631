// archive-push and archive-get: what PostgreSQL runs as archive_command and restore_command.

import {existsSync} from 'node:fs';
import {basename, dirname, join, resolve} from 'node:path';
import {fileURLToPath} from 'node:url';
import type {Command} from 'commander';
import {CorruptObjectError, RecoveryAbortError, RepositoryError} from '../errors.js';
import {withContext, printJson, type GlobalOptions, type Io} from './context.js';

export function registerArchiveCommands(program: Command, io: Io, globals: () => GlobalOptions): void {
  program.command('archive-push')
    .description("archive one WAL file (archive_command = 'pgbk archive-push --policy P %p')")
    .argument('<wal-path>', 'path of the WAL file (%p)')
    .action(async (walPathArg: string) => {
      const walPath = resolve(io.cwd, walPathArg);
      const walFile = basename(walPath);
      (await import('../wal/name.js')).parseWalFileName(walFile);
      const ahead = await import('../wal/push-ahead.js');
      const {resolvePolicyPath} = await import('../policy/locate.js');
      const policyFile = resolvePolicyPath({policy: globals().policy, policiesDir: globals().policies, env: io.env, cwd: io.cwd});
      const markers = ahead.pushedDirOf(io.cwd);
      const startPusher = async () => {
        if (!markers || (await ahead.pusherRunning(markers))) return;
        if ((await ahead.readyBacklog(io.cwd, walFile)).length === 0) return;
        ahead.spawnPusher({execPath: process.execPath, script: pgbkScript(), cwd: io.cwd, policyArgs: policyArgs(globals())}, walFile);
      };
      // Archived already by the background pusher, and this is the very file it archived.
      if (markers && (await ahead.takePushedMarker(markers, walPath, walFile, policyFile))) {
        await startPusher();
        if (globals().json) printJson(io, {walFile, alreadyArchived: true, pushedAhead: true});
        return;
      }
      const {pushWalFile} = await import('../wal/push.js');
      await withContext(globals(), io, async ({policy, repo}) => {
        const result = await pushWalFile(repo, walPath, {compressionLevel: policy.backup.compressionLevel});
        if (globals().json) printJson(io, result);
        else if (result.alreadyArchived) io.stderr.write(`pgbk: warning: ${result.walFile} was already archived with the same content\n`);
      });
      await startPusher();
    });

  program.command('archive-push-ahead', {hidden: true})
    .description('internal: archive the .ready segments after <segment> of the data directory it runs in, in parallel')
    .argument('<segment>')
    .action(async (after: string) => {
      const {runPusher} = await import('../wal/push-ahead.js');
      await withContext(globals(), io, async ({policy, repo}) => {
        await runPusher(repo, io.cwd, after, policy.file, {compressionLevel: policy.backup.compressionLevel});
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
      const startPrefetcher = (requested: string) => prefetch.spawnPrefetcher({
        execPath: process.execPath, script: pgbkScript(), cwd: io.cwd,
        policyArgs: policyArgs(globals()),
      }, requested);
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
    .description('internal: fetch the segments after <segment> into the spool of the data directory it runs in')
    .argument('<segment>')
    .action(async (requested: string) => {
      const {parseWalFileName} = await import('../wal/name.js');
      if (parseWalFileName(requested).kind !== 'segment') return;
      const {runPrefetcher, walSegmentSizeOf} = await import('../wal/prefetch.js');
      await withContext(globals(), io, async ({policy, repo}) => {
        const segmentSize = await walSegmentSizeOf(io.cwd, policy.postgres.binDir);
        await runPrefetcher(repo, io.cwd, requested, {segmentSize});
      });
    });
}

function policyArgs(options: GlobalOptions): string[] {
  return [...(options.policy ? ['--policy', options.policy] : []), ...(options.policies ? ['--policies', options.policies] : [])];
}

/** bin/pgbk of this installation, by absolute path. */
function pgbkScript(): string {
  return resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', 'bin', 'pgbk');
}
