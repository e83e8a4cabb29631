// pgbk schedule: the long-running scheduler for every policy in the policies directory.

import type {Command} from 'commander';
import {UsageError} from '../errors.js';
import {policiesDirectory} from '../policy/load.js';
import {parseDuration} from '../policy/duration.js';
import type {GlobalOptions, Io} from './context.js';

interface ScheduleOptions {
  listen?: string | true;
  grace: string;
  leaseTtl: string;
}

export function registerScheduleCommand(program: Command, io: Io, globals: () => GlobalOptions): void {
  program.command('schedule')
    .description("run every policy's backup, expire and drill jobs at their cron times; logs one JSON object a line on stdout")
    .option('--listen [host:port]', 'serve GET /metrics (Prometheus) and GET /health on this address (alone: 127.0.0.1:10987)')
    .option('--grace <duration>', 'on SIGTERM/SIGINT, how long running jobs may take to finish before they are stopped', '60s')
    .option('--lease-ttl <duration>', 'expiry of a job lease, renewed while the job runs (how long a crashed scheduler blocks a job)', '5m')
    .action(async (opts: ScheduleOptions) => {
      const {Scheduler, parseListen, DEFAULT_LISTEN_PORT} = await import('../scheduler/daemon.js');
      const {createLog} = await import('../scheduler/log.js');
      const listen = opts.listen === undefined ? undefined : parseListen(opts.listen === true ? `127.0.0.1:${DEFAULT_LISTEN_PORT}` : opts.listen);
      if (opts.listen !== undefined && !listen) {
        throw new UsageError(`--listen: "${opts.listen}" is not host:port`, 'for example --listen 127.0.0.1:10987 or --listen 0.0.0.0:10987');
      }
      const graceSeconds = parseDuration(opts.grace);
      const ttlSeconds = parseDuration(opts.leaseTtl);
      if (graceSeconds === undefined) throw new UsageError(`--grace: "${opts.grace}" is not a duration`, 'for example --grace 60s or --grace 10m');
      if (ttlSeconds === undefined || ttlSeconds < 10) throw new UsageError(`--lease-ttl: "${opts.leaseTtl}" is not a duration of 10s or more`, 'for example --lease-ttl 5m');
      const policiesDir = policiesDirectory({policiesDir: globals().policies, env: io.env, cwd: io.cwd});
      const {logLevelOf, isJournalStream} = await import('../util/log.js');
      const log = createLog(io.stdout, io.now, {level: logLevelOf(io.env) ?? 'info', journal: io.stdout === process.stdout && isJournalStream(io.env, 1)});
      const scheduler = new Scheduler({
        policiesDir, env: io.env, cwd: io.cwd, log, listen,
        graceMs: graceSeconds * 1000, leaseTtlMs: ttlSeconds * 1000, now: io.now,
      });
      await scheduler.start();
      const onStop = (signal: NodeJS.Signals) => void scheduler.shutdown(signal);
      const onHup = () => {
        reloading = reloading.then(() => scheduler.reload()).catch((error: Error) => {
          log({event: 'reload', level: 'error', error: error.message, message: 'kept every policy as it was'});
        });
      };
      let reloading = Promise.resolve();
      process.on('SIGTERM', onStop);
      process.on('SIGINT', onStop);
      process.on('SIGHUP', onHup);
      try {
        await scheduler.stopped;
      } finally {
        process.off('SIGTERM', onStop);
        process.off('SIGINT', onStop);
        process.off('SIGHUP', onHup);
      }
    });
}
