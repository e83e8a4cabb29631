// The PostgreSQL server versions pgbk supports. 13 is the floor: base backups read the next transaction id with
// pg_current_snapshot()/pg_snapshot_xmax() (13+), pg_basebackup writes a backup manifest (13+), and restores use
// recovery.signal with recovery settings in postgresql.auto.conf (12+). Tested on the versions in README.md.

import {UnsupportedServerError} from '../errors.js';

export const MIN_SERVER_VERSION_NUM = 130000;

/** 150004 -> "15.4", 90624 -> "9.6.24". */
export function formatVersionNum(num: number): string {
  return num >= 100000 ? `${Math.floor(num / 10000)}.${num % 10000}` : `${Math.floor(num / 10000)}.${Math.floor(num / 100) % 100}.${num % 100}`;
}

/** Refuses a server older than pgbk supports, naming its version and the minimum. */
export function checkServerVersion(versionNum: number, where: string): void {
  if (versionNum >= MIN_SERVER_VERSION_NUM) return;
  throw new UnsupportedServerError(
    `${where} runs PostgreSQL ${formatVersionNum(versionNum)}; pgbk needs PostgreSQL ${formatVersionNum(MIN_SERVER_VERSION_NUM)} or later`,
    'upgrade the server (pg_upgrade), or keep backing it up with the tool you used before',
  );
}
