// Clock sanity before expire (pure): retention counts days back from "now", so a local clock that jumped forward
// would delete the point-in-time window. The repository's clock and the newest backup's stop time are witnesses.

import {ClockSkewError} from '../errors.js';
import type {BackupManifest} from '../backup/manifest.js';

/** How far the local clock may be from the repository's, or behind the newest backup's stop time. */
export const MAX_CLOCK_SKEW_MS = 5 * 60_000;

/** Throws ClockSkewError when the local clock is more than 5 minutes off either witness. */
export function checkClock(now: Date, repository: {description: string; time?: Date}, catalog: BackupManifest[]): void {
  const hint = 'fix the system time (NTP: timedatectl status, chronyc tracking) and run pgbk expire again; nothing was removed';
  if (repository.time && Math.abs(now.getTime() - repository.time.getTime()) > MAX_CLOCK_SKEW_MS) {
    throw new ClockSkewError(
      `the local clock (${now.toISOString()}) and the clock of the repository ${repository.description} (${repository.time.toISOString()}) ` +
      `are ${describeMs(Math.abs(now.getTime() - repository.time.getTime()))} apart (more than 5 min): expire removes nothing`, hint);
  }
  let newest: BackupManifest | undefined;
  for (const backup of catalog) {
    if (!newest || new Date(backup.stopTime).getTime() > new Date(newest.stopTime).getTime()) newest = backup;
  }
  if (newest && new Date(newest.stopTime).getTime() - now.getTime() > MAX_CLOCK_SKEW_MS) {
    throw new ClockSkewError(
      `the newest backup, ${newest.id}, finished at ${new Date(newest.stopTime).toISOString()}, ` +
      `${describeMs(new Date(newest.stopTime).getTime() - now.getTime())} after the local clock (${now.toISOString()}): one of the clocks is wrong, expire removes nothing`, hint);
  }
}

function describeMs(ms: number): string {
  if (ms < 600_000) return `${Math.floor(ms / 60_000)} min ${Math.round((ms % 60_000) / 1000)} s`;
  const minutes = Math.round(ms / 60_000);
  if (minutes < 120) return `${minutes} min`;
  const hours = Math.floor(minutes / 60);
  return hours < 48 ? `${hours} h ${minutes % 60} min` : `${Math.round(hours / 24)} days`;
}
