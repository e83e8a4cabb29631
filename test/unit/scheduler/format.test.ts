import {mkdtempSync, rmSync} from 'node:fs';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import {describe, expect, it} from 'vitest';
import {formatLogLine, lastLines} from '../../../src/scheduler/log.js';
import {buildFamilies, buildInfoFamily, formatPrometheus, jobRunsFamily, processFamilies, rpoMet, type PolicyMetrics} from '../../../src/scheduler/metrics.js';
import {parseListen} from '../../../src/scheduler/daemon.js';
import {removeUnfinishedBackups, parseOutput, writeJobResult, readJobResult, type JobResult} from '../../../src/scheduler/jobs.js';
import {LocalRepository} from '../../../src/storage/local/local-repository.js';

const now = new Date('2026-11-26T10:00:00Z');

describe('JSON log lines', () => {
  it('is one line of JSON, time first, undefined fields left out, newlines escaped', () => {
    const line = formatLogLine({event: 'failure', policy: 'orders', job: 'backup', durationMs: 12, error: 'exit 1: a\nb', extra: undefined}, now);
    expect(line.endsWith('\n')).toBe(true);
    expect(line.trimEnd().includes('\n')).toBe(false);
    expect(Object.keys(JSON.parse(line))).toEqual(['time', 'level', 'event', 'policy', 'job', 'durationMs', 'error']);
    expect(JSON.parse(line)).toEqual({time: now.toISOString(), level: 'error', event: 'failure', policy: 'orders', job: 'backup', durationMs: 12, error: 'exit 1: a\nb'});
    expect(JSON.parse(formatLogLine({event: 'start'}, now)).level).toBe('info');
  });

  it('keeps the last lines of stderr, bounded', () => {
    expect(lastLines('a\n\nb\nc\n', 2)).toBe('b\nc');
    expect(lastLines('x'.repeat(5000)).length).toBeLessThanOrEqual(2001);
  });
});

