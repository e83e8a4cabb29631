// pgbk schedule: every policy's backup, expire and drill jobs at their cron times (node-cron), each run a child
// process under a lease in the policy's repository; SIGTERM/SIGINT stop gracefully, SIGHUP reloads the
// policies; /metrics and /health over HTTP.

import {createServer, type Server} from 'node:http';
import cron, {type ScheduledTask, type Logger as CronLogger} from 'node-cron';
import {PgbkError, PolicyError} from '../errors.js';
import type {Policy} from '../policy/types.js';
import {openRepository} from '../storage/open.js';
import type {Repository} from '../storage/repository.js';
import {
  describeFailure, descendants, JOBS, parseOutput, removeUnfinishedBackups, signalPids, startJob, writeJobResult,
  type JobName, type JobResult,
} from './jobs.js';
import {LEASE_ENV, leaseEnvValue} from '../backup/lock.js';
import {acquireLease, holderId, keepLeaseAlive, releaseLease, type HeldLease} from './lease.js';
import type {Log} from './log.js';
import {MetricsCollector} from './metrics.js';
import {loadAllPolicies, policyFiles, sharedRepositories} from './policies.js';
import {loadPolicy} from '../policy/load.js';

/** The scheduler could not start (listen address in use…) or failed outside any job. */
export class SchedulerError extends PgbkError {
  readonly code = 'schedule.failed';
}

export interface SchedulerOptions {
  policiesDir: string;
  env: NodeJS.ProcessEnv;
  cwd: string;
  log: Log;
  listen?: {host: string; port: number};
  /** At shutdown, how long running jobs may take before their programs get SIGTERM. */
  graceMs?: number;
  /** Lease expiry; renewed every quarter of it while a job runs. */
  leaseTtlMs?: number;
  /** Between writing a lease claim and reading it back. */
  settleMs?: number;
  /** Overrides the policies' schedule.timeout (tests). */
  jobTimeoutMs?: Partial<Record<JobName, number>>;
  /** bin/pgbk to run jobs with (default: this installation's). */
  bin?: string;
  now?: () => Date;
}

interface PolicyEntry {
  policy: Policy;
  repo: Repository;
  tasks: ScheduledTask[];
  fingerprint: string;
}

interface Run {
  policy: string;
  job: JobName;
  tick: string;
  startedAt?: Date;
  pid?: number;
  /** The scheduler is stopping this run's programs. */
  terminated: boolean;
  /** Why the scheduler stopped this run before its end (lease lost, timeout), if it did. */
  stoppedBecause?: string;
  exited?: boolean;
}

const DEFAULT_GRACE_MS = 60_000;
const DEFAULT_LEASE_TTL_MS = 5 * 60_000;
const DEFAULT_SETTLE_MS = 2_000;
const TERM_WAIT_MS = 15_000;
const KILL_WAIT_MS = 5_000;

export class Scheduler {
  readonly holder = holderId();
  private readonly entries = new Map<string, PolicyEntry>();
  private readonly retired: Repository[] = [];
  private readonly runs = new Map<string, Run>();
  private readonly metrics: MetricsCollector;
  private readonly startedAt: Date;
  private server?: Server;
  private stopping = false;
  private stopPromise?: Promise<void>;
  private graceDeadline = Infinity;
  private lastReload?: {at: string; ok: boolean; errors: string[]};
  private readonly now: () => Date;
  private readonly cronLogger: CronLogger;
  private resolveStopped!: () => void;
  /** Resolves once the scheduler has stopped (after shutdown()). */
  readonly stopped = new Promise<void>((resolve) => {
    this.resolveStopped = resolve;
  });

  constructor(private readonly options: SchedulerOptions) {
    this.now = options.now ?? (() => new Date());
    this.startedAt = this.now();
    this.metrics = new MetricsCollector({
      handles: () => [...this.entries.values()].map(({policy, repo}) => ({policy, repo})),
      running: (policy) => [...this.runs.values()].filter((run) => run.policy === policy && run.startedAt).map((run) => run.job),
      now: this.now,
    });
    const log = options.log;
    this.cronLogger = {
      info: () => undefined,
      debug: () => undefined,
      warn: (message) => log({event: 'cron', level: 'warn', message}),
      error: (message, err) => log({event: 'cron', level: 'error', message: message instanceof Error ? message.message : message, error: err?.message}),
    };
  }

