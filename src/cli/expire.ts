// pgbk expire: apply the policy's retention (--dry-run: print what would go, remove nothing).

import type {Command} from 'commander';
import {readCatalog, catalogScopeOf} from '../backup/manifest.js';
import {formatBytes} from '../util/progress.js';
import {withContext, printJson, type GlobalOptions, type Io} from './context.js';

interface ExpireOptions {
  dryRun?: boolean;
}

export function registerExpireCommand(program: Command, io: Io, globals: () => GlobalOptions): void {
  program.command('expire')
    .description('apply retention: remove backups and WAL the policy no longer keeps')
    .option('--dry-run', 'print the plan, remove nothing')
    .action(async (options: ExpireOptions) => {
      await withContext(globals(), io, async ({policy, repo}) => {
        const {planExpire} = await import('../retention/plan.js');
        const {applyExpire} = await import('../retention/apply.js');
        const catalog = await readCatalog(repo, (key, error) => io.stderr.write(`pgbk: warning: skipping ${key}: ${error.message}\n`), catalogScopeOf(policy));
        const now = io.now();
        // Retention counts back from now: a clock that jumped would remove the point-in-time window.
        const {checkClock} = await import('../retention/clock.js');
        checkClock(now, {description: repo.description, time: await repo.serverTime()}, catalog);
        const plan = planExpire(catalog, policy.retention, now);
        const outcome = await applyExpire(plan, repo, {dryRun: Boolean(options.dryRun), now, objectLockDays: policy.repository.objectLock?.days});
        if (globals().json) {
          printJson(io, {policy: policy.name, repository: repo.description, ...plan, outcome});
          return;
        }
        const dry = outcome.dryRun;
        const lines = [
          `${dry ? 'expire plan (dry run, nothing removed)' : 'expired'} for policy ${policy.name} in ${repo.description}`,
          `  retention: ${plan.summary}`,
        ];
        if (plan.windowStart) lines.push(`  must stay restorable from: ${plan.windowStart}`);
        lines.push('', 'backups:');
        if (plan.backups.length === 0) lines.push('  none');
        for (const decision of plan.backups) {
          const locked = outcome.locked.find((entry) => entry.id === decision.id);
          if (locked) {
            lines.push(`  locked ${decision.id} ${decision.kind} (${decision.reasons.join('; ')}): its objects are under Object Lock until ${locked.until}; a later expire removes it`);
            continue;
          }
          const verb = decision.keep ? 'keep  ' : dry ? 'remove' : 'removed';
          lines.push(`  ${verb} ${decision.id} ${decision.kind}${decision.timeline !== undefined ? ` timeline ${decision.timeline}` : ''}` +
            ` (${decision.kind === 'dump' ? 'taken' : 'consistent from'} ${decision.time}, ${formatBytes(decision.storedBytes)}): ${decision.reasons.join('; ')}`);
        }
        for (const leftover of outcome.leftovers) {
          lines.push(`  ${dry ? 'remove' : 'removed'} ${leftover.id}: ${leftover.objects} object(s) without a manifest (an interrupted backup or removal), ${formatBytes(leftover.bytes)}`);
        }
        for (const upload of outcome.incompleteUploads) {
          lines.push(`  aborted an incomplete upload of ${upload.key} begun ${upload.startedAt.toISOString()}`);
        }
        lines.push('', `WAL: ${plan.wal.reason}`);
        for (const point of plan.wal.keepPoints) {
          lines.push(`  kept from ${point.walStart} on timeline ${point.timeline} and later timelines (backup ${point.backupId})`);
        }
        for (const range of outcome.wal.ranges) {
          lines.push(`  ${dry ? 'remove' : 'removed'} ${range.first}${range.last !== range.first ? ` .. ${range.last}` : ''} on timeline ${range.timeline}` +
            ` (${range.files} file${range.files === 1 ? '' : 's'}, ${formatBytes(range.bytes)})`);
        }
        if (outcome.wal.lockedFiles > 0) {
          lines.push(`  locked ${outcome.wal.lockedFiles} WAL file${outcome.wal.lockedFiles === 1 ? '' : 's'} no backup needs: under Object Lock until ${outcome.wal.lockedUntil} at the latest; a later expire removes them`);
        }
        const removedBackups = outcome.backups.length;
        lines.push('', `${dry ? 'would remove' : 'removed'} ${removedBackups} backup${removedBackups === 1 ? '' : 's'} ` +
          `(${formatBytes(outcome.backups.reduce((sum, backup) => sum + backup.bytes, 0))}) and ${outcome.wal.removedFiles} WAL file${outcome.wal.removedFiles === 1 ? '' : 's'} ` +
          `(${formatBytes(outcome.wal.removedBytes)}); ${outcome.wal.keptFiles} WAL file${outcome.wal.keptFiles === 1 ? '' : 's'} kept`, '');
        io.stdout.write(lines.join('\n'));
      });
    });
}
