// /metrics: Prometheus text format, from the repositories (backups, archived WAL, job records) and the
// scheduler's own runs. What is read from a repository is cached (15 s by default) and bounded in time, so
// a scrape never lists a whole archive: manifests are read once (they never change) and the newest archived
// WAL is found by probing timeline and log folders forward from the last one seen.

import {readManifest} from '../backup/manifest.js';
import type {Policy} from '../policy/types.js';
import {text} from 'node:stream/consumers';
import type {DrillReport} from '../drill/report.js';
import {BACKUP_PREFIX, DRILL_PREFIX, MANIFEST_NAME, walTimelineKey} from '../storage/layout.js';
import type {Repository} from '../storage/repository.js';
import {listArchived} from '../wal/archive.js';
import {readJobResult, JOBS, type JobResult} from './jobs.js';
import {readFileSync} from 'node:fs';
import {readdir, readFile} from 'node:fs/promises';

export interface Sample {
  labels: Record<string, string>;
  value: number;
}

export interface MetricFamily {
  name: string;
  help: string;
  type: 'gauge' | 'counter';
  samples: Sample[];
}

function escapeLabel(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
}

function formatValue(value: number): string {
  if (Number.isNaN(value)) return 'NaN';
  if (value === Infinity) return '+Inf';
  if (value === -Infinity) return '-Inf';
  return String(value);
}

/** The Prometheus text exposition format (version 0.0.4). Families without samples are left out. */
export function formatPrometheus(families: MetricFamily[]): string {
  const lines: string[] = [];
  for (const family of families) {
    if (family.samples.length === 0) continue;
    lines.push(`# HELP ${family.name} ${family.help.replace(/\\/g, '\\\\').replace(/\n/g, '\\n')}`);
    lines.push(`# TYPE ${family.name} ${family.type}`);
    for (const sample of family.samples) {
      const labels = Object.entries(sample.labels).map(([name, value]) => `${name}="${escapeLabel(value)}"`).join(',');
      lines.push(`${family.name}${labels ? `{${labels}}` : ''} ${formatValue(sample.value)}`);
    }
  }
  return `${lines.join('\n')}\n`;
}

/** pgbk's version, from its package.json (dist/scheduler/ and src/scheduler/ are both two levels down). */
function packageVersion(): string {
  try {
    return String((JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {version?: unknown}).version ?? 'unknown');
  } catch {
    return 'unknown';
  }
}

const VERSION = packageVersion();

/** pgbk_build_info: always 1; the version of pgbk and of Node.js as labels (the convention of *_build_info). */
export function buildInfoFamily(): MetricFamily {
  return {name: 'pgbk_build_info', help: 'Always 1: the pgbk and Node.js versions as labels', type: 'gauge',
    samples: [{labels: {version: VERSION, node_version: process.version}, value: 1}]};
}

/** pgbk_job_runs_total: runs this scheduler finished, by result (every policy and job from 0, so rate() works at once). */
export function jobRunsFamily(policies: string[], counts: Map<string, number>): MetricFamily {
  const family: MetricFamily = {name: 'pgbk_job_runs_total', help: 'Job runs this scheduler finished, by result (success or failure)', type: 'counter', samples: []};
  for (const policy of policies) {
    for (const job of JOBS) {
      for (const result of ['success', 'failure']) family.samples.push({labels: {policy, job, result}, value: counts.get(`${policy}\0${job}\0${result}`) ?? 0});
    }
  }
  return family;
}

/**
 * The standard process metrics (the names of Prometheus' client libraries: process_cpu_seconds_total,
 * process_resident_memory_bytes, process_start_time_seconds, process_open_fds, process_max_fds...) and the
 * Node.js heap, read from the process and /proc/self (Linux).
 */
