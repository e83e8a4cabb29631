// pgbk list: backups and the recoverable window.

import type {Command} from 'commander';
import {readCatalog, catalogScopeOf, type BackupManifest} from '../backup/manifest.js';
import type {RecoverableWindow} from '../restore/window.js';
import {formatBytes} from '../util/progress.js';
import {withContext, printJson, type GlobalOptions, type Io} from './context.js';

export function registerListCommand(program: Command, io: Io, globals: () => GlobalOptions): void {
  program.command('list')
    .description('backups (id, kind, start/stop time and LSN, timeline, size) and the recoverable window')
    .action(async () => {
      await withContext(globals(), io, async ({policy, repo}) => {
        const catalog = await readCatalog(repo, (key, error) => io.stderr.write(`pgbk: warning: skipping ${key}: ${error.message}\n`), catalogScopeOf(policy));
        const {computeWindow} = await import('../restore/window.js');
        const window = policy.strategy === 'dump'
          ? undefined
          : await computeWindow(repo, catalog, {binDir: policy.postgres.binDir, commitTimes: true});
        if (globals().json) {
          printJson(io, {policy: policy.name, repository: repo.description, backups: catalog.map(summarize), window: window && windowJson(window, catalog)});
          return;
        }
        io.stdout.write(renderTable(catalog));
        io.stdout.write(renderWindow(window, catalog));
      });
    });
}

function summarize(backup: BackupManifest) {
  return {
    id: backup.id, kind: backup.kind, startTime: backup.startTime, stopTime: backup.stopTime,
    startLsn: backup.startLsn ?? null, stopLsn: backup.stopLsn ?? null, timeline: backup.timeline ?? null,
    sourceBytes: backup.sourceBytes, storedBytes: backup.storedBytes, database: backup.database ?? null,
    pgVersionNum: backup.pgVersionNum, systemId: backup.systemId,
  };
}

function windowJson(window: RecoverableWindow, catalog: BackupManifest[]) {
  const dumps = catalog.filter((backup) => backup.kind === 'dump');
  return {
    earliestTime: window.earliestTime?.toISOString() ?? dumps[0]?.startTime ?? null,
    latestTime: window.latestTime?.toISOString() ?? null,
    earliestLsn: window.earliestLsn ?? null,
    latestLsn: window.latestLsn ?? null,
    latestTimeline: window.latestTimeline ?? null,
    lastSegment: window.lastSegment ?? null,
    archivedSegments: window.archivedSegments,
    gap: window.gap ?? null,
  };
}

function renderTable(catalog: BackupManifest[]): string {
  if (catalog.length === 0) return 'no backups\n';
  const rows = [['ID', 'KIND', 'START', 'STOP', 'START LSN', 'STOP LSN', 'TLI', 'SIZE', 'STORED']];
  for (const backup of catalog) {
    rows.push([
      backup.id, backup.kind, backup.startTime.replace(/\.\d+Z$/, 'Z'), backup.stopTime.replace(/\.\d+Z$/, 'Z'),
      backup.startLsn ?? '-', backup.stopLsn ?? '-', String(backup.timeline ?? '-'), formatBytes(backup.sourceBytes), formatBytes(backup.storedBytes),
    ]);
  }
  const widths = rows[0]!.map((_, col) => Math.max(...rows.map((row) => row[col]!.length)));
  return rows.map((row) => row.map((cell, col) => cell.padEnd(widths[col]!)).join('  ').trimEnd()).join('\n') + '\n';
}

function renderWindow(window: RecoverableWindow | undefined, catalog: BackupManifest[]): string {
  if (!window) {
    const dumps = catalog.filter((backup) => backup.kind === 'dump');
    return dumps.length ? `\nrestorable: the database as of each dump's start time (${dumps[0]!.startTime} to ${dumps.at(-1)!.startTime})\n` : '';
  }
  if (!window.earliestTime) return '\nrecoverable window: none (no base backup)\n';
  const lines = [
    '',
    `recoverable window: ${window.earliestTime.toISOString()} .. ${window.latestTime?.toISOString() ?? '(no commit archived after the newest backup)'}`,
    `  earliest: ${window.earliestTime.toISOString()} (LSN ${window.earliestLsn})`,
    `  latest:   ${window.latestTime ? `${window.latestTime.toISOString()} (last archived commit, xid ${window.latestXid})` : '-'}; WAL archived to ${window.latestLsn ?? '-'} on timeline ${window.latestTimeline ?? '-'}`,
    `  archived WAL segments: ${window.archivedSegments}`,
  ];
  if (window.gap) lines.push(`  WARNING: WAL segment ${window.gap.missing} is missing: point-in-time recovery cannot go past ${window.gap.after}`);
  return `${lines.join('\n')}\n`;
}
