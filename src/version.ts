// What runs: pgbk's version (package.json) and where its entry point and Node.js are, for --version and check.

import {readFileSync} from 'node:fs';
import {dirname} from 'node:path';
import {fileURLToPath} from 'node:url';

/** package.json's version (dist/version.js and src/version.ts both sit one level below it). */
export const VERSION: string = (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as {version: string}).version;

/** bin/pgbk of this installation, by absolute path. */
export const PGBK_BIN: string = fileURLToPath(new URL('../bin/pgbk', import.meta.url));

/** The programs archive_command and restore_command should run: pgbk by absolute path, and Node.js too when needed. */
export interface Runtime {
  pgbkBin: string;
  nodePath: string;
  nodeVersion: string;
}

export function currentRuntime(): Runtime {
  return {pgbkBin: PGBK_BIN, nodePath: process.execPath, nodeVersion: process.version};
}

/** Directories on every service's default PATH (systemd, Debian's pg_ctlcluster): `#!/usr/bin/env node` finds node there. */
const STANDARD_PATH_DIRS = new Set(['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin']);

/**
 * The command line that runs pgbk from a server whose PATH is unknown: bin/pgbk by absolute path, preceded by
 * the absolute path of this Node.js unless it lives in a standard PATH directory.
 */
export function pgbkCommand(runtime: Runtime = currentRuntime()): string {
  const quote = (path: string) => (/^[\w@%+=:,./-]+$/.test(path) ? path : `"${path.replace(/(["\\$`])/g, '\\$1')}"`);
  return STANDARD_PATH_DIRS.has(dirname(runtime.nodePath)) ? quote(runtime.pgbkBin) : `${quote(runtime.nodePath)} ${quote(runtime.pgbkBin)}`;
}