export async function processFamilies(): Promise<MetricFamily[]> {
  const gauge = (name: string, help: string, value: number | undefined): MetricFamily =>
    ({name, help, type: 'gauge', samples: value === undefined ? [] : [{labels: {}, value}]});
  const counter = (name: string, help: string, value: number): MetricFamily => ({name, help, type: 'counter', samples: [{labels: {}, value}]});
  const cpu = process.cpuUsage();
  const memory = process.memoryUsage();
  const openFds = await readdir('/proc/self/fd').then((entries) => entries.length, () => undefined);
  const maxFds = await readFile('/proc/self/limits', 'utf8').then((text) => Number(/^Max open files\s+(\d+)/m.exec(text)?.[1]) || undefined, () => undefined);
  return [
    counter('process_cpu_user_seconds_total', 'User CPU time spent in seconds', cpu.user / 1e6),
    counter('process_cpu_system_seconds_total', 'System CPU time spent in seconds', cpu.system / 1e6),
    counter('process_cpu_seconds_total', 'Total user and system CPU time spent in seconds', (cpu.user + cpu.system) / 1e6),
    gauge('process_start_time_seconds', 'Start time of the process since the Unix epoch in seconds', Math.round(Date.now() / 1000 - process.uptime())),
    gauge('process_resident_memory_bytes', 'Resident memory size in bytes', memory.rss),
    gauge('process_open_fds', 'Number of open file descriptors', openFds),
    gauge('process_max_fds', 'Maximum number of open file descriptors', maxFds),
    gauge('nodejs_heap_size_total_bytes', 'Process heap size from Node.js in bytes', memory.heapTotal),
    gauge('nodejs_heap_size_used_bytes', 'Process heap size used from Node.js in bytes', memory.heapUsed),
    gauge('nodejs_external_memory_bytes', 'Node.js external memory size in bytes', memory.external),
  ];
}

/** What a scrape reports about one policy. */
export interface PolicyMetrics {
  policy: string;
  strategy: string;
  rpoSeconds: number;
  jobs: Partial<Record<string, JobResult>>;
  running: string[];
  backups?: number;
  backupBytes?: number;
  newestBackupStop?: Date;
  newestArchivedWal?: Date;
  /** The newest drill report (drills/<id>.json), when there is one. */
  lastDrill?: LastDrill;
  /** Reading the repository failed or took too long (then the repository values are the last ones known). */
  collectError: boolean;
}

export interface LastDrill {
  ok: boolean;
  finishedAt: Date;
  rtoSeconds: number | null;
  rpoSeconds: number | null;
  rtoMet: boolean;
  rpoMet: boolean;
}

/**
 * Whether the RPO objective is met, kept simple: for dump, the newest dump is younger than the RPO; for the
 * WAL-archiving strategies, there is a backup and the newest archived WAL file is younger than the RPO (an
 * idle server needs archive_timeout below the RPO, or this reports a miss).
 */
export function rpoMet(metrics: PolicyMetrics, now: Date): boolean {
  const age = (date?: Date) => (date ? (now.getTime() - date.getTime()) / 1000 : Infinity);
  if (!metrics.backups) return false;
  if (metrics.strategy === 'dump') return age(metrics.newestBackupStop) <= metrics.rpoSeconds;
  return age(metrics.newestArchivedWal) <= metrics.rpoSeconds;
}

const seconds = (date: Date) => Math.round(date.getTime() / 1000);

