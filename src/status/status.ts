// pgbk status: what a policy's backups look like right now, and whether its objectives (RPO, RTO) are met.
//
// gatherStatus() reads the repository and the server and never throws for what it finds broken (an unreachable
// server or repository is a finding); evaluateStatus() is pure: facts + objectives + now -> verdicts and problems.
//
// Verdicts: RPO is met when the newest archived WAL (dump strategy: the newest dump) is at most objectives.rpo old
// — or the server reports no WAL written since it — with no archiver failure pending and no gap in the archive.
// RTO is met when the last drill restored within objectives.rto; with no drill (or one that did not measure its
// RTO) it is 'unknown': not proven, reported, but not a failure. A policy fails (exit 1) only on what is
// positively wrong: RPO missed, a gap, the archiver failing, the last drill failed or over RTO, the server or the
// repository unreachable, and for replica/patroni no standby streaming or a standby further behind than the RPO.

import {text} from 'node:stream/consumers';
import {readCatalog, catalogScopeOf, type BackupManifest} from '../backup/manifest.js';
import {readIdentity} from '../identity/identity.js';
import {ObjectNotFoundError, PgbkError} from '../errors.js';
import {withClient} from '../pg/client.js';
import {parseSizeSetting} from '../pg/queries.js';
import {
  archiverStats, replicationStats, standbyDelay, walPosition,
  type ArchiverStats, type StandbyReplication,
} from '../pg/status-queries.js';
import {formatDuration} from '../policy/duration.js';
import type {Policy, Strategy} from '../policy/types.js';
import {computeWindow, type RecoverableWindow} from '../restore/window.js';
import {evaluatePatroni, gatherPatroniStatus, type PatroniStatus} from '../patroni/status.js';
import {DRILL_PREFIX, jobResultKey} from '../storage/layout.js';
import type {Repository} from '../storage/repository.js';
import {findArchived, listArchived, type ArchivedWalFile} from '../wal/archive.js';
import {formatLsn, parseLsn} from '../wal/lsn.js';
import {newestStreamed} from '../wal/receive-store.js';
import {probeStandby, type StandbyProbe} from '../replica/probe.js';
import {redactUrl} from '../pg/conninfo.js';
import {parseWalFileName, segmentStartLsn} from '../wal/name.js';
import {formatBytes} from '../util/progress.js';
import {slotStatus, subscriptionStatus, type SlotStatus, type SubscriptionStatus} from '../restore/logical.js';

/** `pgbk status` found an objective missed or something broken: exit 1, so that cron and monitoring alert. */
export class ObjectivesMissedError extends PgbkError {
  readonly code = 'status.objectives-missed';
}

export const JOBS = ['backup', 'expire', 'drill'] as const;
export type JobName = (typeof JOBS)[number];

/** The last result of a scheduled job (jobs/<job>/last.json); unknown fields are kept. */
export interface JobResult {
  job?: string;
  policy?: string;
  startedAt?: string;
  finishedAt?: string;
  ok: boolean;
  error?: string;
  [field: string]: unknown;
}

/** A drill report (drills/<id>.json); unknown fields are kept. */
export interface DrillReport {
  ok: boolean;
  finishedAt?: string;
  rtoSeconds?: number;
  rpoSeconds?: number;
  [field: string]: unknown;
}

export type Replication =
  | {role: 'primary'; standbys: StandbyReplication[]}
  | {role: 'standby'; replayDelaySeconds: number | null};

export type ServerFacts =
  | {reachable: true; inRecovery: boolean; archiver?: ArchiverStats; replication?: Replication; unarchivedBytes?: number | null; systemId?: string}
  | {reachable: false; error: string};

export interface GapFacts {
  /** The first segment missing from the archive. */
  missing: string;
  /** The last segment before it. */
  after: string;
  /** When the last segment before the gap was archived: recovery cannot reach anything later. */
  since: string | null;
  /** A hole before the newest backup: restores work again from this backup on. */
  untilBackup?: string;
}

