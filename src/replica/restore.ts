// `pgbk restore --standby`: a data directory that starts as a standby of the primary, seeded from the repository
// instead of a pg_basebackup that would load the primary.

import {UsageError} from '../errors.js';
import type {Policy} from '../policy/types.js';
import {redactUrl} from '../pg/conninfo.js';
import {describeTarget, type Target} from '../restore/target.js';
import {standbyConninfo} from './conninfo.js';

interface StandbyFlags {
  standby?: boolean;
  primaryConninfo?: string;
  start?: boolean;
  targetTimeline?: string;
  toDb?: string;
}

/** Bad combinations are bad input (exit 2), refused before anything is read or written. */
export function checkStandbyOptions(options: StandbyFlags, target: Target): void {
  if (!options.standby) throw new UsageError('--primary-conninfo needs --standby');
  if (target.kind !== 'latest') {
    throw new UsageError(`--standby takes no recovery target (got ${describeTarget(target)}): a standby follows the primary to its newest WAL`,
      'leave out the target, or leave out --standby to restore to a point in time');
  }
  if (options.toDb !== undefined) throw new UsageError('--standby lays out a data directory: give --to <dir>, not --to-db');
  if (options.start) throw new UsageError('--standby and --start cannot be combined: a standby is never promoted by pgbk restore', 'start it with pg_ctl -D <dir> start');
  if (options.targetTimeline !== undefined && options.targetTimeline !== 'latest') {
    throw new UsageError(`--standby follows the latest timeline, not --target-timeline ${options.targetTimeline}`);
  }
}

export interface StandbyRecovery {
  primaryConninfo: string;
  /** The same without any password, for output. */
  primaryConninfoShown: string;
}

export function standbyRecovery(policy: Pick<Policy, 'postgres' | 'replica' | 'name'>, flag: string | undefined, io: {stderr: NodeJS.WritableStream}): StandbyRecovery {
  const chosen = standbyConninfo(policy, flag);
  if (chosen.droppedPassword) {
    io.stderr.write(`pgbk: warning: the password in ${chosen.source} of policy ${policy.name} is not written into postgresql.auto.conf; ` +
      `put it in ~postgres/.pgpass on the standby (or give --primary-conninfo with passfile=...)\n`);
  }
  return {primaryConninfo: chosen.conninfo, primaryConninfoShown: redactConninfo(chosen.conninfo)};
}

export function redactConninfo(conninfo: string): string {
  return redactUrl(conninfo.replace(/(^|\s)(password\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s']\S*)/gi, '$1$2***'));
}