export function buildFamilies(policies: PolicyMetrics[], now: Date): MetricFamily[] {
  const family = (name: string, help: string): MetricFamily => ({name, help, type: 'gauge', samples: []});
  const lastSuccess = family('pgbk_job_last_success_timestamp_seconds', 'Unix time the job last finished successfully');
  const lastDuration = family('pgbk_job_last_duration_seconds', 'Duration of the last run of the job');
  const lastResult = family('pgbk_job_last_result', 'Whether the last run of the job succeeded (1) or failed (0)');
  const running = family('pgbk_job_running', 'Whether this scheduler is running the job now');
  const backups = family('pgbk_backups', 'Complete backups (with a manifest) in the repository');
  const bytes = family('pgbk_backup_bytes', 'Bytes stored by the complete backups in the repository');
  const newest = family('pgbk_backup_last_success_timestamp_seconds', 'Unix time the newest complete backup finished (became consistent)');
  const walTime = family('pgbk_wal_last_archived_timestamp_seconds', 'Unix time the newest archived WAL file was stored in the repository');
  const objective = family('pgbk_objective_met', 'Whether the objective is met (rpo: a backup exists and the newest archived WAL, or dump for the dump strategy, is younger than the RPO)');
  const errors = family('pgbk_metrics_collect_error', 'Reading the repository for these metrics failed or timed out (1)');
  const drillOk = family('pgbk_drill_last_ok', 'Whether the newest restore drill passed (1) or failed (0)');
  const drillTime = family('pgbk_drill_last_timestamp_seconds', 'Unix time the newest restore drill finished');
  const drillRto = family('pgbk_drill_rto_seconds', 'RTO the newest restore drill measured: start until the restored server accepted writes');
  const drillRpo = family('pgbk_drill_rpo_seconds', 'RPO the newest restore drill achieved: target minus the last replayed commit');
  for (const p of policies) {
    for (const job of JOBS) {
      const result = p.jobs[job];
      const labels = {policy: p.policy, job};
      if (result) {
        if (result.lastSuccessAt) lastSuccess.samples.push({labels, value: seconds(new Date(result.lastSuccessAt))});
        lastDuration.samples.push({labels, value: result.durationMs / 1000});
        lastResult.samples.push({labels, value: result.ok ? 1 : 0});
      }
    }
    for (const job of p.running) running.samples.push({labels: {policy: p.policy, job}, value: 1});
    const labels = {policy: p.policy};
    if (p.backups !== undefined) backups.samples.push({labels, value: p.backups});
    if (p.backupBytes !== undefined) bytes.samples.push({labels, value: p.backupBytes});
    if (p.newestBackupStop) newest.samples.push({labels, value: seconds(p.newestBackupStop)});
    if (p.newestArchivedWal) walTime.samples.push({labels, value: seconds(p.newestArchivedWal)});
    objective.samples.push({labels: {policy: p.policy, objective: 'rpo'}, value: rpoMet(p, now) ? 1 : 0});
    if (p.lastDrill) {
      // RTO is proven only by a drill: without one, no sample (unknown), rather than a false 0 or 1.
      objective.samples.push({labels: {policy: p.policy, objective: 'rto'}, value: p.lastDrill.ok && p.lastDrill.rtoMet ? 1 : 0});
      drillOk.samples.push({labels, value: p.lastDrill.ok ? 1 : 0});
      drillTime.samples.push({labels, value: seconds(p.lastDrill.finishedAt)});
      if (p.lastDrill.rtoSeconds !== null) drillRto.samples.push({labels, value: p.lastDrill.rtoSeconds});
      if (p.lastDrill.rpoSeconds !== null) drillRpo.samples.push({labels, value: p.lastDrill.rpoSeconds});
    }
    errors.samples.push({labels, value: p.collectError ? 1 : 0});
  }
  return [lastSuccess, lastDuration, lastResult, running, backups, bytes, newest, walTime, objective, drillOk, drillTime, drillRto, drillRpo, errors];
}

// ---------------------------------------------------------------------------------------------------------

export interface PolicyHandle {
  policy: Policy;
  repo: Repository;
}

interface RepoState {
  manifests: Map<string, {storedBytes: number; stopTime: Date; timeline?: number; walStop?: string}>;
  wal?: {timeline: number; log: number};
  values?: Omit<PolicyMetrics, 'running' | 'collectError' | 'policy' | 'strategy' | 'rpoSeconds'>;
  collectedAt?: number;
  inFlight?: Promise<void>;
}

export interface CollectorOptions {
  handles: () => PolicyHandle[];
  /** Jobs this scheduler runs now, per policy. */
  running: (policy: string) => string[];
  now?: () => Date;
  cacheMs?: number;
  timeoutMs?: number;
}

