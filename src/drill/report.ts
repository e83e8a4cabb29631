// The drill report: what was restored, how long it took, what was checked (pure: no IO).

import {formatDuration} from '../policy/duration.js';

export interface DrillCheckResult {
  name: string;
  ok: boolean;
  detail: string;
}

export interface DrillPhases {
  /** Reading the catalog and the WAL window, choosing the backup. */
  planMs: number;
  /** Fetching, verifying and unpacking the backup (streamed in one pass). */
  fetchMs: number;
  /** Server start until recovery began replaying WAL. */
  startMs: number;
  /** WAL replay until the server was promoted and accepted a write. */
  replayMs: number;
}

export interface DrillReport {
  formatVersion: 1;
  id: string;
  policy: string;
  strategy: string;
  startedAt: string;
  finishedAt: string;
  ok: boolean;
  /** What the drill restored to: {kind: 'time', time} or {kind: 'latest', time: newest commit in the archive}. */
  target: {kind: 'time' | 'latest'; time: string | null; chosen: 'random' | 'given' | 'latest'};
  backupId: string | null;
  /** Physical strategies: the newest commit replayed, as PostgreSQL logged it (UTC). Dumps: the dump's snapshot time. */
  lastReplayedCommit: string | null;
  /** The first commit recovery stopped before (time targets), from the server log. */
  stoppedBefore: string | null;
  phases: DrillPhases;
  /** Drill start until the restored server accepted writes (null when it never did). */
  rtoSeconds: number | null;
  /** Target minus the last replayed commit (null when not known). */
  rpoSeconds: number | null;
  objectives: {rpoSeconds: number; rtoSeconds: number; rpoMet: boolean; rtoMet: boolean};
  checks: DrillCheckResult[];
  errors: string[];
  /** --keep: where the (stopped) scratch cluster was left. */
  keptDir?: string;
}

/** Drill ids sort as time: 20261126T104100.123Z (milliseconds, so two drills in one second do not collide). */
export function drillIdFor(date: Date): string {
  return date.toISOString().replace(/[-:]/g, '');
}

export function evaluateObjectives(rtoSeconds: number | null, rpoSeconds: number | null, objectives: {rpoSeconds: number; rtoSeconds: number}): DrillReport['objectives'] {
  return {
    rpoSeconds: objectives.rpoSeconds,
    rtoSeconds: objectives.rtoSeconds,
    rpoMet: rpoSeconds !== null && rpoSeconds <= objectives.rpoSeconds,
    rtoMet: rtoSeconds !== null && rtoSeconds <= objectives.rtoSeconds,
  };
}

/** A drill passes when nothing failed, every check passed and both objectives were met. */
export function isPassing(report: Pick<DrillReport, 'checks' | 'errors' | 'objectives'>): boolean {
  return report.errors.length === 0 && report.checks.every((check) => check.ok) && report.objectives.rpoMet && report.objectives.rtoMet;
}

/** Why a drill failed, one line each (empty when it passed). */
export function failures(report: DrillReport): string[] {
  const lines = [...report.errors];
  for (const check of report.checks) if (!check.ok) lines.push(`check "${check.name}" failed: ${check.detail}`);
  if (report.errors.length === 0) {
    if (!report.objectives.rtoMet) lines.push(`RTO ${seconds(report.rtoSeconds)} misses the objective of ${formatDuration(report.objectives.rtoSeconds)}`);
    if (!report.objectives.rpoMet) lines.push(`RPO ${seconds(report.rpoSeconds)} misses the objective of ${formatDuration(report.objectives.rpoSeconds)}`);
  }
  return lines;
}

function seconds(value: number | null): string {
  return value === null ? 'unknown' : `${value.toFixed(1)}s`;
}

function ms(value: number): string {
  return `${(value / 1000).toFixed(1)}s`;
}

export function renderReport(report: DrillReport): string {
  const target = report.target.kind === 'latest'
    ? `latest${report.target.time ? ` (the archive as of ${report.target.time})` : ''}`
    : `${report.target.time}${report.target.chosen === 'random' ? ' (random moment in the recoverable window)' : ''}`;
  const lines = [
    `drill ${report.id} of policy ${report.policy}: ${report.ok ? 'PASSED' : 'FAILED'}`,
    `  backup:      ${report.backupId ?? 'none'}`,
    `  target:      ${target}`,
  ];
  if (report.lastReplayedCommit) lines.push(`  last commit: ${report.lastReplayedCommit}${report.stoppedBefore ? ` (stopped before ${report.stoppedBefore})` : ''}`);
  const {phases} = report;
  lines.push(
    `  RTO:         ${seconds(report.rtoSeconds)} (objective ${formatDuration(report.objectives.rtoSeconds)}: ${report.objectives.rtoMet ? 'met' : 'MISSED'})` +
      ` = plan ${ms(phases.planMs)} + fetch ${ms(phases.fetchMs)} + start ${ms(phases.startMs)} + replay ${ms(phases.replayMs)}`,
    `  RPO:         ${seconds(report.rpoSeconds)} (objective ${formatDuration(report.objectives.rpoSeconds)}: ${report.objectives.rpoMet ? 'met' : 'MISSED'})`,
  );
  if (report.checks.length > 0) {
    lines.push('  checks:');
    for (const check of report.checks) lines.push(`    ${check.ok ? 'ok  ' : 'FAIL'} ${check.name}: ${check.detail}`);
  }
  for (const error of report.errors) lines.push(`  error: ${error.split('\n').join('\n         ')}`);
  if (report.keptDir) lines.push(`  kept:        ${report.keptDir} (server stopped)`);
  return `${lines.join('\n')}\n`;
}
