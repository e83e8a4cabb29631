// pgbk wal-receive: stream the policy's WAL (pg_receivewal, a physical slot) and upload the segment being written
// every wal_streaming.flush_interval; restarts pg_receivewal with backoff; stops on SIGTERM/SIGINT. Logs one JSON
// object a line on stdout, like pgbk schedule.

import type {Command} from 'commander';
import {UsageError} from '../errors.js';
import type {Policy, WalStreamingConfig} from '../policy/types.js';
import {withContext, type GlobalOptions, type Io} from './context.js';

export function registerWalReceiveCommand(program: Command, io: Io, globals: () => GlobalOptions): void {
  program.command('wal-receive')
    .description('long-running: stream WAL through the policy\'s replication slot and upload the segment being written (wal_streaming)')
    .action(async () => {
      await withContext(globals(), io, async ({policy, repo}) => {
        const streaming = policy.walStreaming;
        if (!streaming?.enabled) {
          throw new UsageError(`policy ${policy.name} (${policy.file}) has no wal_streaming section with enabled: true`,
            'add wal_streaming: {enabled: true, slot: <name>} to the policy');
        }
        const [{superviseReceiver}, {requireIdentity}, {createLog}] = await Promise.all([
          import('../wal/receive.js'), import('../identity/identity.js'), import('../scheduler/log.js')]);
        const identity = await requireIdentity(repo, policy.name);
        const log = createLog(io.stdout, io.now);
        const abort = new AbortController();
        const onStop = () => abort.abort();
        process.on('SIGTERM', onStop);
        process.on('SIGINT', onStop);
        try {
          await superviseReceiver({policy: policy as Policy & {walStreaming: WalStreamingConfig}, repo, identity, signal: abort.signal,
            log: (entry) => log(entry as never)});
        } finally {
          process.off('SIGTERM', onStop);
          process.off('SIGINT', onStop);
        }
      });
    });
}