describe('Prometheus text format', () => {
  it('writes HELP, TYPE and samples with escaped labels, skipping empty families', () => {
    const text = formatPrometheus([
      {name: 'm_one', help: 'first', type: 'gauge', samples: [{labels: {policy: 'a"b\\c\nd'}, value: 1.5}, {labels: {}, value: NaN}]},
      {name: 'm_empty', help: 'none', type: 'gauge', samples: []},
    ]);
    expect(text).toBe('# HELP m_one first\n# TYPE m_one gauge\nm_one{policy="a\\"b\\\\c\\nd"} 1.5\nm_one NaN\n');
  });

  const base: PolicyMetrics = {
    policy: 'orders', strategy: 'pitr', rpoSeconds: 300, running: ['backup'], collectError: false,
    backups: 2, backupBytes: 2048, newestBackupStop: new Date('2026-11-26T02:00:00Z'), newestArchivedWal: new Date('2026-11-26T09:58:00Z'),
    jobs: {
      backup: {job: 'backup', policy: 'orders', startedAt: '2026-11-26T02:00:00Z', finishedAt: '2026-11-26T02:01:00Z', ok: true, durationMs: 60_000,
        exitCode: 0, lastSuccessAt: '2026-11-26T02:01:00.000Z', lastSuccessDurationMs: 60_000},
      expire: {job: 'expire', policy: 'orders', startedAt: '2026-11-26T02:30:00Z', finishedAt: '2026-11-26T02:30:02Z', ok: false, durationMs: 2000, exitCode: 1},
    },
  };

  it('reports job, backup, WAL and objective metrics per policy', () => {
    const text = formatPrometheus(buildFamilies([base], now));
    expect(text).toContain(`pgbk_job_last_success_timestamp_seconds{policy="orders",job="backup"} ${Date.parse('2026-11-26T02:01:00Z') / 1000}\n`);
    expect(text).not.toContain('pgbk_job_last_success_timestamp_seconds{policy="orders",job="expire"}');
    expect(text).toContain('pgbk_job_last_duration_seconds{policy="orders",job="backup"} 60\n');
    expect(text).toContain('pgbk_job_last_result{policy="orders",job="backup"} 1\n');
    expect(text).toContain('pgbk_job_last_result{policy="orders",job="expire"} 0\n');
    expect(text).toContain('pgbk_job_running{policy="orders",job="backup"} 1\n');
    expect(text).toContain('pgbk_backups{policy="orders"} 2\n');
    expect(text).toContain('pgbk_backup_bytes{policy="orders"} 2048\n');
    expect(text).toContain(`pgbk_wal_last_archived_timestamp_seconds{policy="orders"} ${Date.parse('2026-11-26T09:58:00Z') / 1000}\n`);
    expect(text).toContain(`pgbk_backup_last_success_timestamp_seconds{policy="orders"} ${Date.parse('2026-11-26T02:00:00Z') / 1000}\n`);
    expect(text).not.toMatch(/_age_seconds/);
    expect(text).toContain('pgbk_objective_met{policy="orders",objective="rpo"} 1\n');
    expect(text).toContain('# TYPE pgbk_backups gauge\n');
  });

  it('exposes the newest drill: result, time, RTO, RPO and the RTO objective (absent without a drill)', () => {
    expect(formatPrometheus(buildFamilies([base], now))).not.toContain('objective="rto"');
    const drilled = {...base, lastDrill: {ok: true, finishedAt: new Date('2026-11-26T04:00:00Z'), rtoSeconds: 42.5, rpoSeconds: 0.3, rtoMet: true, rpoMet: true}};
    const text = formatPrometheus(buildFamilies([drilled], now));
    expect(text).toContain('pgbk_objective_met{policy="orders",objective="rto"} 1\n');
    expect(text).toContain('pgbk_drill_last_ok{policy="orders"} 1\n');
    expect(text).toContain(`pgbk_drill_last_timestamp_seconds{policy="orders"} ${Date.parse('2026-11-26T04:00:00Z') / 1000}\n`);
    expect(text).toContain('pgbk_drill_rto_seconds{policy="orders"} 42.5\n');
    expect(text).toContain('pgbk_drill_rpo_seconds{policy="orders"} 0.3\n');
    const slow = formatPrometheus(buildFamilies([{...drilled, lastDrill: {...drilled.lastDrill, rtoMet: false}}], now));
    expect(slow).toContain('pgbk_objective_met{policy="orders",objective="rto"} 0\n');
    const failed = formatPrometheus(buildFamilies([{...drilled, lastDrill: {...drilled.lastDrill, ok: false}}], now));
    expect(failed).toContain('pgbk_drill_last_ok{policy="orders"} 0\n');
    expect(failed).toContain('pgbk_objective_met{policy="orders",objective="rto"} 0\n');
  });

  it('misses the RPO without a backup, with old WAL, and (dump) with an old dump', () => {
    expect(rpoMet(base, now)).toBe(true);
    expect(rpoMet({...base, backups: 0}, now)).toBe(false);
    expect(rpoMet({...base, newestArchivedWal: new Date('2026-11-26T09:50:00Z')}, now)).toBe(false);
    expect(rpoMet({...base, newestArchivedWal: undefined}, now)).toBe(false);
    expect(rpoMet({...base, strategy: 'dump', rpoSeconds: 86400}, now)).toBe(true);
    expect(rpoMet({...base, strategy: 'dump', rpoSeconds: 3600}, now)).toBe(false);
  });
});

describe('--listen addresses', () => {
  it.each([
    ['127.0.0.1:9187', {host: '127.0.0.1', port: 9187}],
    ['0.0.0.0:9187', {host: '0.0.0.0', port: 9187}],
    ['[::1]:9187', {host: '::1', port: 9187}],
    [':9187', {host: '0.0.0.0', port: 9187}],
    ['9187', {host: '127.0.0.1', port: 9187}],
    ['localhost:80', {host: 'localhost', port: 80}],
  ])('%s', (text, expected) => expect(parseListen(text)).toEqual(expected));
  it.each(['', 'host', 'host:', 'host:0', 'host:70000', 'a:b:1'])('refuses %j', (text) => expect(parseListen(text)).toBeUndefined());
});