  /** Loads every policy (any invalid one: PolicyError, exit 2), schedules their jobs, starts listening. */
  async start(): Promise<void> {
    cron.setLogger(this.cronLogger);
    const {policies, failures} = await loadAllPolicies(this.options.policiesDir, this.options.env, this.options.cwd);
    if (failures.length > 0) {
      throw new PolicyError(failures.map(({error}) => error.message).join('\n'),
        'fix the policy file (or move it out of the policies directory); the scheduler starts only when every policy is valid');
    }
    if (policies.length === 0) {
      throw new PolicyError(`no policy files (*.yaml, *.yml) in ${this.options.policiesDir}`, 'add one, or point --policies / PGBK_POLICIES at the right directory');
    }
    for (const names of sharedRepositories(policies)) {
      this.options.log({event: 'warning', level: 'warn', message: `policies ${names.join(', ')} share one repository, and so its leases and job records`});
    }
    if (this.options.listen) await this.listen(this.options.listen);
    for (const policy of policies) await this.install(policy);
    this.options.log({
      event: 'started', pid: process.pid, holder: this.holder, policiesDir: this.options.policiesDir,
      policies: policies.map((policy) => policy.name),
      listen: this.options.listen ? `${this.options.listen.host}:${this.options.listen.port}` : undefined,
    });
  }

  private async install(policy: Policy): Promise<void> {
    const old = this.entries.get(policy.name);
    const fingerprint = JSON.stringify(policy);
    if (old?.fingerprint === fingerprint) return;
    let repo: Repository;
    if (old && JSON.stringify(old.policy.repository) === JSON.stringify(policy.repository)) {
      repo = old.repo;
    } else {
      repo = await openRepository(policy.repository);
      if (old) this.retired.push(old.repo); // a running job may still use it; closed at shutdown
    }
    if (old) this.unschedule(old);
    const entry: PolicyEntry = {policy, repo, tasks: [], fingerprint};
    for (const job of JOBS) {
      const expression = policy.schedule[job];
      if (!expression) continue;
      const task = cron.schedule(expression, (context) => {
        void this.tick(policy.name, job, context.date);
      }, {name: `${policy.name}/${job}`, logger: this.cronLogger, missedExecutionTolerance: 60_000, timezone: policy.schedule.timezone});
      task.on('execution:missed', (context) => {
        this.options.log({event: 'skipped', level: 'warn', policy: policy.name, job, tick: slotOf(context.date).toISOString(), reason: 'missed (the scheduler was busy or the clock jumped)'});
      });
      entry.tasks.push(task);
      this.options.log({event: 'scheduled', policy: policy.name, job, cron: expression, next: task.getNextRun()?.toISOString()});
    }
    if (entry.tasks.length === 0) this.options.log({event: 'scheduled', level: 'warn', policy: policy.name, message: 'no schedule: section, no jobs'});
    this.entries.set(policy.name, entry);
  }

  private unschedule(entry: PolicyEntry): void {
    for (const task of entry.tasks) void task.destroy();
    entry.tasks = [];
  }

  /** SIGHUP: re-reads the policies directory; a file that no longer loads keeps its old version. */
  async reload(): Promise<void> {
    if (this.stopping) return;
    const errors: string[] = [];
    const seen = new Set<string>();
    const changed: string[] = [];
    let files: string[];
    try {
      files = await policyFiles(this.options.policiesDir);
    } catch (error) {
      this.options.log({event: 'reload', level: 'error', error: (error as Error).message, message: 'kept every policy as it was'});
      return;
    }
    for (const file of files) {
      const name = file.slice(file.lastIndexOf('/') + 1).replace(/\.ya?ml$/, '');
      seen.add(name);
      let policy: Policy;
      try {
        policy = await loadPolicy({policy: file, env: this.options.env, cwd: this.options.cwd});
      } catch (error) {
        errors.push((error as Error).message);
        this.options.log({
          event: 'reload', level: 'error', policy: name, file, error: (error as Error).message,
          message: this.entries.has(name) ? 'kept the previous version of this policy' : 'policy not loaded',
        });
        continue;
      }
      const before = this.entries.get(name)?.fingerprint;
      try {
        await this.install(policy);
      } catch (error) {
        errors.push((error as Error).message);
        this.options.log({event: 'reload', level: 'error', policy: name, file, error: (error as Error).message});
        continue;
      }
      if (before !== this.entries.get(name)?.fingerprint) changed.push(name);
    }
    const removed: string[] = [];
    for (const [name, entry] of this.entries) {
      if (seen.has(name)) continue;
      this.unschedule(entry);
      this.retired.push(entry.repo);
      this.entries.delete(name);
      removed.push(name);
      this.options.log({event: 'unscheduled', policy: name, message: 'policy file removed'});
    }
    this.lastReload = {at: this.now().toISOString(), ok: errors.length === 0, errors};
    this.options.log({
      event: 'reload', level: errors.length ? 'warn' : 'info', policies: [...this.entries.keys()], changed, removed,
      errors: errors.length,
    });
  }

