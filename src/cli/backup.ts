// pgbk backup: a base backup (pitr, replica, patroni) or a dump (dump), by the policy's strategy.

import type {Command} from 'commander';
import {formatBytes} from '../util/progress.js';
import {withContext, printJson, type GlobalOptions, type Io} from './context.js';

export function registerBackupCommand(program: Command, io: Io, globals: () => GlobalOptions): void {
  program.command('backup')
    .description("take a backup now, of the policy strategy's kind; prints the backup id")
    .action(async () => {
      await withContext(globals(), io, async ({policy, repo}) => {
        const {identityForBackup} = await import('../identity/init.js');
        const identity = await identityForBackup(policy, repo, io.now());
        // One backup per policy at a time, scheduled or manual.
        const lock = await (await import('../backup/lock.js')).takeBackupLock(repo, policy, io.env, io.now);
        let manifest;
        try {
          const deps = {policy, repo, now: io.now, identity, cancelSignal: lock.signal};
          manifest = policy.strategy === 'dump'
            ? await (await import('../backup/dump.js')).runDump(deps)
            : await (await import('../backup/basebackup.js')).runBaseBackup(deps);
        } catch (error) {
          // Stopped because the lease was lost: say that, not "pg_basebackup was killed".
          if (lock.signal.aborted) throw lock.signal.reason;
          throw error;
        } finally {
          await lock.release();
        }
        if (globals().json) {
          printJson(io, manifest);
          return;
        }
        io.stdout.write(`${manifest.id}\n`);
        if (globals().verbose) {
          io.stderr.write(`${manifest.kind} backup ${manifest.id}: ${formatBytes(manifest.sourceBytes)} read, ${formatBytes(manifest.storedBytes)} stored in ${(manifest.durationMs / 1000).toFixed(1)}s` +
            `${manifest.stopLsn ? `, LSN ${manifest.startLsn} to ${manifest.stopLsn} on timeline ${manifest.timeline}` : ''}\n`);
        }
      });
    });
}
