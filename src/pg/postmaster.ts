// The postmaster running from a data directory, if any (postmaster.pid's first line, and that process alive).

import {readFile} from 'node:fs/promises';
import {join} from 'node:path';
import {processAlive} from '../util/process.js';

export async function postmasterPid(dataDir: string): Promise<number | undefined> {
  const pid = Number((await readFile(join(dataDir, 'postmaster.pid'), 'utf8').catch(() => '')).split('\n')[0]);
  return pid > 0 && processAlive(pid) ? pid : undefined;
}
