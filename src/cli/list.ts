// pgbk list: backups and the recoverable window.

import type {Command} from 'commander';
import {readCatalog, catalogScopeOf, type BackupManifest} from '../backup/manifest.js';
import type {RecoverableWindow} from '../restore/window.js';
import type {TimelineChoice, TimelineSummary} from '../restore/timelines.js';
import {branchToJson, renderTimelineTree, timelineTree} from '../restore/branch.js';
import {describeGap} from '../restore/plan.js';
import {formatLsn} from '../wal/lsn.js';
import {DEFAULT_SEGMENT_SIZE} from '../wal/name.js';
import {formatBytes} from '../util/progress.js';
import {withContext, printJson, type GlobalOptions, type Io} from './context.js';

export function registerListCommand(program: Command, io: Io, globals: () => GlobalOptions): void {
  program.command('list')
    .description('backups (id, kind, start/stop time and LSN, timeline, size) and the recoverable window')
    .action(async () => {
      await withContext(globals(), io, async ({policy, repo}) => {
        const catalog = await readCatalog(repo, (key, error) => io.stderr.write(`pgbk: warning: skipping ${key}: ${error.message}\n`), catalogScopeOf(policy));
        let window: RecoverableWindow | undefined;
        let choice: TimelineChoice | undefined;
        let timelines: Map<number, TimelineSummary> | undefined;
        const forkCommits = new Map<number, string | undefined>();
        if (policy.strategy !== 'dump') {
          const {scanTimelines, chooseTimeline} = await import('../restore/timelines.js');
          const {askPolicyServer} = await import('../restore/prepare.js');
          const {computeWindow} = await import('../restore/window.js');
          timelines = await scanTimelines(repo);
          choice = await chooseTimeline(timelines, {catalog, server: askPolicyServer(policy)});
          window = await computeWindow(repo, catalog, {binDir: policy.postgres.binDir, commitTimes: true, branch: choice.branch});
          window.archivedSegments = [...timelines.values()].reduce((sum, summary) => sum + summary.segments, 0);
          const {lastCommitBeforeFork} = await import('../restore/timelines.js');
          const segmentSize = catalog.find((backup) => backup.walSegmentSize)?.walSegmentSize ?? DEFAULT_SEGMENT_SIZE;
          for (const summary of timelines.values()) {
            const fork = summary.history?.at(-1);
            if (!fork) continue;
            try {
              forkCommits.set(summary.timeline, await lastCommitBeforeFork(repo, summary.timeline, fork.switchLsn, segmentSize, policy.postgres.binDir));
            } catch (error) {
              io.stderr.write(`pgbk: warning: cannot read where timeline ${summary.timeline} forked: ${(error as Error).message}\n`);
            }
          }
        }
        if (globals().json) {
          printJson(io, {
            policy: policy.name, repository: repo.description, backups: catalog.map(summarize),
            timelines: timelines ? timelinesJson(timelines, forkCommits) : undefined,
            window: window && {...windowJson(window, catalog), timeline: choice!.timeline, timelineReason: choice!.reason, branch: branchToJson(choice!.branch)},
          });
          return;
        }
        io.stdout.write(renderTable(catalog));
        if (timelines) io.stdout.write(renderTimelines(timelines, forkCommits));
        if (choice) io.stdout.write(`\nwindow along timeline ${choice.timeline} (${choice.reason})\n`);
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
    gap: window.gap ? {...window.gap, lastReachableTime: window.gap.lastReachableTime?.toISOString() ?? null} : null,
    offBranch: window.offBranch,
  };
}

function timelinesJson(timelines: Map<number, TimelineSummary>, forkCommits: Map<number, string | undefined>) {
  return [...timelines.values()].sort((a, b) => a.timeline - b.timeline).map((summary) => {
    const fork = summary.history?.at(-1);
    return {
      timeline: summary.timeline, parent: fork?.parent ?? null, forkLsn: fork ? formatLsn(fork.switchLsn) : null, forkReason: fork?.reason ?? null,
      lastCommitBeforeFork: forkCommits.get(summary.timeline) ?? null,
      historyArchivedAt: summary.historyArchivedAt?.toISOString() ?? null,
      segments: summary.segments, firstSegment: summary.firstSegment ?? null, lastSegment: summary.lastSegment ?? null,
      lastArchivedAt: summary.lastArchivedAt?.toISOString() ?? null,
    };
  });
}

function renderTimelines(timelines: Map<number, TimelineSummary>, forkCommits: Map<number, string | undefined>): string {
  if (timelines.size === 0) return '';
  const histories = new Map([...timelines.values()].filter((summary) => summary.history).map((summary) => [summary.timeline, summary.history!]));
  const nodes = timelineTree(histories, timelines.keys());
  const lines = renderTimelineTree(nodes, (node) => {
    const summary = timelines.get(node.timeline);
    const commit = forkCommits.get(node.timeline);
    return `forked from timeline ${node.parent} at LSN ${formatLsn(node.forkLsn!)}` +
      `${commit ? `, after the commit at ${commit}` : ''}` +
      `${summary?.historyArchivedAt ? ` (history archived ${summary.historyArchivedAt.toISOString()})` : ''}${node.reason ? `, ${node.reason}` : ''}`;
  }).map((line) => {
    const timeline = Number(/timeline (\d+)/.exec(line)![1]);
    const summary = timelines.get(timeline);
    const extent = summary && summary.segments > 0 ? ` [${summary.segments} segment${summary.segments === 1 ? '' : 's'}: ${summary.firstSegment} .. ${summary.lastSegment}]` : ' [no segments]';
    return `  ${line}${extent}`;
  });
  return `\ntimelines:\n${lines.join('\n')}\n`;
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
  if (window.gap) {
    lines.push(`  WARNING: WAL segment ${window.gap.missing} is missing: point-in-time recovery cannot go past ${window.gap.after}`,
      `  gap: ${describeGap(window.gap)}; last reachable point: LSN ${window.gap.lastReachableLsn}${window.gap.lastReachableTime ? `, ${window.gap.lastReachableTime.toISOString()}` : ''}`);
  }
  if (window.offBranch.length > 0) lines.push(`  on other branches (not usable along this timeline): ${window.offBranch.join(', ')}`);
  return `${lines.join('\n')}\n`;
}
