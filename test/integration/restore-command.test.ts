// The restore_command pgbk writes: a segment the prefetcher already verified into the spool is moved into place by
// the shell alone (no Node start-up); anything else goes through pgbk archive-get and its exit codes.

import {existsSync, mkdirSync, readFileSync, renameSync} from 'node:fs';
import {join} from 'node:path';
import {afterAll, beforeAll, describe, expect, inject, it} from 'vitest';
import {chownToPostgres, makeTempDir, runAsPostgres} from '../helpers/cluster.js';
import {setupArchiving, switchAndWaitArchived, type ArchivingSetup} from '../helpers/pitr.js';

describe('restore_command', () => {
  let setup: ArchivingSetup;
  let dataDir: string;
  let command: string;
  let segment: string;

  beforeAll(async () => {
    setup = await setupArchiving('local', inject('s3'));
    await setup.cluster.query(`create table items (id int)`);
    expect((await setup.pgbk(['backup'])).exitCode).toBe(0);
    await setup.cluster.query(`insert into items select generate_series(1, 1000)`);
    segment = await switchAndWaitArchived(setup.cluster);
    dataDir = join(makeTempDir('pgbk-rc-'), 'data');
    const restored = await setup.pgbk(['restore', '--to', dataDir]);
    expect(restored.exitCode, restored.stderr).toBe(0);
    const line = readFileSync(join(dataDir, 'postgresql.auto.conf'), 'utf8').split('\n').filter((l) => l.startsWith('restore_command = ')).at(-1)!;
    command = line.slice('restore_command = \''.length, -1).replace(/''/g, '\'');
  });

  afterAll(async () => {
    await setup?.destroy();
  });

  /** Runs restore_command as PostgreSQL would: sh -c in the data directory, as its owner. */
  const restoreCommand = (walFile: string, dest = 'pg_wal/RECOVERYXLOG') =>
    runAsPostgres('sh', ['-c', command.replaceAll('%f', walFile).replaceAll('%p', dest)], {cwd: dataDir});

  it('moves a spooled segment into place without pgbk, and notes the request for the prefetcher', async () => {
    const spool = join(dataDir, 'pg_wal', 'pgbk-spool');
    mkdirSync(spool, {recursive: true});
    chownToPostgres(spool);
    const fetched = await setup.pgbk(['archive-get', segment, join(spool, segment)]);
    expect(fetched.exitCode).toBe(0);
    const expected = readFileSync(join(spool, segment));
    // pgbk cannot run now (its policy is gone): only the shell can have done it.
    renameSync(setup.policyFile, `${setup.policyFile}.away`);
    try {
      const result = await restoreCommand(segment);
      expect(result.exitCode, result.stderr).toBe(0);
      expect(readFileSync(join(dataDir, 'pg_wal', 'RECOVERYXLOG')).equals(expected)).toBe(true);
      expect(existsSync(join(spool, segment))).toBe(false);
      expect(readFileSync(join(spool, '.requested'), 'utf8').trim()).toBe(segment);
      // Not spooled: pgbk archive-get answers, and an unusable policy aborts recovery (126), never "not found".
      const missing = await restoreCommand(segment, 'pg_wal/RECOVERYXLOG2');
      expect(missing.exitCode).toBe(126);
    } finally {
      renameSync(`${setup.policyFile}.away`, setup.policyFile);
    }
    const viaPgbk = await restoreCommand(segment, 'pg_wal/RECOVERYXLOG3');
    expect(viaPgbk.exitCode, viaPgbk.stderr).toBe(0);
    expect(readFileSync(join(dataDir, 'pg_wal', 'RECOVERYXLOG3')).equals(expected)).toBe(true);
    const history = await restoreCommand('00000009.history', 'pg_wal/RECOVERYHISTORY');
    expect(history.exitCode).toBe(1);
  });
});