  private async tick(policyName: string, job: JobName, date: Date): Promise<void> {
    const entry = this.entries.get(policyName);
    if (!entry || this.stopping) return;
    const tick = slotOf(date);
    const key = `${policyName}/${job}`;
    const base = {policy: policyName, job, tick: tick.toISOString()};
    const busy = this.runs.get(key);
    if (busy) {
      this.options.log({event: 'skipped', ...base, reason: `still running (the run of ${busy.tick})`});
      return;
    }
    const run: Run = {policy: policyName, job, tick: tick.toISOString(), terminated: false};
    this.runs.set(key, run);
    const {policy, repo} = entry;
    const ttlMs = this.options.leaseTtlMs ?? DEFAULT_LEASE_TTL_MS;
    let lease: HeldLease | undefined;
    try {
      const claim = await acquireLease(repo, policy.name, job, {
        holder: this.holder, ttlMs, settleMs: this.options.settleMs ?? DEFAULT_SETTLE_MS, tick, now: this.now,
        purpose: `scheduled ${job}`,
      });
      if (!claim.acquired) {
        const reason = claim.reason === 'held' ? 'another run holds the lease'
          : claim.reason === 'tick-taken' ? 'this time slot was taken by another scheduler' : 'another scheduler won the lease';
        this.options.log({event: 'skipped', ...base, reason, holder: claim.current?.holder, until: claim.reason === 'held' ? claim.current?.expiresAt : undefined});
        return;
      }
      lease = claim.lease;
      if (this.stopping) {
        this.options.log({event: 'skipped', ...base, reason: 'the scheduler is stopping'});
        return;
      }
      await this.runJob(entry.policy, repo, run, lease, ttlMs);
    } catch (error) {
      this.options.log({event: 'failure', ...base, error: `scheduler: ${(error as Error).message}`});
    } finally {
      if (lease) {
        await releaseLease(repo, lease, this.now()).catch((error: Error) => {
          this.options.log({event: 'warning', level: 'warn', ...base, message: `cannot release the lease: ${error.message}`});
        });
      }
      this.runs.delete(key);
    }
  }

  private async runJob(policy: Policy, repo: Repository, run: Run, lease: HeldLease, ttlMs: number): Promise<void> {
    const base = {policy: policy.name, job: run.job, tick: run.tick};
    const startedAt = this.now();
    run.startedAt = startedAt;
    // The child runs under this lease: `pgbk backup` checks it holds it rather than taking the lock itself.
    const env = {...this.options.env, [LEASE_ENV]: leaseEnvValue(lease)};
    const started = startJob(run.job, policy.file, {env, bin: this.options.bin, cwd: this.options.cwd});
    run.pid = started.child.pid;
    this.options.log({event: 'start', ...base, pid: run.pid});
    // A run that loses its lease stops: another scheduler may be running the job by now.
    const keeper = keepLeaseAlive(repo, lease, ttlMs, {
      now: this.now,
      onLost: (why) => {
        this.options.log({event: 'lease-lost', level: 'error', ...base, message: `${why}; stopping this run`});
        void this.stopRun(run, `lease lost: ${why}`);
      },
      onError: (error) => this.options.log({event: 'warning', level: 'warn', ...base, message: `cannot renew the lease: ${error.message}`}),
    });
    const timeoutMs = (this.options.jobTimeoutMs?.[run.job] ?? policy.jobTimeoutSeconds[run.job] * 1000);
    const timer = setTimeout(() => {
      this.options.log({event: 'timeout', level: 'error', ...base, timeoutMs, message: `still running after ${Math.round(timeoutMs / 1000)}s (schedule.timeout.${run.job}); stopping it`});
      void this.stopRun(run, `timed out after ${Math.round(timeoutMs / 1000)}s (schedule.timeout.${run.job})`);
    }, timeoutMs);
    const outcome = await started.done.finally(() => {
      run.exited = true;
      keeper.stop();
      clearTimeout(timer);
    });
    const ok = outcome.exitCode === 0 && !outcome.spawnError;
    if (run.job === 'backup' && !ok && (outcome.signal || run.terminated)) {
      // A killed backup cannot clean up after itself: remove what it left without a manifest.
      const removed = await removeUnfinishedBackups(repo, startedAt).catch((error: Error) => {
        this.options.log({event: 'warning', level: 'warn', ...base, message: `cannot remove an unfinished backup: ${error.message}`});
        return [];
      });
      if (removed.length > 0) this.options.log({event: 'cleanup', ...base, removed, message: 'removed unfinished backups'});
    }
    const finishedAt = this.now();
    const result: JobResult = {
      job: run.job,
      policy: policy.name,
      tick: run.tick,
      holder: this.holder,
      startedAt: startedAt.toISOString(),
      finishedAt: finishedAt.toISOString(),
      ok,
      durationMs: finishedAt.getTime() - startedAt.getTime(),
      exitCode: outcome.exitCode,
      signal: outcome.signal ?? undefined,
      error: ok ? undefined : `${run.stoppedBecause ? `${run.stoppedBecause}: ` : ''}${describeFailure(outcome, run.terminated && !run.stoppedBecause)}`,
      output: parseOutput(outcome.stdout),
    };
    this.options.log({
      event: ok ? 'success' : 'failure', ...base, durationMs: result.durationMs, exitCode: result.exitCode,
      error: result.error, backup: ok && run.job === 'backup' ? (result.output as {id?: string} | undefined)?.id : undefined,
    });
    try {
      this.metrics.noteResult(await writeJobResult(repo, result));
    } catch (error) {
      this.metrics.noteResult(result);
      this.options.log({event: 'warning', level: 'warn', ...base, message: `cannot record the job result in the repository: ${(error as Error).message}`});
    }
  }