/** What evaluateStatus() needs: gathered from the repository and the server. */
export interface StatusFacts {
  strategy: Strategy;
  objectives: {rpoSeconds: number; rtoSeconds: number};
  /** Newest complete backup of the strategy's kind (base, or dump for the dump strategy). */
  lastBackup?: {id: string; kind: string; startTime: string; stopTime: string};
  repository: {reachable: true} | {reachable: false; error: string};
  /** The newest archived WAL segment (on the server's timeline when known). */
  lastArchived?: {walFile: string; time: string | null};
  /** The server says all the WAL it wrote is archived (so nothing is at risk, however old the segment). */
  walFullyArchived?: boolean;
  server: ServerFacts;
  gap?: GapFacts;
  hole?: GapFacts;
  jobs: Partial<Record<JobName, JobResult>>;
  lastDrill?: DrillReport;
  /** replica: the standby backups are taken from (replica.standby_url), probed directly. */
  backupStandby?: {url: string; probe: StandbyProbe};
  /** replica: replica.max_lag, which standby lag is held to instead of the RPO. */
  maxLagSeconds?: number;
  /** The database system the repository belongs to (its identity), when it has one. */
  repositorySystemId?: string;
  /** Set (to the message) when the repository has no identity yet. */
  uninitialised?: string;
}

export type Verdict = 'met' | 'missed' | 'unknown';

export interface ObjectiveResult {
  status: Verdict;
  targetSeconds: number;
  /** RPO: the data at risk, in seconds; RTO: the last drill's restore time. */
  actualSeconds: number | null;
  reason: string;
}

export interface Evaluation {
  ok: boolean;
  rpo: ObjectiveResult;
  rto: ObjectiveResult;
  archiverFailing: boolean;
  problems: string[];
  warnings: string[];
}

const ageOf = (time: string | Date | null | undefined, now: Date): number | null =>
  time ? Math.max(0, (now.getTime() - new Date(time).getTime()) / 1000) : null;

const iso = (time: string | Date | null | undefined): string => (time ? new Date(time).toISOString().replace(/\.\d+Z$/, 'Z') : '-');

/** An archiver failure newer than its last success: WAL is piling up on the server instead of in the archive. */
export function archiverFailing(archiver: ArchiverStats | undefined): boolean {
  if (!archiver?.lastFailedTime) return false;
  return !archiver.lastArchivedTime || new Date(archiver.lastFailedTime) > new Date(archiver.lastArchivedTime);
}

export function gapMessage(gap: GapFacts): string {
  const since = gap.since ? iso(gap.since) : `after ${gap.after}`;
  if (gap.untilBackup) {
    return `point-in-time recovery broken since ${since} until backup ${gap.untilBackup}: WAL segment ${gap.missing} is missing from the archive`;
  }
  return `point-in-time recovery broken since ${since}: WAL segment ${gap.missing} is missing from the archive`;
}

