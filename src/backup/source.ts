// Which server a base backup is read from. pitr and dump: the policy's postgres.url. replica: the standby the
// policy names (replica.standby_url), so the primary does no backup IO — unless that standby is down, promoted or
// further behind than replica.max_lag; then the primary, said on stderr.

import type {Policy} from '../policy/types.js';
import {redactUrl} from '../pg/conninfo.js';
import {probeStandby} from '../replica/probe.js';
import {formatDuration} from '../policy/duration.js';

export interface BackupSource {
  /** libpq URL pg_basebackup (or pg_dump) connects to. */
  url: string;
  role: 'primary' | 'standby';
  /** For a standby: the primary, which archives the WAL and can switch segments so the backup's last one is archived. */
  primaryUrl?: string;
}

export interface SourceDeps {
  /** Where the fallback is reported (default: stderr). */
  warn?: (line: string) => void;
  /** The repository's database system: patroni members reporting another one are not trusted as source. */
  systemId?: string;
}

export async function resolveBackupSource(policy: Policy, deps: SourceDeps = {}): Promise<BackupSource> {
  const warn = deps.warn ?? ((line: string) => void process.stderr.write(`pgbk: warning: ${line}\n`));
  if (policy.strategy === 'patroni') {
    // Leader and replicas from Patroni's REST API: a healthy replica within maximum_lag_on_failover, else the leader.
    const patroni = await (await import('../patroni/source.js')).resolvePatroniSource(policy, {}, deps.systemId);
    for (const line of patroni.refused) warn(line);
    if (patroni.role === 'leader') {
      warn(patroni.reason);
      return {url: patroni.url, role: 'primary'};
    }
    return {url: patroni.url, role: 'standby', primaryUrl: patroni.leaderUrl};
  }
  const standbyUrl = policy.strategy === 'replica' ? policy.replica?.standbyUrl : undefined;
  if (!standbyUrl) return {url: policy.postgres.url, role: 'primary'};
  const primary: BackupSource = {url: policy.postgres.url, role: 'primary'};
  const maxLag = policy.replica?.maxLagSeconds ?? policy.objectives.rpoSeconds;
  const probe = await probeStandby(standbyUrl);
  const name = redactUrl(standbyUrl);
  if (!probe.reachable) {
    warn(`standby ${name} is unreachable (${probe.error}); taking the backup from the primary ${redactUrl(policy.postgres.url)}`);
    return primary;
  }
  if (!probe.inRecovery) {
    // A manual failover promoted it: it is the primary now, and archives itself.
    warn(`${name} (replica.standby_url) is not in recovery: it was promoted; taking the backup from it as a primary`);
    return {url: standbyUrl, role: 'primary'};
  }
  if (probe.lagSeconds !== null && probe.lagSeconds > maxLag) {
    warn(`standby ${name} replays ${formatDuration(probe.lagSeconds)} behind (replica.max_lag ${formatDuration(maxLag)}); taking the backup from the primary ${redactUrl(policy.postgres.url)}`);
    return primary;
  }
  return {url: standbyUrl, role: 'standby', primaryUrl: policy.postgres.url};
}
