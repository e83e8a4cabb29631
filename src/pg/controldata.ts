// pg_controldata of a data directory, read by label (LC_ALL=C through runPg): works while the server is down.

import {runPg} from './run.js';

/** One field of `pg_controldata -D <dataDir>` by its label, e.g. "Bytes per WAL segment". */
export async function controlData(dataDir: string, binDir: string | undefined): Promise<(label: string) => string | undefined> {
  const {stdout} = await runPg('pg_controldata', ['-D', dataDir], {binDir});
  return (label) => new RegExp(`^${label}:\\s+(\\S+)`, 'm').exec(stdout)?.[1];
}

/** "Database cluster state" of pg_control (in production, in archive recovery, shut down in recovery, ...). */
export async function controlState(dataDir: string, binDir: string | undefined): Promise<string | undefined> {
  const {stdout} = await runPg('pg_controldata', ['-D', dataDir], {binDir}).catch(() => ({stdout: ''}));
  return /^Database cluster state:\s+(.+)$/m.exec(stdout)?.[1]?.trim();
}
