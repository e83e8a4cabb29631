// Logs that fit where they land: every line pgbk writes to stderr starts with `pgbk:` (archive_command's stderr is
// PostgreSQL's log), PGBK_LOG_LEVEL drops what is below it, the detached prefetcher's failures reach the operator
// (a log file in pg_wal and a line on the next archive-get), and `pgbk schedule` writes only JSON lines, with the
// syslog priority prefix when its output is the journal (JOURNAL_STREAM naming that very file).

import {spawn} from 'node:child_process';
import {chmodSync, closeSync, existsSync, mkdirSync, openSync, readFileSync, statSync, writeFileSync} from 'node:fs';
import {join} from 'node:path';
import {describe, expect, it} from 'vitest';
import {baseEnv, pgbkBin, repoRoot, runPgbk} from '../helpers/cli.js';
import {chownToPostgres, isRoot, makeTempDir, waitFor} from '../helpers/cluster.js';
import {writePolicy} from '../helpers/pitr.js';

/** A policy whose postgres.url holds a password, world-readable (pgbk warns about that), with a local repository. */
function secretPolicy(dir: string, name = 'logs'): string {
  const repo = join(dir, 'repo');
  mkdirSync(repo, {recursive: true});
  chownToPostgres(repo);
  const file = writePolicy(dir, name, {
    strategy: 'pitr', postgres: {url: 'postgresql://postgres:s3cret@127.0.0.1:1/postgres'}, repository: {url: `file://${repo}`},
    schedule: {backup: '0 0 1 1 *'},
  });
  chmodSync(file, 0o644);
  chmodSync(dir, 0o755);
  return file;
}

describe('pgbk logs', () => {
  it('prefixes every stderr line with pgbk: (hints included) and honours PGBK_LOG_LEVEL', async () => {
    const dir = makeTempDir('pgbk-logs-');
    const policy = secretPolicy(dir);
    const dest = join(dir, 'RECOVERYXLOG');
    const result = await runPgbk(['archive-get', '000000010000000000000001', dest, '--policy', policy]);
    expect(result.exitCode).toBeGreaterThanOrEqual(1);
    const lines = result.stderr.split('\n').filter(Boolean);
    expect(lines.length).toBeGreaterThan(1);
    for (const line of lines) expect(line).toMatch(/^pgbk: /);
    expect(result.stderr).toMatch(/^pgbk: warning: .* holds a secret and is readable by every user/m);
    expect(result.stderr).toMatch(/^pgbk: error: /m);
    expect(result.stderr).toMatch(/^pgbk: hint: /m);
    expect(result.stderr).not.toMatch(/^HINT:/m);

    const quiet = await runPgbk(['archive-get', '000000010000000000000001', dest, '--policy', policy], {env: {PGBK_LOG_LEVEL: 'error'}});
    expect(quiet.exitCode).toBe(result.exitCode);
    expect(quiet.stderr).not.toMatch(/warning/);
    expect(quiet.stderr).toMatch(/^pgbk: error: /m);
  });

  it('records a failure of the detached prefetcher in pg_wal and says so on the next archive-get', async () => {
    const dir = makeTempDir('pgbk-logs-');
    const policy = secretPolicy(dir);
    const dataDir = join(dir, 'data');
    mkdirSync(join(dataDir, 'pg_wal'), {recursive: true});
    writeFileSync(join(dataDir, 'PG_VERSION'), '15\n');
    for (const path of [dataDir, join(dataDir, 'pg_wal'), join(dataDir, 'PG_VERSION')]) chownToPostgres(path);
    // The prefetcher as restore_command starts it, with a policy it cannot use (an unset variable).
    const broken = writePolicy(dir, 'broken', {strategy: 'pitr', postgres: {url: 'postgresql://postgres@127.0.0.1:1/postgres'}, repository: {url: '${PGBK_TEST_UNSET_REPO}'}});
    const prefetch = await runPgbk(['archive-prefetch', '000000010000000000000001', '--policy', broken], {cwd: dataDir});
    expect(prefetch.exitCode).toBe(2);
    const logFile = join(dataDir, 'pg_wal', 'pgbk-background.log');
    expect(readFileSync(logFile, 'utf8')).toMatch(/^\S+Z pgbk: archive-prefetch: .*PGBK_TEST_UNSET_REPO/m);
    // The next archive-get pgbk runs there says it once, into PostgreSQL's log.
    const get = await runPgbk(['archive-get', '000000010000000000000002', 'pg_wal/RECOVERYXLOG', '--policy', policy], {cwd: dataDir});
    expect(get.stderr).toMatch(new RegExp(`^pgbk: warning: a background helper failed since the last report; last: archive-prefetch: .*PGBK_TEST_UNSET_REPO.* \\(all of them in ${logFile.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}\\)$`, 'm'));
    const again = await runPgbk(['archive-get', '000000010000000000000002', 'pg_wal/RECOVERYXLOG', '--policy', policy], {cwd: dataDir});
    expect(again.stderr).not.toMatch(/background helper/);
  });

  it('under schedule, writes only JSON lines — warnings of any module too — with <N> priorities into the journal', async () => {
    const dir = makeTempDir('pgbk-logs-');
    secretPolicy(dir);
    const out = join(makeTempDir('pgbk-journal-'), 'journal');
    writeFileSync(out, '');
    chownToPostgres(out);
    const {dev, ino} = statSync(out);
    const fd = openSync(out, 'a');
    const env = {...baseEnv(), JOURNAL_STREAM: `${dev}:${ino}`};
    const command = ['env', '-i', ...Object.entries(env).map(([name, value]) => `${name}=${value}`), process.execPath, pgbkBin, 'schedule', '--policies', dir];
    const [file, argv] = isRoot ? ['runuser', ['-u', 'postgres', '--', ...command]] : [command[0]!, command.slice(1)];
    // As systemd does: stdout and stderr are one stream into the journal.
    const child = spawn(file, argv, {cwd: repoRoot, stdio: ['ignore', fd, fd]});
    closeSync(fd);
    const exited = new Promise<number | null>((resolve) => child.once('close', resolve));
    const lines = () => readFileSync(out, 'utf8').split('\n').filter(Boolean);
    try {
      await waitFor(() => lines().some((line) => line.includes('"event":"started"')), {timeoutMs: 30_000, what: 'the scheduler to start'});
      const started = JSON.parse(lines().find((line) => line.includes('"event":"started"'))!.replace(/^<\d>/, ''));
      process.kill(started.pid, 'SIGTERM');
      expect(await exited).toBe(0);
    } finally {
      child.kill('SIGKILL');
    }
    const all = lines();
    expect(all.length).toBeGreaterThan(2);
    for (const line of all) {
      const match = /^<([3467])>(\{.*\})$/.exec(line);
      expect(match, line).not.toBeNull();
      const entry = JSON.parse(match![2]!);
      expect(Number(match![1])).toBe({error: 3, warn: 4, info: 6, debug: 7}[entry.level as string]);
    }
    const warning = all.map((line) => JSON.parse(line.slice(3))).find((entry) => /holds a secret/.test(String(entry.message)));
    expect(warning).toMatchObject({level: 'warn', event: 'warning'});
    expect(all.some((line) => line.startsWith('<6>') && line.includes('"event":"stopped"'))).toBe(true);
    expect(existsSync(out)).toBe(true);
  });
});