export class MetricsCollector {
  private readonly states = new Map<string, RepoState>();
  /** Results of runs this scheduler finished: shown at once, before the cached repository values catch up. */
  private readonly recent = new Map<string, JobResult>();
  /** pgbk_job_runs_total: runs this scheduler finished, by policy, job and result. */
  private readonly runCounts = new Map<string, number>();

  constructor(private readonly options: CollectorOptions) {}

  /** A run this scheduler finished (counted), or its record as written to the repository (counted once). */
  noteResult(result: JobResult, count = true): void {
    this.recent.set(`${result.policy}\0${result.job}`, result);
    if (!count) return;
    const key = `${result.policy}\0${result.job}\0${result.ok ? 'success' : 'failure'}`;
    this.runCounts.set(key, (this.runCounts.get(key) ?? 0) + 1);
  }

  async render(): Promise<string> {
    const now = this.options.now?.() ?? new Date();
    const handles = this.options.handles();
    const metrics = await Promise.all(handles.map((handle) => this.policyMetrics(handle, now)));
    return formatPrometheus([
      buildInfoFamily(), ...buildFamilies(metrics, now), jobRunsFamily(handles.map((handle) => handle.policy.name), this.runCounts), ...await processFamilies(),
    ]);
  }

  private async policyMetrics(handle: PolicyHandle, now: Date): Promise<PolicyMetrics> {
    const {policy} = handle;
    const key = `${policy.name}\0${policy.repository.url}`;
    let state = this.states.get(key);
    if (!state) this.states.set(key, (state = {manifests: new Map()}));
    const cacheMs = this.options.cacheMs ?? 15_000;
    let collectError = false;
    if (state.collectedAt === undefined || now.getTime() - state.collectedAt >= cacheMs) {
      const current = state;
      current.inFlight ??= collect(handle.repo, current).finally(() => {
        current.inFlight = undefined;
      });
      const timeoutMs = this.options.timeoutMs ?? 10_000;
      let timer: NodeJS.Timeout | undefined;
      try {
        await Promise.race([
          current.inFlight,
          new Promise((_resolve, reject) => {
            timer = setTimeout(() => reject(new Error('timed out')), timeoutMs);
          }),
        ]);
        current.collectedAt = now.getTime();
      } catch {
        collectError = true;
      } finally {
        clearTimeout(timer);
      }
    }
    const values = state.values ?? {jobs: {}};
    const jobs: Partial<Record<string, JobResult>> = {...values.jobs};
    for (const job of JOBS) {
      const mine = this.recent.get(`${policy.name}\0${job}`);
      const stored = jobs[job];
      if (mine && (!stored || stored.finishedAt <= mine.finishedAt)) jobs[job] = mine;
    }
    return {
      ...values,
      jobs,
      policy: policy.name,
      strategy: policy.strategy,
      rpoSeconds: policy.objectives.rpoSeconds,
      running: this.options.running(policy.name),
      collectError,
    };
  }
}

async function collect(repo: Repository, state: RepoState): Promise<void> {
  // Backups: list the manifests, read only those not seen before (a manifest never changes).
  const ids = new Set<string>();
  for await (const object of repo.list(BACKUP_PREFIX)) {
    const parts = object.key.slice(BACKUP_PREFIX.length).split('/');
    if (parts.length === 2 && parts[1] === MANIFEST_NAME) ids.add(parts[0]!);
  }
  for (const id of state.manifests.keys()) if (!ids.has(id)) state.manifests.delete(id);
  for (const id of ids) {
    if (state.manifests.has(id)) continue;
    try {
      const manifest = await readManifest(repo, id);
      state.manifests.set(id, {
        storedBytes: manifest.storedBytes,
        stopTime: new Date(manifest.stopTime),
        timeline: manifest.stopTimeline ?? manifest.timeline,
        walStop: manifest.walStop,
      });
    } catch {
      // expired meanwhile, or corrupt (verify reports that): not counted
    }
  }
  const manifests = [...state.manifests.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, m]) => m);
  const newest = manifests.at(-1);
  const jobs: Partial<Record<string, JobResult>> = {};
  for (const job of JOBS) {
    const result = await readJobResult(repo, job);
    if (result) jobs[job] = result;
  }
  const newestArchivedWal = await newestArchived(repo, state, newest);
  state.values = {
    lastDrill: await newestDrill(repo),
    jobs,
    backups: manifests.length,
    backupBytes: manifests.reduce((sum, m) => sum + m.storedBytes, 0),
    newestBackupStop: newest?.stopTime,
    newestArchivedWal,
  };
}

