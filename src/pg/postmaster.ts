// The postmaster running from a data directory, if any (postmaster.pid's first line, and that process alive).

import {readFile} from 'node:fs/promises';
import {join} from 'node:path';
import {processAlive} from '../util/process.js';

export async function postmasterPid(dataDir: string): Promise<number | undefined> {
  const pid = Number((await readFile(join(dataDir, 'postmaster.pid'), 'utf8').catch(() => '')).split('\n')[0]);
  return pid > 0 && processAlive(pid) ? pid : undefined;
}

/**
 * What the postmaster says of itself in postmaster.pid's eighth line (PostgreSQL 10+), whatever the server's locale
 * or logging settings: `starting` (recovery, no connections), `standby` (hot standby: read-only connections),
 * `ready` (recovery over, promoted or never in it), `stopping`; undefined when no postmaster runs there.
 */
export async function postmasterStatus(dataDir: string): Promise<{pid: number; status: string} | undefined> {
  const lines = (await readFile(join(dataDir, 'postmaster.pid'), 'utf8').catch(() => '')).split('\n');
  const pid = Number(lines[0]);
  if (!(pid > 0 && processAlive(pid))) return undefined;
  return {pid, status: (lines[7] ?? '').trim()};
}