/** The verdicts: pure, so every rule can be tested without a server. */
export function evaluateStatus(facts: StatusFacts, now: Date): Evaluation {
  const problems: string[] = [];
  const warnings: string[] = [];
  const {rpoSeconds, rtoSeconds} = facts.objectives;
  const server = facts.server.reachable ? facts.server : undefined;
  const failing = archiverFailing(server?.archiver);

  if (!facts.repository.reachable) problems.push(`repository unreachable: ${facts.repository.error}`);
  if (!facts.server.reachable) problems.push(`server unreachable: ${facts.server.error}`);
  if (failing) {
    const archiver = server!.archiver!;
    problems.push(`archiver failing: ${archiver.lastFailedWal} failed at ${iso(archiver.lastFailedTime)} (${archiver.failedCount} failures), ` +
      `last success ${archiver.lastArchivedWal ?? 'never'}${archiver.lastArchivedTime ? ` at ${iso(archiver.lastArchivedTime)}` : ''}`);
  }
  if (facts.server.reachable && facts.server.systemId && facts.repositorySystemId && facts.server.systemId !== facts.repositorySystemId) {
    problems.push(`the repository belongs to database system ${facts.repositorySystemId}, the server is ${facts.server.systemId}: another cluster's repository`);
  }
  if (facts.uninitialised && facts.strategy !== 'dump') problems.push(facts.uninitialised);
  if (facts.gap) problems.push(gapMessage(facts.gap));
  if (facts.hole) problems.push(gapMessage(facts.hole));

  const rpo = evaluateRpo(facts, now, failing);
  if (rpo.status === 'missed') problems.push(`RPO ${formatDuration(rpoSeconds)} missed: ${rpo.reason}`);
  const rto = evaluateRto(facts, now);
  if (rto.status === 'missed') problems.push(`RTO ${formatDuration(rtoSeconds)} missed: ${rto.reason}`);

  // Replication is what the replica and patroni strategies promise; elsewhere it is only shown.
  const replication = server?.replication;
  const lagLimit = facts.maxLagSeconds ?? rpoSeconds;
  const lagName = facts.maxLagSeconds !== undefined ? 'replica.max_lag' : 'RPO';
  if (facts.strategy === 'replica' || facts.strategy === 'patroni') {
    if (replication?.role === 'primary') {
      const streaming = replication.standbys.filter((standby) => standby.state === 'streaming');
      if (streaming.length === 0) problems.push('no standby is streaming from the primary (pg_stat_replication)');
      for (const standby of streaming) {
        if (standby.replayLagSeconds !== null && standby.replayLagSeconds > lagLimit) {
          problems.push(`standby ${standby.applicationName} replays ${formatDuration(standby.replayLagSeconds)} behind (${lagName} ${formatDuration(lagLimit)})`);
        }
      }
    } else if (replication?.role === 'standby' && replication.replayDelaySeconds !== null && replication.replayDelaySeconds > lagLimit) {
      problems.push(`this standby replays ${formatDuration(replication.replayDelaySeconds)} behind the primary (${lagName} ${formatDuration(lagLimit)})`);
    }
    const named = facts.backupStandby;
    if (named && !named.probe.reachable) {
      warnings.push(`standby ${named.url} (replica.standby_url) is unreachable: ${named.probe.error}; backups fall back to the primary`);
    } else if (named?.probe.reachable && !named.probe.inRecovery) {
      warnings.push(`${named.url} (replica.standby_url) is not in recovery: it was promoted; point postgres.url at it and name a new standby`);
    } else if (named?.probe.reachable && named.probe.lagSeconds !== null && named.probe.lagSeconds > lagLimit) {
      problems.push(`standby ${named.url} (replica.standby_url) replays ${formatDuration(named.probe.lagSeconds)} behind (${lagName} ${formatDuration(lagLimit)}); backups fall back to the primary`);
    }
  }

  for (const job of ['backup', 'expire'] as const) {
    const result = facts.jobs[job];
    if (result && !result.ok) {
      warnings.push(`last ${job} job failed${result.finishedAt ? ` at ${iso(result.finishedAt)}` : ''}${result.error ? `: ${String(result.error)}` : ''}`);
    }
  }
  return {ok: problems.length === 0, rpo, rto, archiverFailing: failing, problems, warnings};
}

function evaluateRpo(facts: StatusFacts, now: Date, failing: boolean): ObjectiveResult {
  const target = facts.objectives.rpoSeconds;
  const result = (status: Verdict, actualSeconds: number | null, reason: string): ObjectiveResult =>
    ({status, targetSeconds: target, actualSeconds: actualSeconds === null ? null : Math.round(actualSeconds * 10) / 10, reason});
  if (facts.strategy === 'dump') {
    if (!facts.lastBackup) return facts.repository.reachable ? result('missed', null, 'no dump in the repository') : result('unknown', null, 'repository unreachable');
    const age = ageOf(facts.lastBackup.startTime, now)!;
    return result(age <= target ? 'met' : 'missed', age, `newest dump ${facts.lastBackup.id} taken ${formatDuration(age)} ago`);
  }
  if (!facts.repository.reachable) return result('missed', null, 'the repository cannot be read');
  if (!facts.lastBackup) return result('missed', null, 'no base backup: there is nothing to restore from');
  if (facts.gap) return result('missed', null, `WAL segment ${facts.gap.missing} is missing from the archive`);
  if (failing) return result('missed', ageOf(facts.lastArchived?.time, now), 'the archiver is failing');
  if (!facts.lastArchived) return result('missed', null, 'no WAL archived');
  if (facts.walFullyArchived) return result('met', 0, `all WAL written is archived (newest segment ${facts.lastArchived.walFile})`);
  const age = ageOf(facts.lastArchived.time, now);
  if (age === null) return result('unknown', null, `the repository gives no time for ${facts.lastArchived.walFile}`);
  return result(age <= target ? 'met' : 'missed', age, `newest archived WAL ${facts.lastArchived.walFile} is ${formatDuration(age)} old`);
}