  /**
   * Stops one run before its end (lease lost, timeout): its programs (pg_basebackup…) get SIGTERM first, so
   * pgbk fails through its own error path and removes what it wrote; then pgbk, then SIGKILL for all.
   */
  private async stopRun(run: Run, why: string): Promise<void> {
    if (run.pid === undefined || run.exited || run.stoppedBecause) return;
    run.stoppedBecause = why;
    run.terminated = true;
    const pid = run.pid;
    const waitExit = async (ms: number) => {
      const deadline = Date.now() + ms;
      while (!run.exited && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 100));
    };
    signalPids(descendants(pid), 'SIGTERM');
    await waitExit(TERM_WAIT_MS);
    if (run.exited) return;
    signalGroup(pid, 'SIGTERM');
    await waitExit(KILL_WAIT_MS);
    if (!run.exited) signalGroup(pid, 'SIGKILL');
  }

  /** SIGTERM/SIGINT: no new runs; running ones get the grace period, then SIGTERM, then SIGKILL. */
  shutdown(signal = 'SIGTERM'): Promise<void> {
    if (this.stopPromise) {
      // A second signal: stop waiting for running jobs.
      this.graceDeadline = Date.now();
      return this.stopPromise;
    }
    this.stopping = true;
    this.graceDeadline = Date.now() + (this.options.graceMs ?? DEFAULT_GRACE_MS);
    this.stopPromise = this.stop(signal).finally(() => this.resolveStopped());
    return this.stopPromise;
  }

  private async stop(signal: string): Promise<void> {
    const running = [...this.runs.values()].map((run) => `${run.policy}/${run.job}`);
    this.options.log({event: 'stopping', signal, running, graceMs: this.options.graceMs ?? DEFAULT_GRACE_MS});
    for (const entry of this.entries.values()) this.unschedule(entry);
    await this.waitForRuns(() => this.graceDeadline);
    if (this.runs.size > 0) {
      // Stop the job's programs (pg_basebackup, pg_dump…) first: pgbk then fails the job through its own error
      // path, which removes what it wrote. Then the pgbk child itself, then everything.
      const live = [...this.runs.values()].filter((run) => run.pid !== undefined);
      this.options.log({event: 'terminating', level: 'warn', running: live.map((run) => `${run.policy}/${run.job}`)});
      for (const run of live) run.terminated = true;
      // Rescanned while waiting: a job may start its program (pg_basebackup) only after the first look.
      const signalled = new Set<number>();
      const termDeadline = Date.now() + TERM_WAIT_MS;
      while (this.runs.size > 0 && Date.now() < termDeadline) {
        for (const run of this.runs.values()) {
          if (run.pid === undefined) continue;
          const fresh = descendants(run.pid).filter((pid) => !signalled.has(pid));
          for (const pid of fresh) signalled.add(pid);
          signalPids(fresh, 'SIGTERM');
        }
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      for (const run of this.runs.values()) if (run.pid) signalGroup(run.pid, 'SIGTERM');
      const killDeadline = Date.now() + KILL_WAIT_MS;
      await this.waitForRuns(() => killDeadline);
      for (const run of this.runs.values()) if (run.pid) signalGroup(run.pid, 'SIGKILL');
      const lastDeadline = Date.now() + KILL_WAIT_MS;
      await this.waitForRuns(() => lastDeadline);
    }
    if (this.server) {
      const server = this.server;
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    }
    for (const repo of new Set([...[...this.entries.values()].map((entry) => entry.repo), ...this.retired])) {
      await repo.close().catch(() => undefined);
    }
    this.options.log({event: 'stopped', unfinished: [...this.runs.keys()]});
  }

  private async waitForRuns(deadline: () => number): Promise<void> {
    while (this.runs.size > 0 && Date.now() < deadline()) await new Promise((resolve) => setTimeout(resolve, 100));
  }

  health(): {status: 'ok' | 'stopping'; [key: string]: unknown} {
    return {
      status: this.stopping ? 'stopping' : 'ok',
      pid: process.pid,
      holder: this.holder,
      startedAt: this.startedAt.toISOString(),
      policies: [...this.entries.values()].map(({policy, tasks}) => ({
        name: policy.name,
        jobs: Object.fromEntries(JOBS.filter((job) => policy.schedule[job]).map((job) => [job, policy.schedule[job]])),
        next: tasks.map((task) => task.getNextRun()?.toISOString()).filter(Boolean).sort()[0],
      })),
      running: [...this.runs.values()].filter((run) => run.startedAt).map((run) => ({
        policy: run.policy, job: run.job, tick: run.tick, startedAt: run.startedAt!.toISOString(), pid: run.pid,
      })),
      lastReload: this.lastReload,
    };
  }

  private listen(address: {host: string; port: number}): Promise<void> {
    const server = createServer((req, res) => {
      const path = (req.url ?? '/').split('?')[0];
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        res.writeHead(405, {allow: 'GET, HEAD'}).end();
        return;
      }
      if (path === '/health') {
        const health = this.health();
        res.writeHead(health.status === 'ok' ? 200 : 503, {'content-type': 'application/json'});
        res.end(req.method === 'HEAD' ? undefined : `${JSON.stringify(health)}\n`);
        return;
      }
      if (path === '/metrics') {
        this.metrics.render().then((body) => {
          res.writeHead(200, {'content-type': 'text/plain; version=0.0.4; charset=utf-8'});
          res.end(req.method === 'HEAD' ? undefined : body);
        }, (error: Error) => {
          this.options.log({event: 'metrics', level: 'error', error: error.message});
          res.writeHead(500, {'content-type': 'text/plain'}).end(`metrics failed: ${error.message}\n`);
        });
        return;
      }
      res.writeHead(404, {'content-type': 'text/plain'}).end('not found: try /metrics or /health\n');
    });
    this.server = server;
    return new Promise<void>((resolve, reject) => {
      server.once('error', (error: NodeJS.ErrnoException) => {
        reject(new SchedulerError(`cannot listen on ${address.host}:${address.port}: ${error.code ?? error.message}`,
          error.code === 'EADDRINUSE' ? 'another process uses that port: pick another with --listen host:port' : undefined, {cause: error}));
      });
      server.listen(address.port, address.host, () => {
        server.removeAllListeners('error');
        server.on('error', (error) => this.options.log({event: 'listen', level: 'error', error: error.message}));
        this.options.log({event: 'listen', address: `${address.host}:${address.port}`, paths: ['/metrics', '/health']});
        resolve();
      });
    });
  }
}

/** The cron slot, in whole seconds (the same on every scheduler with a synchronized clock). */
function slotOf(date: Date): Date {
  return new Date(Math.floor(date.getTime() / 1000) * 1000);
}

function signalGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal); // the job runs in its own process group (detached)
  } catch {
    signalPids([pid], signal);
  }
}

/**
 * --listen alone: 127.0.0.1 on this port. Prometheus' exporter range 9100-9999 is fully allocated on its wiki's
 * "default port allocations" (9187 is postgres_exporter's, and backup exporters hold others there), so any number
 * in it would collide with some exporter: pgbk takes one above that range.
 */
export const DEFAULT_LISTEN_PORT = 10987;

/** --listen: host:port, [v6 address]:port, :port (every interface) or a port alone (127.0.0.1). */
export function parseListen(text: string): {host: string; port: number} | undefined {
  const bare = /^(\d{1,5})$/.exec(text);
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(text);
  const port = Number(bare?.[1] ?? match?.[3]);
  if (!(port >= 1 && port <= 65535)) return undefined;
  if (bare) return {host: '127.0.0.1', port};
  return {host: match![1] || match![2] || '0.0.0.0', port};
}