describe('job records and leftovers', () => {
  it('parses --json output, keeps other output as text', () => {
    expect(parseOutput('{\n "id": "x"\n}\n')).toEqual({id: 'x'});
    expect(parseOutput('')).toBeUndefined();
    expect(parseOutput('20261126T020000Z\n')).toEqual({text: '20261126T020000Z'});
  });

  it('carries the last success over a failure in jobs/<job>/last.json', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pgbk-jobs-'));
    try {
      const repo = new LocalRepository(dir);
      const run = (ok: boolean, finishedAt: string): JobResult => ({job: 'backup', policy: 'p', startedAt: finishedAt, finishedAt, ok, durationMs: 5, exitCode: ok ? 0 : 1});
      await writeJobResult(repo, run(true, '2026-11-26T01:00:00.000Z'));
      await writeJobResult(repo, run(false, '2026-11-26T02:00:00.000Z'));
      expect(await readJobResult(repo, 'backup')).toMatchObject({ok: false, finishedAt: '2026-11-26T02:00:00.000Z', lastSuccessAt: '2026-11-26T01:00:00.000Z'});
    } finally {
      rmSync(dir, {recursive: true, force: true});
    }
  });

  it('removes backup folders begun since the run that have no manifest, and nothing else', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pgbk-jobs-'));
    try {
      const repo = new LocalRepository(dir);
      const body = Buffer.from('x');
      await repo.put('backups/20261126T010000Z/base.tar.gz', body); // older, unfinished: not ours
      await repo.put('backups/20261126T020000Z/base.tar.gz', body);
      await repo.put('backups/20261126T020000Z/manifest.json', body); // complete
      await repo.put('backups/20261126T020001Z/base.tar.gz', body); // ours, unfinished
      const removed = await removeUnfinishedBackups(repo, new Date('2026-11-26T02:00:00.500Z'));
      expect(removed).toEqual(['20261126T020001Z']);
      const left: string[] = [];
      for await (const object of repo.list('backups/')) left.push(object.key);
      expect(left).toEqual(['backups/20261126T010000Z/base.tar.gz', 'backups/20261126T020000Z/base.tar.gz', 'backups/20261126T020000Z/manifest.json']);
    } finally {
      rmSync(dir, {recursive: true, force: true});
    }
  });
});

describe('build info, job run counters and process metrics', () => {
  it('exposes pgbk_build_info with the package and Node.js versions', async () => {
    const {readFileSync} = await import('node:fs');
    const version = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')).version as string;
    expect(formatPrometheus([buildInfoFamily()])).toBe(
      `# HELP pgbk_build_info Always 1: the pgbk and Node.js versions as labels\n# TYPE pgbk_build_info gauge\npgbk_build_info{version="${version}",node_version="${process.version}"} 1\n`);
  });

  it('counts job runs by result, every series from 0', () => {
    const text = formatPrometheus([jobRunsFamily(['orders'], new Map([['orders\0backup\0success', 3], ['orders\0drill\0failure', 1]]))]);
    expect(text).toContain('# TYPE pgbk_job_runs_total counter\n');
    expect(text).toContain('pgbk_job_runs_total{policy="orders",job="backup",result="success"} 3\n');
    expect(text).toContain('pgbk_job_runs_total{policy="orders",job="backup",result="failure"} 0\n');
    expect(text).toContain('pgbk_job_runs_total{policy="orders",job="drill",result="failure"} 1\n');
    expect(text).toContain('pgbk_job_runs_total{policy="orders",job="expire",result="success"} 0\n');
  });

  it('reports the standard process metrics of this process', async () => {
    const text = formatPrometheus(await processFamilies());
    expect(text).toMatch(/^process_cpu_seconds_total [\d.e-]+$/m);
    expect(text).toMatch(/^process_resident_memory_bytes [1-9]\d*$/m);
    const start = Number(/^process_start_time_seconds (\d+)$/m.exec(text)?.[1]);
    expect(Math.abs(start - (Date.now() / 1000 - process.uptime()))).toBeLessThan(2);
    expect(text).toMatch(/^process_open_fds [1-9]\d*$/m);
    expect(text).toMatch(/^process_max_fds [1-9]\d*$/m);
    expect(text).toMatch(/^nodejs_heap_size_used_bytes [1-9]\d*$/m);
  });
});

describe('scheduler log lines: level and the journal', () => {
  it('leaves out entries below PGBK_LOG_LEVEL and prefixes the syslog priority for the journal', async () => {
    const {createLog} = await import('../../../src/scheduler/log.js');
    const written: string[] = [];
    const out = {write: (text: string) => written.push(text)} as unknown as NodeJS.WritableStream;
    const log = createLog(out, () => now, {level: 'warn', journal: true});
    log({event: 'start', policy: 'orders'});
    log({event: 'skipped', level: 'warn', policy: 'orders'});
    log({event: 'failure', policy: 'orders'});
    expect(written.map((line) => line.slice(0, 3))).toEqual(['<4>', '<3>']);
    expect(JSON.parse(written[1]!.slice(3))).toMatchObject({level: 'error', event: 'failure'});
  });
});
