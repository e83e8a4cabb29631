// pgbk status: per policy, last backup, archive and replication lag, the recoverable window, objectives met or not.
// Every policy in the policies directory when --policy (and PGBK_POLICY) is absent. Exit 1 when anything is missed.

import type {Command} from 'commander';
import {PgbkError, PolicyError} from '../errors.js';
import {loadPolicy, policiesDirectory} from '../policy/load.js';
import {formatDuration} from '../policy/duration.js';
import type {Policy} from '../policy/types.js';
import {openRepository} from '../storage/open.js';
import {policyFiles} from '../scheduler/policies.js';
import {formatBytes} from '../util/progress.js';
import type {PolicyStatus} from '../status/status.js';
import {renderPatroni} from '../patroni/status.js';
import {printJson, type GlobalOptions, type Io} from './context.js';

/** A policy file that loaded, or the error that says why it did not. */
export type LoadedPolicy = {ok: true; policy: Policy} | {ok: false; file: string; name: string; error: PgbkError};

/** --policy (or PGBK_POLICY): that one, and a broken file throws (exit 2); else every *.yaml in the policies dir. */
export async function loadPolicies(options: GlobalOptions, io: Io): Promise<{single: boolean; dir?: string; loaded: LoadedPolicy[]}> {
  const lookup = {policy: options.policy, policiesDir: options.policies, env: io.env, cwd: io.cwd};
  if (options.policy ?? io.env.PGBK_POLICY) return {single: true, loaded: [{ok: true, policy: await loadPolicy(lookup)}]};
  const dir = policiesDirectory(lookup);
  const files = await policyFiles(dir);
  if (files.length === 0) throw new PolicyError(`no policy files (*.yaml, *.yml) in ${dir}`, 'pass --policy <name|path>, or --policies <dir> (or PGBK_POLICIES)');
  const loaded: LoadedPolicy[] = [];
  for (const file of files) {
    const name = file.slice(file.lastIndexOf('/') + 1);
    try {
      loaded.push({ok: true, policy: await loadPolicy({policy: file, env: io.env, cwd: io.cwd})});
    } catch (error) {
      if (!(error instanceof PolicyError)) throw error;
      loaded.push({ok: false, file, name: name.replace(/\.ya?ml$/, ''), error});
    }
  }
  return {single: false, dir, loaded};
}

export function registerStatusCommand(program: Command, io: Io, globals: () => GlobalOptions): void {
  program.command('status')
    .description('per policy: last backup, archive and replication lag, recoverable window, objectives met or not (all policies without --policy); exit 1 when one is missed')
    .option('--no-commit-times', 'skip reading the newest commit time of the archive (pg_waldump)')
    .action(async (opts: {commitTimes: boolean}) => {
      const {gatherStatus, ObjectivesMissedError} = await import('../status/status.js');
      const {loaded} = await loadPolicies(globals(), io);
      const statuses: PolicyStatus[] = [];
      const invalid: Array<{policy: string; file: string; ok: false; problems: string[]}> = [];
      for (const entry of loaded) {
        if (!entry.ok) {
          invalid.push({policy: entry.name, file: entry.file, ok: false, problems: [`invalid policy file: ${entry.error.message}`]});
          continue;
        }
        const repo = await openRepository(entry.policy.repository);
        try {
          statuses.push(await gatherStatus(entry.policy, repo, {now: io.now, commitTimes: opts.commitTimes}));
        } finally {
          await repo.close();
        }
      }
      const failed = [...invalid.map((entry) => entry.policy), ...statuses.filter((status) => !status.ok).map((status) => status.policy)];
      const document = {time: io.now().toISOString(), policies: [...statuses, ...invalid]};
      if (!globals().json) io.stdout.write(renderStatus(statuses, invalid, io.now()));
      // An invalid policy file is bad input (exit 2) even among good ones; the others are still reported above
      // (under --json: in the error's document).
      if (invalid.length > 0) {
        throw new PolicyError(`invalid policy ${invalid.length === 1 ? 'file' : 'files'}: ${invalid.map((entry) => entry.problems[0]!.replace(/^invalid policy file: /, '')).join('; ')}`)
          .withReport(document);
      }
      if (failed.length > 0) {
        throw new ObjectivesMissedError(`${failed.length === 1 ? 'policy' : 'policies'} ${failed.join(', ')}: objective missed or something broken (see above)`)
          .withReport(document);
      }
      if (globals().json) printJson(io, {ok: true, ...document});
    });
}

const age = (seconds: number | null | undefined): string => (seconds === null || seconds === undefined ? '-' : `${formatDuration(seconds)} ago`);
const time = (value: string | Date | null | undefined): string => (value ? new Date(value).toISOString().replace(/\.\d+Z$/, 'Z') : '-');

function verdict(result: PolicyStatus['objectives']['rpo']): string {
  const target = formatDuration(result.targetSeconds);
  const actual = result.actualSeconds === null ? '' : ` (${formatDuration(result.actualSeconds)})`;
  return `${result.status}${actual} / ${target}`;
}