/** The newest drill report (ids sort as time; a drill a week makes this listing small). */
async function newestDrill(repo: Repository): Promise<LastDrill | undefined> {
  let newestKey: string | undefined;
  for await (const object of repo.list(DRILL_PREFIX)) if (object.key.endsWith('.json') && (!newestKey || object.key > newestKey)) newestKey = object.key;
  if (!newestKey) return undefined;
  try {
    const report = JSON.parse(await text(await repo.get(newestKey))) as Partial<DrillReport>;
    return {
      ok: report.ok === true,
      finishedAt: new Date(report.finishedAt ?? 0),
      rtoSeconds: typeof report.rtoSeconds === 'number' ? report.rtoSeconds : null,
      rpoSeconds: typeof report.rpoSeconds === 'number' ? report.rpoSeconds : null,
      rtoMet: report.objectives?.rtoMet === true,
      rpoMet: report.objectives?.rpoMet === true,
    };
  } catch {
    return undefined; // removed meanwhile, or unreadable: status and verify report that
  }
}

const hex8 = (n: number) => n.toString(16).toUpperCase().padStart(8, '0');

async function hasAny(repo: Repository, prefix: string): Promise<boolean> {
  for await (const _object of repo.list(prefix)) return true;
  return false;
}

/**
 * The time the newest archived WAL file was stored. Starts from the timeline and log folder found last
 * time (or the newest backup's), moves to newer timelines while their folders exist, then lists log
 * folders forward while they hold files; a full listing of one timeline only when there is no hint.
 */
async function newestArchived(repo: Repository, state: RepoState, newestBackup?: {timeline?: number; walStop?: string}): Promise<Date | undefined> {
  let timeline = state.wal?.timeline ?? newestBackup?.timeline ?? 1;
  let log = state.wal?.log ?? (newestBackup?.walStop ? Number.parseInt(newestBackup.walStop.slice(8, 16), 16) : undefined);
  while (await hasAny(repo, walTimelineKey(hex8(timeline + 1)))) timeline++;
  let newest: Date | undefined;
  const latestIn = async (prefix: string): Promise<{date?: Date; count: number}> => {
    let date: Date | undefined;
    let count = 0;
    for await (const object of repo.list(prefix)) {
      count++;
      if (object.modified && (!date || object.modified > date)) date = object.modified;
    }
    return {date, count};
  };
  const folder = (n: number) => `${walTimelineKey(hex8(timeline))}${hex8(timeline)}${hex8(n)}/`;
  let found: {date?: Date; count: number} = log === undefined ? {count: 0} : await latestIn(folder(log));
  if (log === undefined || found.count === 0) {
    // No usable hint: one listing of the whole timeline.
    let lastWal: string | undefined;
    for await (const file of listArchived(repo, hex8(timeline))) {
      if (file.modified && (!newest || file.modified > newest)) newest = file.modified;
      if (!file.walFile.endsWith('.history')) lastWal = file.walFile;
    }
    if (lastWal) state.wal = {timeline, log: Number.parseInt(lastWal.slice(8, 16), 16)};
    return newest;
  }
  newest = found.date;
  for (let next = log + 1; ; next++) {
    found = await latestIn(folder(next));
    if (found.count === 0) break;
    log = next;
    if (found.date && (!newest || found.date > newest)) newest = found.date;
  }
  state.wal = {timeline, log};
  return newest;
}
