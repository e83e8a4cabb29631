// primary_conninfo for a standby laid out by `pgbk restore --standby`. postgresql.auto.conf is a plain file that
// travels with every base backup: a password goes there only when the user gave it in --primary-conninfo; from
// the policy it is left out, and the standby's libpq finds it in ~postgres/.pgpass (or passfile=).

import {splitPassword} from '../pg/conninfo.js';
import type {Policy} from '../policy/types.js';

export interface StandbyConninfo {
  conninfo: string;
  /** Where it came from, for messages. */
  source: '--primary-conninfo' | 'replica.primary_conninfo' | 'postgres.url';
  /** A password was in the policy's conninfo and was left out. */
  droppedPassword: boolean;
}

export function standbyConninfo(policy: Pick<Policy, 'postgres' | 'replica'>, flag?: string): StandbyConninfo {
  if (flag !== undefined) return {conninfo: flag, source: '--primary-conninfo', droppedPassword: false};
  const configured = policy.replica?.primaryConninfo;
  const [text, source] = configured ? [configured, 'replica.primary_conninfo' as const] : [policy.postgres.url, 'postgres.url' as const];
  const stripped = withoutPassword(text);
  return {conninfo: stripped.conninfo, source, droppedPassword: stripped.dropped};
}

/** A libpq URL or key=value connection string without its password. */
export function withoutPassword(conninfo: string): {conninfo: string; dropped: boolean} {
  if (/^postgres(ql)?:\/\//.test(conninfo.trim())) {
    const split = splitPassword(conninfo.trim());
    return {conninfo: split.url, dropped: split.password !== undefined};
  }
  let dropped = false;
  // key = value pairs; values are bare words or single-quoted with \' and \\ escapes.
  const kept = conninfo.replace(/(^|\s)password\s*=\s*('(?:[^'\\]|\\.)*'|[^\s']\S*)/gi, () => {
    dropped = true;
    return '';
  });
  return {conninfo: kept.trim().replace(/\s{2,}/g, ' '), dropped};
}
