// archive-push and archive-get: what PostgreSQL runs as archive_command and restore_command.

import {existsSync} from 'node:fs';
import {basename, dirname, join, resolve} from 'node:path';
import {fileURLToPath} from 'node:url';
import type {Command} from 'commander';
import {PgbkError, RecoveryAbortError, StandbyFallbackError, WalNameError, WalNotFoundError} from '../errors.js';
import {withContext, printJson, type GlobalOptions, type Io} from './context.js';

export function registerArchiveCommands(program: Command, io: Io, globals: () => GlobalOptions): void {
  /** Failures of the detached helpers since the last call, said once on stderr (PostgreSQL's log). */
  const reportBackground = async () => {
    const {reportBackgroundFailures} = await import('../wal/background-log.js');
    await reportBackgroundFailures(io.cwd, (text) => io.stderr.write(text));
  };
  /** A detached helper: its stdio goes nowhere, so a failure (an unusable policy, an unreadable repository) is logged. */
  const inBackground = async (who: 'archive-push-ahead' | 'archive-prefetch', work: () => Promise<void>) => {
    try {
      await work();
    } catch (error) {
      const {recordBackgroundFailure} = await import('../wal/background-log.js');
      await recordBackgroundFailure(io.cwd, who, (error as Error).message);
      throw error;
    }
  };
  program.command('archive-push')
    .description("archive one WAL file (archive_command = 'pgbk archive-push --policy P %p')")
    .argument('<wal-path>', 'path of the WAL file (%p)')
    .action(async (walPathArg: string) => {
      const walPath = resolve(io.cwd, walPathArg);
      const walFile = basename(walPath);
      (await import('../wal/name.js')).parseWalFileName(walFile);
      await reportBackground();
      const ahead = await import('../wal/push-ahead.js');
      const {loadPolicy} = await import('../policy/load.js');
      const policy = await loadPolicy({policy: globals().policy, policiesDir: globals().policies, env: io.env, cwd: io.cwd});
      const location = ahead.repositoryLocation(policy.repository);
      const markers = ahead.pushedDirOf(io.cwd);
      const startPusher = async () => {
        if (!markers || (await ahead.pusherRunning(markers))) return;
        if ((await ahead.readyBacklog(io.cwd, walFile)).length === 0) return;
        ahead.spawnPusher({execPath: process.execPath, script: pgbkScript(), cwd: io.cwd, policyArgs: policyArgs(globals())}, walFile);
      };
      const [{openRepository}, identities] = await Promise.all([import('../storage/open.js'), import('../identity/identity.js')]);
      const repo = await openRepository(policy.repository);
      // S3: the identity read within the last 5 minutes, kept in the spool (saves a GET per segment); a local
      // repository's is read every time (cheap, and a different repository may be mounted at the same path).
      const local = policy.repository.url.startsWith('file://');
      const spoolDir = markers ? dirname(markers) : undefined;
      const cached = !local && spoolDir ? await identities.readCachedIdentity(spoolDir, location, io.now()) : undefined;
      try {
        let identity: Promise<import('../identity/identity.js').RepositoryIdentity> | undefined;
        const identityOnce = () => {
          if (!identity) {
            identity = cached ? identities.acceptIdentity(repo, cached) : identities.requireIdentity(repo, policy.name);
            identity.catch(() => undefined); // awaited by its users; never an unhandled rejection meanwhile
          }
          return identity;
        };
        // Archived already by the background pusher, into this repository, and this is the very file it archived
        // (or the pusher is on it right now: its verdict is awaited rather than the work done twice).
        if (markers) await ahead.awaitPusher(markers, walFile);
        if (markers && (await ahead.takePushedMarker(markers, walPath, walFile, location, local ? async () => (await identityOnce()).repositoryId : undefined))) {
          await startPusher();
          if (globals().json) printJson(io, {walFile, alreadyArchived: true, pushedAhead: true});
          return;
        }
        // The pusher (a process of its own, ~0.3 s to start) takes the segments after this one meanwhile.
        await startPusher();
        const {pushWalFile} = await import('../wal/push.js');
        const result = await pushWalFile(repo, walPath, {compression: policy.compression, identity: identityOnce()}).catch(async (error) => {
          if (spoolDir && cached) await identities.forgetIdentity(spoolDir).catch(() => undefined);
          throw error;
        });
        if (!local && spoolDir && !cached) await identities.rememberIdentity(spoolDir, location, await identityOnce(), io.now()).catch(() => undefined);
        if (globals().json) printJson(io, result);
        else if (result.repaired) io.stderr.write(`pgbk: warning: the archived copy of ${result.walFile} was damaged (${result.repaired}); replaced it\n`);
        else if (result.alreadyArchived) io.stderr.write(`pgbk: warning: ${result.walFile} was already archived with the same content (read back and verified)\n`);
      } finally {
        await repo.close();
      }
    });

  program.command('archive-push-ahead', {hidden: true})
    .description('internal: archive the .ready segments after <segment> of the data directory it runs in, in parallel')
    .argument('<segment>')
    .action(async (after: string) => {
      const [{runPusher, repositoryLocation}, {requireIdentity}] = await Promise.all([import('../wal/push-ahead.js'), import('../identity/identity.js')]);
      await inBackground('archive-push-ahead', () => withContext(globals(), io, async ({policy, repo}) => {
        const identity = await requireIdentity(repo, policy.name);
        const binding = {repositoryId: identity.repositoryId, location: repositoryLocation(policy.repository)};
        await runPusher(repo, io.cwd, after, binding, {compression: policy.compression, identity}, undefined, {policyFile: policy.file});
      }));
    });

  program.command('archive-command')
    .description('print the archive_command to put in postgresql.conf for this policy (absolute paths; a shell fast path for segments already archived ahead)')
    .action(async () => {
      const [{expectedArchiveCommand}, {loadPolicy}] = await Promise.all([import('../status/check.js'), import('../policy/load.js')]);
      const policy = await loadPolicy({policy: globals().policy, policiesDir: globals().policies, env: io.env, cwd: io.cwd});
      const archiveCommand = expectedArchiveCommand(policy);
      if (globals().json) printJson(io, {policy: policy.name, archiveCommand});
      else io.stdout.write(`${archiveCommand}\n`);
    });

  program.command('archive-get')
    .description("fetch one WAL file (restore_command = 'pgbk archive-get --policy P %f %p')")
    .argument('<wal-name>', 'WAL file name (%f)')
    .argument('<dest-path>', 'where PostgreSQL wants it (%p)')
    .option('--end-of-archive <segment>', 'treat this segment and later ones as the end of the archive when missing (pgbk restore sets it for a target before a known gap)')
    .action(async (walName: string, destPath: string, options: {endOfArchive?: string}) => {
      const {parseWalFileName} = await import('../wal/name.js');
      parseWalFileName(walName);
      if (options.endOfArchive !== undefined && parseWalFileName(options.endOfArchive).kind !== 'segment') {
        throw new WalNameError(`--end-of-archive: not a WAL segment name: "${options.endOfArchive}"`);
      }
      const standby = existsSync(join(io.cwd, 'standby.signal'));
      await reportBackground();
      try {
        await archiveGet(walName, resolve(io.cwd, destPath), standby, options.endOfArchive);
      } catch (error) {
        throw getFailure(error, standby);
      }
    });

  const archiveGet = async (walName: string, dest: string, standby: boolean, endOfArchive?: string) => {
    const prefetch = await import('../wal/prefetch.js');
    const spool = prefetch.spoolOf(io.cwd);
    const startPrefetcher = (requested: string) => prefetch.spawnPrefetcher({
      execPath: process.execPath, script: pgbkScript(), cwd: io.cwd,
      policyArgs: policyArgs(globals()),
    }, requested);
    // Fetched ahead by the prefetcher and verified then (checksum and cluster): no repository access at all.
    if (spool && (await prefetch.takeFromSpool(spool, walName, dest))) {
      await prefetch.planPrefetch(spool, walName, startPrefetcher);
      return;
    }
    const [{getWalFile}, {requireIdentity}] = await Promise.all([import('../wal/get.js'), import('../identity/identity.js')]);
    await withContext(globals(), io, async ({policy, repo}) => {
      const identity = await requireIdentity(repo, policy.name);
      // On a standby a missing file is routine (it streams instead): no listing to tell a gap from the end.
      await getWalFile(repo, walName, dest, {owner: identity, detectGap: !standby, endOfArchive});
    });
    if (spool) await prefetch.planPrefetch(spool, walName, startPrefetcher);
  };

  program.command('archive-prefetch', {hidden: true})
    .description('internal: fetch the segments after <segment> into the spool of the data directory it runs in')
    .argument('<segment>')
    .action(async (requested: string) => {
      const {parseWalFileName} = await import('../wal/name.js');
      if (parseWalFileName(requested).kind !== 'segment') return;
      const {runPrefetcher, walSegmentSizeOf} = await import('../wal/prefetch.js');
      await inBackground('archive-prefetch', () => withContext(globals(), io, async ({policy, repo}) => {
        const {requireIdentity} = await import('../identity/identity.js');
        const identity = await requireIdentity(repo, policy.name);
        const segmentSize = await walSegmentSizeOf(io.cwd, policy.postgres.binDir);
        await runPrefetcher(repo, io.cwd, requested, {segmentSize, owner: identity});
      }));
    });
}