function evaluateRto(facts: StatusFacts, _now: Date): ObjectiveResult {
  const target = facts.objectives.rtoSeconds;
  const result = (status: Verdict, actualSeconds: number | null, reason: string): ObjectiveResult =>
    ({status, targetSeconds: target, actualSeconds, reason});
  const drill = facts.lastDrill;
  const drillJob = facts.jobs.drill;
  // A failed drill run newer than the last report (or with no report at all) is the latest word.
  if (drillJob && !drillJob.ok && (!drill?.finishedAt || !drillJob.finishedAt || drillJob.finishedAt > drill.finishedAt)) {
    return result('missed', null, `the last drill run failed${drillJob.finishedAt ? ` at ${iso(drillJob.finishedAt)}` : ''}${drillJob.error ? `: ${String(drillJob.error)}` : ''}`);
  }
  if (!drill) return result('unknown', null, 'no drill report (run pgbk drill)');
  const when = drill.finishedAt ? ` at ${iso(drill.finishedAt)}` : '';
  if (!drill.ok) {
    const why = Array.isArray(drill.errors) && drill.errors.length > 0 ? `: ${String(drill.errors[0])}` : '';
    return result('missed', typeof drill.rtoSeconds === 'number' ? drill.rtoSeconds : null, `the last drill${when} failed${why}`);
  }
  if (typeof drill.rtoSeconds !== 'number') return result('unknown', null, `the last drill${when} did not measure its RTO`);
  const status = drill.rtoSeconds <= target ? 'met' : 'missed';
  return result(status, drill.rtoSeconds, `the last drill${when} restored in ${formatDuration(drill.rtoSeconds)}`);
}

// ---------------------------------------------------------------------------------------------------------------
// Gathering

export interface PolicyStatus {
  policy: string;
  file: string;
  strategy: Strategy;
  repository: string;
  ok: boolean;
  problems: string[];
  warnings: string[];
  objectives: {rpo: ObjectiveResult; rto: ObjectiveResult};
  lastBackup: {id: string; kind: string; startTime: string; stopTime: string; ageSeconds: number} | null;
  backupCount: number;
  archive: {lastSegment: string; lastSegmentTime: string | null; ageSeconds: number | null; segments: number; walFullyArchived: boolean | null; unarchivedBytes: number | null} | null;
  server: {reachable: boolean; error?: string; inRecovery?: boolean};
  archiver: (ArchiverStats & {failing: boolean; lastArchivedAgeSeconds: number | null}) | null;
  replication: Replication | null;
  /** replica: the standby named in replica.standby_url, as it reports itself. */
  backupStandby: {url: string; probe: StandbyProbe} | null;
  window: {earliestTime: string | null; latestTime: string | null; latestLsn: string | null; lastSegment: string | null} | null;
  gap: (GapFacts & {message: string}) | null;
  hole: (GapFacts & {message: string}) | null;
  jobs: Record<JobName, JobResult | null>;
  lastDrill: (DrillReport & {key: string}) | null;
  /** patroni: the cluster from GET /cluster (members, roles, timeline, lag) and the backup source. */
  patroni?: PatroniStatus;
  /** Subscriptions (state, lag) and replication slots (retained WAL) of the server; null when not readable. */
  logical: {subscriptions: SubscriptionStatus[]; slots: SlotStatus[]} | null;
  /** wal_streaming: the newest streamed object in the repository and how far behind the server it is. */
  streaming: StreamingStatus | null;
}

export interface StreamingStatus {
  slot: string;
  slotActive: boolean | null;
  segment: string | null;
  endLsn: string | null;
  uploadedAt: string | null;
  /** The server's current WAL position minus the streamed position (null: unknown). */
  lagBytes: number | null;
  /** 0 when nothing is behind; else the age of the newest streamed object. */
  lagSeconds: number | null;
}

export interface GatherOptions {
  now: () => Date;
  /** Reads commit times for the window's latest point (pg_waldump on the newest segments). */
  commitTimes?: boolean;
}