export function renderStatus(statuses: PolicyStatus[], invalid: Array<{policy: string; problems: string[]}>, now: Date): string {
  const rows = [['POLICY', 'STRATEGY', 'LAST BACKUP', 'WAL ARCHIVED', 'RPO', 'RTO', 'STATUS']];
  for (const status of statuses) {
    rows.push([
      status.policy, status.strategy,
      status.lastBackup ? `${status.lastBackup.id} (${age(status.lastBackup.ageSeconds)})` : 'none',
      status.strategy === 'dump' ? 'n/a' : status.archive ? age(status.archive.ageSeconds) : 'none',
      verdict(status.objectives.rpo), verdict(status.objectives.rto), status.ok ? 'ok' : 'PROBLEM',
    ]);
  }
  for (const entry of invalid) rows.push([entry.policy, '-', '-', '-', '-', '-', 'INVALID']);
  const widths = rows[0]!.map((_, col) => Math.max(...rows.map((row) => row[col]!.length)));
  const lines = rows.map((row) => row.map((cell, col) => cell.padEnd(widths[col]!)).join('  ').trimEnd());

  for (const status of statuses) {
    lines.push('', `${status.policy} (${status.strategy}, ${status.repository}, status at ${time(now)})`);
    const add = (label: string, value: string) => lines.push(`  ${label.padEnd(14)}${value}`);
    add('last backup', status.lastBackup
      ? `${status.lastBackup.id} ${status.lastBackup.kind}, finished ${time(status.lastBackup.stopTime)} (${age(status.lastBackup.ageSeconds)}); ${status.backupCount} kept`
      : 'none');
    if (status.strategy !== 'dump') {
      add('archive', status.archive
        ? `${status.archive.lastSegment} at ${time(status.archive.lastSegmentTime)} (${age(status.archive.ageSeconds)}), ${status.archive.segments} segments` +
          (status.archive.walFullyArchived === true ? '; everything written is archived'
            : status.archive.unarchivedBytes ? `; ${formatBytes(status.archive.unarchivedBytes)} written since` : '')
        : 'no WAL archived');
      if (status.archiver) {
        const a = status.archiver;
        add('archiver', `last ${a.lastArchivedWal ?? 'none'} at ${time(a.lastArchivedTime)} (${age(a.lastArchivedAgeSeconds)}); ` +
          `${a.failedCount} failed${a.lastFailedWal ? `, last ${a.lastFailedWal} at ${time(a.lastFailedTime)}` : ''}${a.failing ? ' — FAILING' : ''}`);
      }
      add('window', status.window?.earliestTime
        ? `${time(status.window.earliestTime)} .. ${status.window.latestTime ? time(status.window.latestTime) : `(WAL to ${status.window.latestLsn ?? '-'})`}`
        : 'none (no base backup)');
    }
    add('server', status.server.reachable ? (status.server.inRecovery ? 'standby (in recovery)' : 'primary') : `UNREACHABLE: ${status.server.error}`);
    if (status.patroni) {
      const [first, ...rest] = renderPatroni(status.patroni);
      add('patroni', first ?? '');
      for (const line of rest) lines.push(`  ${''.padEnd(14)}${line}`);
    }
    const replication = status.replication;
    if (replication?.role === 'primary') {
      add('replication', replication.standbys.length === 0 ? 'no standby'
        : replication.standbys.map((s) => `${s.applicationName} ${s.state}, ${s.lagBytes === null ? '-' : formatBytes(s.lagBytes)} behind, replay lag ${s.replayLagSeconds === null ? '-' : formatDuration(s.replayLagSeconds)}`).join('; '));
    } else if (replication?.role === 'standby') {
      add('replication', `replays ${replication.replayDelaySeconds === null ? '(nothing replayed yet)' : `${formatDuration(replication.replayDelaySeconds)} behind`}`);
    }
    add('jobs', (['backup', 'expire', 'drill'] as const).map((job) => {
      const result = status.jobs[job];
      return `${job} ${result ? `${result.ok ? 'ok' : 'FAILED'} ${time(result.finishedAt as string | undefined)}` : '-'}`;
    }).join('; '));
    add('last drill', status.lastDrill
      ? `${status.lastDrill.ok ? 'ok' : 'FAILED'} ${time(status.lastDrill.finishedAt)}` +
        `${typeof status.lastDrill.rtoSeconds === 'number' ? `, RTO ${formatDuration(status.lastDrill.rtoSeconds)}` : ''}` +
        `${typeof status.lastDrill.rpoSeconds === 'number' ? `, RPO ${formatDuration(status.lastDrill.rpoSeconds)}` : ''}`
      : 'none');
    add('RPO', `${status.objectives.rpo.status} (objective ${formatDuration(status.objectives.rpo.targetSeconds)}): ${status.objectives.rpo.reason}`);
    add('RTO', `${status.objectives.rto.status} (objective ${formatDuration(status.objectives.rto.targetSeconds)}): ${status.objectives.rto.reason}`);
    for (const problem of status.problems) lines.push(`  PROBLEM: ${problem}`);
    for (const warning of status.warnings) lines.push(`  warning: ${warning}`);
  }
  for (const entry of invalid) {
    lines.push('', entry.policy);
    for (const problem of entry.problems) lines.push(`  PROBLEM: ${problem}`);
  }
  return `${lines.join('\n')}\n`;
}
