// `pgbk schedule` (or any long-running pgbk command) as a real process, as the postgres OS user, with its JSON
// log lines parsed as they come.
import {spawn, type ChildProcess} from 'node:child_process';
import {baseEnv, pgbkBin, repoRoot} from './cli.js';
import {isRoot} from './cluster.js';

export interface LogLine {
  time: string;
  event: string;
  policy?: string;
  job?: string;
  tick?: string;
  [key: string]: unknown;
}

export class SchedulerProcess {
  readonly child: ChildProcess;
  readonly lines: LogLine[] = [];
  readonly junk: string[] = [];
  stderr = '';
  exitCode: number | null | undefined;
  readonly exited: Promise<number | null>;

  constructor(args: string[], env: Record<string, string> = {}) {
    const assignments = Object.entries({...baseEnv(), ...env}).map(([name, value]) => `${name}=${value}`);
    const command = ['env', '-i', ...assignments, process.execPath, pgbkBin, 'schedule', ...args];
    const [file, argv] = isRoot ? ['runuser', ['-u', 'postgres', '--', ...command]] : [command[0]!, command.slice(1)];
    this.child = spawn(file, argv, {cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe']});
    let buffered = '';
    this.child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
      buffered += chunk;
      const parts = buffered.split('\n');
      buffered = parts.pop()!;
      for (const line of parts) {
        try {
          this.lines.push(JSON.parse(line) as LogLine);
        } catch {
          this.junk.push(line);
        }
      }
    });
    this.child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
      this.stderr += chunk;
    });
    this.exited = new Promise((resolve) => this.child.once('close', (code) => {
      this.exitCode = code;
      resolve(code);
    }));
  }

  /** The scheduler's own pid (runuser would turn a SIGTERM into a SIGKILL two seconds later). */
  get pid(): number | undefined {
    return this.lines.find((line) => line.event === 'started')?.pid as number | undefined;
  }

  events(event: string, job = 'backup'): LogLine[] {
    return this.lines.filter((line) => line.event === event && line.job === job);
  }

  signal(signal: NodeJS.Signals): void {
    if (!this.pid) throw new Error(`scheduler not started:\n${this.stderr}`);
    process.kill(this.pid, signal);
  }

  async waitExit(timeoutMs: number): Promise<number | null> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => reject(new Error(`scheduler did not exit within ${timeoutMs} ms\n${this.describe()}`)), timeoutMs);
    });
    try {
      return await Promise.race([this.exited, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  describe(): string {
    return `--- log ---\n${this.lines.map((line) => JSON.stringify(line)).join('\n')}\n--- stderr ---\n${this.stderr}`;
  }

  /** Last resort (afterAll): the scheduler, its runuser parent, and the process groups of its jobs. */
  kill(): void {
    for (const line of this.events('start')) {
      try {
        process.kill(-(line.pid as number), 'SIGKILL');
      } catch {
        // gone
      }
    }
    for (const pid of [this.pid, this.child.pid]) {
      try {
        if (pid && this.exitCode === undefined) process.kill(pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
  }
}