/** Everything status shows for one policy. Unreachable servers and repositories are findings, not exceptions. */
export async function gatherStatus(policy: Policy, repo: Repository, options: GatherOptions): Promise<PolicyStatus> {
  const warnings: string[] = [];
  const physical = policy.strategy !== 'dump';
  const facts: StatusFacts = {
    strategy: policy.strategy, objectives: policy.objectives, repository: {reachable: true},
    server: {reachable: false, error: 'not asked'}, jobs: {},
  };
  let catalog: BackupManifest[] = [];
  let window: RecoverableWindow | undefined;
  let segments = 0;
  const newestByTimeline = new Map<string, ArchivedWalFile>();
  let lastDrill: (DrillReport & {key: string}) | undefined;

  // The server first: which timeline it writes decides which archived segment counts.
  const probe = await probeServer(policy, physical);
  facts.server = probe.facts;
  if (policy.strategy === 'replica' && policy.replica?.standbyUrl) {
    facts.backupStandby = {url: redactUrl(policy.replica.standbyUrl), probe: await probeStandby(policy.replica.standbyUrl)};
  }
  if (policy.strategy === 'replica' && policy.replica?.maxLagSeconds !== undefined) facts.maxLagSeconds = policy.replica.maxLagSeconds;
  const server = facts.server.reachable ? facts.server : undefined;
  const position = probe.position;

  try {
    const identity = await readIdentity(repo);
    facts.repositorySystemId = identity?.systemId;
    if (!identity) facts.uninitialised = `${repo.description} is not initialised (no identity.json): run "pgbk init --policy ${policy.name}"; archive-push refuses to write until then`;
    catalog = identity ? await readCatalog(repo, (key, error) => warnings.push(`skipped ${key}: ${error.message}`), catalogScopeOf(policy)) : [];
    const kind = physical ? 'base' : 'dump';
    const mine = catalog.filter((backup) => backup.kind === kind);
    const last = mine.at(-1);
    if (last) facts.lastBackup = {id: last.id, kind: last.kind, startTime: last.startTime, stopTime: last.stopTime};
    if (physical) {
      for await (const file of listArchived(repo)) {
        if (parseWalFileName(file.walFile).kind !== 'segment') continue;
        segments++;
        newestByTimeline.set(file.walFile.slice(0, 8), file); // name order: the last one seen is the newest
      }
      const current = position?.currentWalFile;
      const newest = (current && newestByTimeline.get(current.slice(0, 8))) || [...newestByTimeline.values()].sort((a, b) => a.walFile.localeCompare(b.walFile)).at(-1);
      if (newest) {
        facts.lastArchived = {walFile: newest.walFile, time: newest.modified?.toISOString() ?? null};
        const insert = parseLsn(position?.currentLsn ?? '');
        if (current && position && insert !== undefined && facts.server.reachable && newest.walFile.slice(0, 8) === current.slice(0, 8)) {
          // WAL inserted past the end of the newest archived segment is at risk. Right after a segment switch the
          // insert position sits just past the next segment's page header: nothing written yet.
          const end = segmentStartLsn(newest.walFile, position.walSegmentSize) + BigInt(position.walSegmentSize) + LONG_PAGE_HEADER_BYTES;
          const unarchived = insert > end ? Number(insert - end) : 0;
          facts.server.unarchivedBytes = unarchived;
          facts.walFullyArchived = unarchived === 0;
        }
      }
      const base = catalog.filter((backup) => backup.kind === 'base');
      if (base.length > 0) {
        try {
          window = await computeWindow(repo, catalog, {binDir: policy.postgres.binDir, commitTimes: options.commitTimes ?? true});
        } catch (error) {
          warnings.push(`cannot read commit times for the recoverable window: ${(error as Error).message}`);
          window = await computeWindow(repo, catalog, {commitTimes: false});
        }
        if (window.gap) facts.gap = await gapFacts(repo, window.gap, base.at(-1)!);
        if (base.length > 1) {
          // computeWindow walks the archive from the newest backup; a hole between the oldest kept backup and
          // the newest one breaks recovery to the times in between.
          const fromOldest = await computeWindow(repo, [base[0]!], {commitTimes: false});
          const newestBase = base.at(-1)!;
          if (fromOldest.gap && fromOldest.gap.missing < newestBase.walStart!) {
            facts.hole = {...(await gapFacts(repo, fromOldest.gap, base[0]!)), untilBackup: newestBase.id};
          }
        }
      }
    }
    for (const job of JOBS) {
      const result = await readJson<JobResult>(repo, jobResultKey(job), warnings);
      if (result) facts.jobs[job] = result;
    }
    lastDrill = await readLastDrill(repo, warnings);
    if (lastDrill) facts.lastDrill = lastDrill;
  } catch (error) {
    if (!(error instanceof PgbkError) || error.code.startsWith('assert')) throw error;
    facts.repository = {reachable: false, error: `${repo.description}: ${error.message}`};
  }

  const now = options.now();
  const evaluation = evaluateStatus(facts, now);
  const streaming = policy.walStreaming?.enabled && facts.repository.reachable
    ? await streamingStatus(policy.walStreaming.slot, repo, probe, facts.lastArchived?.walFile, now).catch((error: Error) => {
      warnings.push(`cannot read the streamed WAL: ${error.message}`);
      return null;
    })
    : null;
  if (streaming && streaming.slotActive !== true) evaluation.warnings.push(`wal_streaming: the slot ${streaming.slot} is ${streaming.slotActive === false ? 'inactive' : 'missing'}: is pgbk wal-receive running?`);
  const patroni = policy.strategy === 'patroni' ? await gatherPatroniStatus(policy, {}, facts.repositorySystemId) : undefined;
  if (patroni) {
    const found = evaluatePatroni(patroni);
    evaluation.problems.push(...found.problems);
    evaluation.warnings.push(...found.warnings);
    evaluation.ok = evaluation.problems.length === 0;
  }
  if (probe.logical) evaluation.warnings.push(...logicalWarnings(probe.logical));
  const archiver = server?.archiver;
  const gapJson = (gap: GapFacts | undefined) => (gap ? {...gap, message: gapMessage(gap)} : null);
  return {
    policy: policy.name,
    file: policy.file,
    strategy: policy.strategy,
    repository: repo.description,
    ok: evaluation.ok,
    problems: evaluation.problems,
    warnings: [...warnings, ...evaluation.warnings],
    objectives: {rpo: evaluation.rpo, rto: evaluation.rto},
    lastBackup: facts.lastBackup ? {...facts.lastBackup, ageSeconds: round(ageOf(facts.lastBackup.stopTime, now)!)} : null,
    backupCount: catalog.filter((backup) => backup.kind === (physical ? 'base' : 'dump')).length,
    archive: facts.lastArchived
      ? {
        lastSegment: facts.lastArchived.walFile, lastSegmentTime: facts.lastArchived.time,
        ageSeconds: roundOrNull(ageOf(facts.lastArchived.time, now)), segments,
        walFullyArchived: facts.walFullyArchived ?? null,
        unarchivedBytes: server?.unarchivedBytes ?? null,
      }
      : null,
    server: facts.server.reachable ? {reachable: true, inRecovery: facts.server.inRecovery} : {reachable: false, error: facts.server.error},
    archiver: archiver ? {...archiver, failing: evaluation.archiverFailing, lastArchivedAgeSeconds: roundOrNull(ageOf(archiver.lastArchivedTime, now))} : null,
    replication: server?.replication ?? null,
    backupStandby: facts.backupStandby ?? null,
    window: window
      ? {
        earliestTime: window.earliestTime?.toISOString() ?? null, latestTime: window.latestTime?.toISOString() ?? null,
        latestLsn: window.latestLsn ?? null, lastSegment: window.lastSegment ?? null,
      }
      : null,
    gap: gapJson(facts.gap),
    hole: gapJson(facts.hole),
    jobs: {backup: facts.jobs.backup ?? null, expire: facts.jobs.expire ?? null, drill: facts.jobs.drill ?? null},
    lastDrill: lastDrill ?? null,
    ...(patroni ? {patroni} : {}),
    logical: probe.logical ?? null,
    streaming,
  };
}

