// One backup per policy at a time, scheduled or manual: `pgbk backup` runs under the policy's backup lease
// (locks/backup.json, scheduler/lease.ts). Started by the scheduler, it runs under the scheduler's lease
// (PGBK_LEASE names it); started by hand, it takes the lease itself, refuses when it is held, and stops
// the backup when the lease is lost.

import {BackupBusyError} from '../errors.js';
import type {Policy} from '../policy/types.js';
import {acquireLease, holderId, isHeld, keepLeaseAlive, readLease, releaseLease, sameClaim} from '../scheduler/lease.js';
import type {Repository} from '../storage/repository.js';

export const LEASE_ENV = 'PGBK_LEASE';
const MANUAL_TTL_MS = 5 * 60_000;
const SETTLE_MS = 2_000;

export interface BackupLock {
  /** Aborted when the lease is lost: the backup must stop. */
  signal: AbortSignal;
  release(): Promise<void>;
}

/** `job:holder:token` as the scheduler passes it to its child. */
export function leaseEnvValue(lease: {job: string; holder: string; token: string}): string {
  return `${lease.job}:${lease.holder}:${lease.token}`;
}

export async function takeBackupLock(repo: Repository, policy: Policy, env: NodeJS.ProcessEnv, now: () => Date): Promise<BackupLock> {
  const controller = new AbortController();
  const inherited = env[LEASE_ENV];
  if (inherited) {
    const first = inherited.indexOf(':');
    const last = inherited.lastIndexOf(':');
    const claim = {job: inherited.slice(0, first), holder: inherited.slice(first + 1, last), token: inherited.slice(last + 1)};
    const stored = await readLease(repo, 'backup');
    if (claim.job === 'backup' && sameClaim(stored, claim) && isHeld(stored, now())) {
      // The scheduler holds and renews it, and stops this process should it be lost.
      return {signal: controller.signal, release: async () => undefined};
    }
    // Not (or no longer) held for us: take it like a manual run would.
  }
  const result = await acquireLease(repo, policy.name, 'backup', {
    holder: holderId(), ttlMs: MANUAL_TTL_MS, settleMs: SETTLE_MS, now, purpose: 'manual backup (pgbk backup)',
  });
  if (!result.acquired) {
    const current = result.current;
    const what = current?.purpose ?? 'another backup';
    throw new BackupBusyError(
      `a backup of policy ${policy.name} is already running: ${what}` +
        `${current ? ` held by ${current.holder} since ${current.acquiredAt}, lease until ${current.expiresAt}` : ''} (${repo.description} locks/backup.json)`,
      'wait for it to finish (pgbk status shows the last run), then run pgbk backup again; a crashed holder frees the lease when it expires');
  }
  const lease = result.lease;
  const keeper = keepLeaseAlive(repo, lease, MANUAL_TTL_MS, {
    now,
    onLost: (why) => controller.abort(new BackupBusyError(`the backup lease of policy ${policy.name} was lost (${why}); the backup was stopped`,
      'another run took the lease over; check pgbk status, then take the backup again')),
  });
  return {
    signal: controller.signal,
    release: async () => {
      keeper.stop();
      await releaseLease(repo, lease, now()).catch(() => undefined);
    },
  };
}
