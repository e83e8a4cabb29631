// pgbk schedule's side of WAL streaming: one `pgbk wal-receive --policy <file>` child per policy with
// wal_streaming.enabled, restarted with a backoff when it exits (1 s doubling to 60 s; back to 1 s after a run of
// 5 minutes), restarted when the policy changes, stopped (SIGTERM, SIGKILL after 10 s) when the policy goes or
// streaming is turned off, and at shutdown. Its JSON log lines go into the scheduler's log.

import {spawn, type ChildProcess} from 'node:child_process';
import type {Policy} from '../policy/types.js';
import {PGBK_BIN} from './jobs.js';
import type {Log, LogEntry} from './log.js';

interface Receiver {
  policy: Policy;
  fingerprint: string;
  child?: ChildProcess;
  exited?: Promise<void>;
  timer?: NodeJS.Timeout;
  delayMs: number;
  stopped: boolean;
}

export class ReceiverSupervisor {
  private readonly receivers = new Map<string, Receiver>();

  constructor(private readonly options: {env: NodeJS.ProcessEnv; cwd: string; log: Log; bin?: string}) {}

  /** Starts, restarts (changed policy) or stops the receiver of `policy` as its wal_streaming says. */
  async sync(policy: Policy): Promise<void> {
    const fingerprint = JSON.stringify(policy);
    const current = this.receivers.get(policy.name);
    if (current && current.fingerprint === fingerprint) return;
    if (current) await this.stop(policy.name);
    if (!policy.walStreaming?.enabled) return;
    const receiver: Receiver = {policy, fingerprint, delayMs: 1000, stopped: false};
    this.receivers.set(policy.name, receiver);
    this.launch(receiver);
  }

  private launch(receiver: Receiver): void {
    if (receiver.stopped) return;
    const started = Date.now();
    const child = spawn(process.execPath, [this.options.bin ?? PGBK_BIN, 'wal-receive', '--policy', receiver.policy.file], {
      env: this.options.env, cwd: this.options.cwd, stdio: ['ignore', 'pipe', 'pipe'],
    });
    receiver.child = child;
    let stderr = '';
    let pending = '';
    child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
      pending += chunk;
      let newline: number;
      while ((newline = pending.indexOf('\n')) >= 0) {
        const line = pending.slice(0, newline);
        pending = pending.slice(newline + 1);
        try {
          const {time: _time, ...entry} = JSON.parse(line) as LogEntry & {time?: string};
          this.options.log({...entry, source: 'wal-receive'});
        } catch {
          if (line.trim()) this.options.log({event: 'warning', level: 'warn', policy: receiver.policy.name, message: line.slice(0, 2000)});
        }
      }
    });
    child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
      stderr = (stderr + chunk).slice(-4000);
    });
    receiver.exited = new Promise<void>((resolve) => {
      child.once('error', () => resolve());
      child.once('close', (code, signal) => {
        receiver.child = undefined;
        resolve();
        if (receiver.stopped) return;
        if (Date.now() - started > 5 * 60_000) receiver.delayMs = 1000;
        this.options.log({event: 'warning', level: 'error', policy: receiver.policy.name, source: 'wal-receive',
          message: `pgbk wal-receive exited (${signal ?? `exit ${code}`}); restarting in ${receiver.delayMs / 1000}s`, error: stderr.trim().split('\n').slice(-3).join('\n') || undefined});
        receiver.timer = setTimeout(() => this.launch(receiver), receiver.delayMs);
        receiver.delayMs = Math.min(receiver.delayMs * 2, 60_000);
      });
    });
  }

  /** Stops one receiver: SIGTERM (it uploads what it received last), SIGKILL after 10 s. */
  async stop(name: string): Promise<void> {
    const receiver = this.receivers.get(name);
    if (!receiver) return;
    this.receivers.delete(name);
    receiver.stopped = true;
    clearTimeout(receiver.timer);
    const child = receiver.child;
    if (!child) return;
    child.kill('SIGTERM');
    const killer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await receiver.exited;
    clearTimeout(killer);
  }

  async stopAll(): Promise<void> {
    await Promise.all([...this.receivers.keys()].map((name) => this.stop(name)));
  }

  /** Policies with a receiver, and whether its process runs (health). */
  running(): Array<{policy: string; pid: number | null}> {
    return [...this.receivers.values()].map((receiver) => ({policy: receiver.policy.name, pid: receiver.child?.pid ?? null}));
  }
}
