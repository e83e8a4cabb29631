// Finds the PostgreSQL binaries: the policy's postgres.bin_dir, else `pg_config --bindir`, else the newest
// /usr/lib/postgresql/*/bin.

import {execFileSync} from 'node:child_process';
import {accessSync, constants, readdirSync} from 'node:fs';
import {join} from 'node:path';
import {PgBinaryError} from '../errors.js';

const cache = new Map<string, string>();

export function findBinDir(configured: string | undefined, program = 'pg_ctl'): string {
  const key = `${configured ?? ''}\0${program}`;
  const hit = cache.get(key);
  if (hit) return hit;
  const searched: string[] = [];
  const candidates: Array<() => string | undefined> = [
    () => configured,
    () => {
      try {
        return execFileSync('pg_config', ['--bindir'], {encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore']}).trim();
      } catch {
        searched.push('pg_config (not on PATH)');
        return undefined;
      }
    },
    () => newestDebianBinDir(searched),
  ];
  for (const candidate of candidates) {
    const dir = candidate();
    if (!dir) continue;
    if (isExecutable(join(dir, program))) {
      cache.set(key, dir);
      return dir;
    }
    searched.push(dir);
    if (configured && dir === configured) {
      throw new PgBinaryError(`${program} not found in postgres.bin_dir ${dir}`, 'set postgres.bin_dir to the bin directory of the PostgreSQL installation');
    }
  }
  throw new PgBinaryError(
    `cannot find the PostgreSQL program ${program}; searched: ${searched.join(', ') || 'nothing'}`,
    'install the PostgreSQL server/client package or set postgres.bin_dir in the policy',
  );
}

function newestDebianBinDir(searched: string[]): string | undefined {
  const root = '/usr/lib/postgresql';
  let versions: string[];
  try {
    versions = readdirSync(root);
  } catch {
    searched.push(`${root}/*/bin`);
    return undefined;
  }
  const sorted = versions.filter((v) => /^\d+(\.\d+)?$/.test(v)).sort((a, b) => Number.parseFloat(b) - Number.parseFloat(a));
  for (const version of sorted) {
    const dir = join(root, version, 'bin');
    if (isExecutable(join(dir, 'pg_ctl')) || isExecutable(join(dir, 'pg_dump'))) return dir;
  }
  searched.push(`${root}/*/bin`);
  return undefined;
}

function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

export function pgBinary(binDir: string | undefined, program: string): string {
  return join(findBinDir(binDir, program), program);
}
