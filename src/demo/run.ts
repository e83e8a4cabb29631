// The demo: the whole cycle on a throwaway cluster and a local repository — backup, changes, an incident,
// point-in-time restore, rows compared — with nothing to set up. Every step runs the real pgbk commands.

import {chown, mkdtemp, rm, writeFile, readFile} from 'node:fs/promises';
import {freeLoopbackPort} from '../util/net.js';
import {tmpdir, userInfo} from 'node:os';
import {join} from 'node:path';
import {execa} from 'execa';
import {PgbkError} from '../errors.js';
import {findBinDir} from '../pg/bin.js';
import {isRoot} from '../pg/owner.js';
import {pgbkCommandPrefix} from '../restore/layout.js';
import type {Io} from '../cli/context.js';

class DemoError extends PgbkError {
  readonly code = 'demo.failed';
}

export async function runDemo(io: Io, keep: boolean): Promise<void> {
  const say = (text: string) => io.stdout.write(`${text}\n`);
  const binDir = findBinDir(undefined, 'initdb');
  const base = await mkdtemp(join(tmpdir(), 'pgbk-demo-'));
  const owner = isRoot() ? 'postgres' : userInfo().username;
  if (isRoot()) await chownToPostgres(base);
  const asOwner = (file: string, args: string[], extra: {env?: Record<string, string>} = {}) =>
    isRoot()
      ? execa('runuser', ['-u', 'postgres', '--', 'env', ...Object.entries(extra.env ?? {}).map(([k, v]) => `${k}=${v}`), file, ...args], {stdin: 'ignore', cwd: base})
      : execa(file, args, {env: extra.env, stdin: 'ignore', cwd: base});
  const dataDir = join(base, 'data');
  const restoreDir = join(base, 'restored');
  const policyFile = join(base, 'demo.yaml');
  const port = await freeLoopbackPort();
  const restorePort = await freeLoopbackPort();
  const url = `postgresql://${owner}@127.0.0.1:${port}/postgres`;
  const pgbk = pgbkCommandPrefix();
  const pgbkArgv = (args: string[]) => {
    const [node, script] = [process.execPath, pgbk.split(' ')[1]!.replace(/^'|'$/g, '')];
    return {file: node, args: [script, ...args, '--policy', policyFile]};
  };
  const runPgbk = async (args: string[]) => {
    say(`$ pgbk ${args.join(' ')} --policy ${policyFile}`);
    const {file, args: argv} = pgbkArgv(args);
    const result = await asOwner(file, argv).catch((error) => {
      throw new DemoError(`pgbk ${args[0]} failed:\n${error.stderr ?? ''}${error.stdout ?? ''}`);
    });
    if (result.stdout) say(result.stdout.replace(/^/gm, '  '));
    return result.stdout;
  };
  const started: string[] = [];
  try {
    say(`== 1. a throwaway cluster in ${dataDir} (PostgreSQL binaries from ${binDir}), port ${port}`);
    await asOwner(join(binDir, 'initdb'), ['-D', dataDir, '-A', 'trust', '-U', owner, '--no-sync', '-E', 'UTF8', '--locale=C']);
    await writeFile(policyFile, [
      '# demo policy written by pgbk demo',
      'strategy: pitr',
      'postgres:',
      `  url: ${url}`,
      `  bin_dir: ${binDir}`,
      'repository:',
      `  url: file://${join(base, 'repository')}`,
      '',
    ].join('\n'));
    if (isRoot()) await chownToPostgres(policyFile);
    const conf = [
      `port = ${port}`,
      `listen_addresses = '127.0.0.1'`,
      `unix_socket_directories = '${base}'`,
      'wal_level = replica',
      'archive_mode = on',
      `archive_command = '${pgbk} archive-push --policy ${policyFile} %p'`,
      '',
    ];
    say('   postgresql.conf gets:');
    for (const line of conf.slice(3, 6)) say(`     ${line}`);
    await writeFile(join(dataDir, 'postgresql.conf'), `${await readFile(join(dataDir, 'postgresql.conf'), 'utf8')}\n${conf.join('\n')}`);
    await asOwner(join(binDir, 'pg_ctl'), ['-D', dataDir, '-l', join(base, 'server.log'), '-w', 'start']);
    started.push(dataDir);
    say('\n   the repository learns which cluster it belongs to:');
    await runPgbk(['init']);
    const pg = (await import('pg')).default;
    const db = new pg.Client({connectionString: url});
    await db.connect();
    try {
      await db.query(`create table orders (id int primary key, customer text not null, amount numeric(10,2) not null)`);
      await db.query(`insert into orders select g, 'customer ' || (g % 97), (g * 7 % 1000) / 10.0 from generate_series(1, 5000) g`);

      say('\n== 2. a base backup');
      await runPgbk(['backup']);

      say('\n== 3. business as usual after the backup');
      await db.query(`update orders set amount = amount + 1 where id % 10 = 0`);
      await db.query(`insert into orders select g, 'late customer', 42 from generate_series(5001, 6000) g`);
      const snapshot = await db.query(`select count(*)::int as rows, sum(amount)::text as total, md5(string_agg(id || ':' || amount, ',' order by id)) as digest from orders`);
      const target = (await db.query(`select to_char(now() at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00' as t`)).rows[0].t as string;
      const expected = snapshot.rows[0];
      say(`   at ${target}: ${expected.rows} rows, total ${expected.total}, digest ${expected.digest}`);
      await new Promise((resolve) => setTimeout(resolve, 1100));

      say('\n== 4. the incident: someone drops the table');
      await db.query(`drop table orders`);
      const {rows: [switched]} = await db.query(`select pg_walfile_name(pg_switch_wal()) as wal`);
      await waitArchived(db, switched.wal);
      await runPgbk(['list']);

      say(`\n== 5. point-in-time restore to ${target}, started on port ${restorePort}`);
      await runPgbk(['restore', '--target-time', target, '--to', restoreDir, '--start', '--port', String(restorePort)]);
      started.push(restoreDir);

      say('\n== 6. compare');
      const restored = new pg.Client({connectionString: `postgresql://${owner}@127.0.0.1:${restorePort}/postgres`});
      await restored.connect();
      let got;
      try {
        got = (await restored.query(`select count(*)::int as rows, sum(amount)::text as total, md5(string_agg(id || ':' || amount, ',' order by id)) as digest from orders`)).rows[0];
      } finally {
        await restored.end();
      }
      say(`   restored: ${got.rows} rows, total ${got.total}, digest ${got.digest}`);
      if (got.rows !== expected.rows || got.total !== expected.total || got.digest !== expected.digest) {
        throw new DemoError('the restored rows differ from the rows recorded at the target');
      }
      say('   OK: the restored database holds exactly the rows of the target time');
    } finally {
      await db.end().catch(() => undefined);
    }
  } finally {
    for (const dir of started.reverse()) {
      await asOwner(join(binDir, 'pg_ctl'), ['-D', dir, '-m', 'immediate', '-w', 'stop']).catch(() => undefined);
    }
    if (keep) say(`\nkept ${base}`);
    else await rm(base, {recursive: true, force: true});
  }
}

async function waitArchived(db: import('pg').Client, walFile: string): Promise<void> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const {rows: [row]} = await db.query(`select last_archived_wal, last_failed_wal, failed_count from pg_stat_archiver`);
    if (row.last_archived_wal && row.last_archived_wal >= walFile) return;
    if (Date.now() > deadline) throw new DemoError(`WAL ${walFile} was not archived within 60s (last failed: ${row.last_failed_wal ?? 'none'})`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

async function chownToPostgres(path: string): Promise<void> {
  const {stdout: uid} = await execa('id', ['-u', 'postgres']);
  const {stdout: gid} = await execa('id', ['-g', 'postgres']);
  await chown(path, Number(uid), Number(gid));
}