/**
 * What archive-get's failure tells PostgreSQL. Exit 1 means "not archived": PostgreSQL then ends recovery and
 * promotes, so it is kept for the true end of the archive. Anything else — the repository unreadable, a corrupt
 * or foreign copy, a gap, an unusable policy, a local I/O error, a bug — aborts recovery (126) instead of letting
 * it stop short of the target. A standby falls back to streaming, so there everything is 1.
 */
function getFailure(error: unknown, standby: boolean): unknown {
  if (error instanceof WalNotFoundError || error instanceof WalNameError) return error;
  const message = (error as Error)?.message ?? String(error);
  const hint = error instanceof PgbkError ? error.hint : undefined;
  if (standby) return new StandbyFallbackError(`${message} (standby: falling back to streaming)`, hint, {cause: error});
  if (error instanceof PgbkError && error.exitCode >= 126) return error;
  return new RecoveryAbortError(`${message}; aborting recovery rather than stopping short of the target`, hint, {cause: error});
}

function policyArgs(options: GlobalOptions): string[] {
  return [...(options.policy ? ['--policy', options.policy] : []), ...(options.policies ? ['--policies', options.policies] : [])];
}

/** bin/pgbk of this installation, by absolute path. */
function pgbkScript(): string {
  return resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', 'bin', 'pgbk');
}
