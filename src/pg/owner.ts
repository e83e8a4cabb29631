// PostgreSQL refuses to run as root: when pgbk runs as root, server programs run as the data directory's owner.

import {execFileSync} from 'node:child_process';
import {statSync} from 'node:fs';

export function isRoot(): boolean {
  return typeof process.getuid === 'function' && process.getuid() === 0;
}

/** The command line to run `file args` as the owner of `dataDir` (unchanged unless pgbk runs as root). */
export function asOwnerOf(dataDir: string, file: string, args: string[]): [string, string[]] {
  if (!isRoot()) return [file, args];
  const uid = statSync(dataDir).uid;
  if (uid === 0) return [file, args];
  const user = execFileSync('id', ['-nu', String(uid)], {encoding: 'utf8'}).trim();
  return ['runuser', ['-u', user, '--', file, ...args]];
}