async function streamingStatus(slot: string, repo: Repository, probe: ServerProbe, lastArchived: string | undefined, now: Date): Promise<StreamingStatus> {
  const slotRow = probe.logical?.slots.find((row) => row.name === slot);
  const current = probe.position?.currentWalFile ?? lastArchived;
  const timeline = current?.slice(0, 8);
  const newest = timeline ? await newestStreamed(repo, timeline, lastArchived?.startsWith(timeline) ? lastArchived.slice(0, 16) : undefined) : undefined;
  const segmentSize = probe.position?.walSegmentSize ?? 16 * 1024 * 1024;
  const end = newest ? segmentStartLsn(newest.segment, segmentSize) + BigInt(newest.endOffset) : undefined;
  const insert = parseLsn(probe.position?.currentLsn ?? '');
  const lagBytes = end !== undefined && insert !== undefined ? Math.max(0, Number(insert - end)) : null;
  const age = newest?.modified ? Math.max(0, (now.getTime() - newest.modified.getTime()) / 1000) : null;
  return {
    slot, slotActive: slotRow ? slotRow.active : null, segment: newest?.segment ?? null, endLsn: end !== undefined ? formatLsn(end) : null,
    uploadedAt: newest?.modified?.toISOString() ?? null, lagBytes, lagSeconds: lagBytes === 0 ? 0 : age === null ? null : round(age),
  };
}

/** An enabled subscription with no apply worker; an inactive slot holding WAL back. */
export function logicalWarnings(logical: {subscriptions: SubscriptionStatus[]; slots: SlotStatus[]}): string[] {
  const warnings: string[] = [];
  for (const sub of logical.subscriptions) {
    if (sub.enabled && !sub.running) warnings.push(`subscription ${sub.name} (database ${sub.database}) is enabled but no apply worker runs (pg_stat_subscription): see the server log`);
  }
  for (const slot of logical.slots) {
    if (!slot.active && slot.retainedBytes !== null && slot.retainedBytes > 0) {
      warnings.push(`replication slot ${slot.name} (${slot.type}) is inactive and retains ${formatBytes(slot.retainedBytes)} of WAL on the server` +
        `${slot.walStatus && slot.walStatus !== 'reserved' ? ` (wal_status ${slot.walStatus})` : ''}`);
    }
  }
  return warnings;
}


/** XLogLongPageHeaderData: the header at the start of every segment. */
const LONG_PAGE_HEADER_BYTES = 40n;

const round = (value: number): number => Math.round(value * 10) / 10;
const roundOrNull = (value: number | null): number | null => (value === null ? null : round(value));

interface ServerProbe {
  facts: ServerFacts;
  logical?: {subscriptions: SubscriptionStatus[]; slots: SlotStatus[]};
  position?: {currentWalFile: string | null; currentLsn: string | null; walSegmentSize: number};
}

async function probeServer(policy: Policy, physical: boolean): Promise<ServerProbe> {
  try {
    return await withClient(policy.postgres.url, async (client) => {
      const position = await walPosition(client);
      const {rows} = await client.query(`select system_identifier::text as system_id from pg_control_system()`);
      const facts: ServerFacts = {reachable: true, inRecovery: position.inRecovery, systemId: rows[0].system_id};
      if (physical) facts.archiver = await archiverStats(client);
      facts.replication = position.inRecovery
        ? {role: 'standby', replayDelaySeconds: (await standbyDelay(client)).replayDelaySeconds}
        // pg_basebackup's own walsenders are not standbys
        : {role: 'primary', standbys: (await replicationStats(client)).filter((row) => !row.applicationName.startsWith('pg_basebackup'))};
      const walSegmentSize = parseSizeSetting(position.walSegmentSize);
      const logical = await Promise.all([subscriptionStatus(client), slotStatus(client)])
        .then(([subscriptions, slots]) => ({subscriptions, slots}), () => undefined);
      return {facts, logical, position: {currentWalFile: position.currentWalFile, currentLsn: position.currentLsn, walSegmentSize}};
    });
  } catch (error) {
    return {facts: {reachable: false, error: (error as Error).message}};
  }
}


async function gapFacts(repo: Repository, gap: {missing: string; after: string}, backup: BackupManifest): Promise<GapFacts> {
  // The backup's own first segment missing: nothing after the backup's start can be reached.
  if (gap.missing === gap.after) return {missing: gap.missing, after: gap.after, since: backup.startTime};
  const [before] = await findArchived(repo, gap.after);
  return {missing: gap.missing, after: gap.after, since: before?.modified?.toISOString() ?? null};
}

async function readJson<T>(repo: Repository, key: string, warnings: string[]): Promise<T | undefined> {
  let body: string;
  try {
    body = await text(await repo.get(key));
  } catch (error) {
    if (error instanceof ObjectNotFoundError) return undefined;
    throw error;
  }
  try {
    const value = JSON.parse(body);
    if (value && typeof value === 'object' && typeof value.ok === 'boolean') return value as T;
    warnings.push(`ignored ${key}: no "ok" field`);
  } catch (error) {
    warnings.push(`ignored ${key}: not valid JSON (${(error as Error).message})`);
  }
  return undefined;
}

/** The newest drill report: keys sort as time. */
async function readLastDrill(repo: Repository, warnings: string[]): Promise<(DrillReport & {key: string}) | undefined> {
  let newest: string | undefined;
  for await (const object of repo.list(DRILL_PREFIX)) {
    if (object.key.endsWith('.json') && (!newest || object.key > newest)) newest = object.key;
  }
  if (!newest) return undefined;
  const report = await readJson<DrillReport>(repo, newest, warnings);
  return report ? {...report, key: newest} : undefined;
}
