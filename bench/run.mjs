#!/usr/bin/env node
// pgbk benchmark (`npm run bench` = build + this script). Plain Node ESM, no build step of its own.
//
// On a real throwaway cluster and an S3 endpoint (s3rver started here, or PGBK_TEST_S3_ENDPOINT with
// PGBK_TEST_S3_ACCESS_KEY_ID / PGBK_TEST_S3_SECRET_ACCESS_KEY / PGBK_TEST_S3_BUCKET / PGBK_TEST_S3_REGION) it measures:
//   1. archive-push latency of one 16 MiB segment, each push a fresh process (median, p99, mean)
//   2. archive throughput: segments/s for PostgreSQL's own archiver to drain a backlog of ready segments
//   3. full backup MB/s of a pgbench database, stored size, peak RSS; floor: pg_basebackup -Ft and cp -r to local disk
//   4. restore + replay to a target 32 segments past the backup (pgbk restore --start); floor: cp of a local
//      pg_basebackup + replay from a local WAL directory
//   5. pgBackRest, when installed; else the reference figures from the issue
// and prints a table (also written to .bench/results.json).
//
// Env: PGBK_BENCH_SCALE (pgbench scale, default 30), PGBK_BENCH_QUICK=1 (scale 5, fewer segments),
//      PGBK_BENCH_KEEP=1 (keep the temp dir, clusters stopped).
// As root every PostgreSQL binary and every pgbk command runs as the postgres OS user (runuser -u postgres --).

import {spawn, execFileSync} from 'node:child_process';
import {chmodSync, chownSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync, appendFileSync} from 'node:fs';
import {createServer} from 'node:net';
import {tmpdir} from 'node:os';
import {dirname, join, resolve} from 'node:path';
import {fileURLToPath} from 'node:url';
import {performance} from 'node:perf_hooks';
import {randomBytes} from 'node:crypto';

const repoDir = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const pgbkBin = join(repoDir, 'bin', 'pgbk');
const QUICK = process.env.PGBK_BENCH_QUICK === '1';
const SCALE = Number(process.env.PGBK_BENCH_SCALE || (QUICK ? 5 : 30));
const PUSH_COUNT = QUICK ? 10 : 20;
const DRAIN_SEGMENTS = QUICK ? 24 : 96;
const RESTORE_SEGMENTS = QUICK ? 8 : 32;
const KEEP = process.env.PGBK_BENCH_KEEP === '1';
const SEG = 16 * 1024 * 1024;
const MB = 1e6;
const isRoot = process.getuid?.() === 0;
const T0 = performance.now();
const AWS_ENV = {AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true'};
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true'; // this process lists the bucket with the SDK too

const targets = {pushP99: 0.1, drain: 10, backup: 150, restore: 10, rss: 150};
const reference = {
  label: 'pgBackRest (reference, measured elsewhere: 2 cores, loopback S3, 493 MB database)',
  pushGz: 1.03, pushLz4: 0.27, drain: 2.0, backup: 76, restore: 20.4,
};

// ------------------------------------------------------------------------------------------------
// output

const log = (text) => process.stdout.write(`${text}\n`);
const step = (text) => log(`\n[${((performance.now() - T0) / 1000).toFixed(0).padStart(4)}s] == ${text}`);
const fmt = (n, digits = 2) => (n === undefined || n === null || Number.isNaN(n) ? '-' : Number(n).toFixed(digits));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

class BenchError extends Error {}

// ------------------------------------------------------------------------------------------------
// processes: every child bounded by a timeout, in its own process group so it can be killed as a tree

const live = new Set();

function run(file, args, opts = {}) {
  const {asPg = false, env = {}, timeoutMs = 120_000, input, cwd, rss = false, check = true, quiet = false} = opts;
  let argv = [file, ...args];
  let rssFile;
  if (rss && existsSync('/usr/bin/time')) {
    rssFile = join(state.base ?? tmpdir(), `.rss-${randomBytes(4).toString('hex')}`);
    argv = ['/usr/bin/time', '-f', '%M', '-o', rssFile, ...argv];
  }
  const envArgs = Object.entries(env).map(([k, v]) => `${k}=${v}`);
  if (asPg && isRoot) argv = ['runuser', '-u', 'postgres', '--', 'env', ...envArgs, ...argv];
  else if (envArgs.length) argv = ['env', ...envArgs, ...argv];
  return new Promise((resolvePromise, reject) => {
    const started = performance.now();
    const child = spawn(argv[0], argv.slice(1), {cwd: cwd ?? state.base ?? '/', detached: true, stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe']});
    live.add(child);
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    let peakKb = 0;
    let poller;
    if (rss && !rssFile) poller = setInterval(() => { peakKb = Math.max(peakKb, treeHwmKb(child.pid)); }, 100);
    child.stdout.setEncoding('utf8').on('data', (d) => { stdout += d; if (stdout.length > 4e6) stdout = stdout.slice(-2e6); });
    child.stderr.setEncoding('utf8').on('data', (d) => { stderr += d; if (stderr.length > 4e6) stderr = stderr.slice(-2e6); });
    if (input !== undefined) child.stdin.end(input);
    const timer = setTimeout(() => {
      timedOut = true;
      killTree(child, 'SIGTERM');
      setTimeout(() => killTree(child, 'SIGKILL'), 5000).unref();
    }, timeoutMs);
    child.on('error', (err) => { clearTimeout(timer); live.delete(child); reject(err); });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (poller) clearInterval(poller);
      live.delete(child);
      const seconds = (performance.now() - started) / 1000;
      if (rssFile) {
        try { peakKb = Number(readFileSync(rssFile, 'utf8').trim().split('\n').pop()) || 0; } catch { /* killed */ }
        rmSync(rssFile, {force: true});
      }
      const result = {code: code ?? 128, signal, stdout, stderr, seconds, timedOut, rssMb: peakKb ? peakKb * 1024 / (1024 * 1024) : undefined};
      if (check && (code !== 0 || timedOut)) {
        const what = `${file.split('/').pop()} ${args.join(' ')}`;
        const err = new BenchError(`${what}\n  ${timedOut ? `timed out after ${timeoutMs / 1000}s` : `exited ${code ?? signal}`}\n  stderr: ${stderr.trim().split('\n').slice(-15).join('\n          ') || '(empty)'}${stdout.trim() ? `\n  stdout: ${stdout.trim().split('\n').slice(-5).join('\n          ')}` : ''}`);
        err.result = result;
        reject(err);
      } else {
        if (!quiet && stderr.trim() && code !== 0) log(stderr.trim());
        resolvePromise(result);
      }
    });
  });
}

function killTree(child, signal) {
  try { process.kill(-child.pid, signal); } catch { /* gone */ }
}

/** Sum of VmHWM over a process and its descendants (fallback when /usr/bin/time is missing). */
function treeHwmKb(pid) {
  let total = 0;
  const kids = new Map();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const ppid = Number(/^PPid:\s+(\d+)/m.exec(readFileSync(`/proc/${entry}/status`, 'utf8'))?.[1]);
      if (!kids.has(ppid)) kids.set(ppid, []);
      kids.get(ppid).push(Number(entry));
    } catch { /* gone */ }
  }
  const stack = [pid];
  while (stack.length) {
    const p = stack.pop();
    try {
      const status = readFileSync(`/proc/${p}/status`, 'utf8');
      const name = /^Name:\s+(\S+)/m.exec(status)?.[1];
      if (name === 'node') total += Number(/^VmHWM:\s+(\d+)/m.exec(status)?.[1] ?? 0);
    } catch { /* gone */ }
    stack.push(...(kids.get(p) ?? []));
  }
  return total;
}

// ------------------------------------------------------------------------------------------------
// state and cleanup

const state = {base: undefined, s3: undefined, s3Child: undefined, s3Dir: undefined, running: new Set(), binDir: undefined};

let cleaning;
async function cleanup() {
  if (cleaning) return cleaning;
  cleaning = (async () => {
    for (const child of live) killTree(child, 'SIGKILL');
    for (const dir of [...state.running].reverse()) {
      await run(join(state.binDir, 'pg_ctl'), ['-D', dir, '-m', 'immediate', '-w', '-t', '30', 'stop'], {asPg: true, timeoutMs: 40_000, check: false, quiet: true}).catch(() => undefined);
      killPostmaster(dir);
      state.running.delete(dir);
    }
    if (state.s3 && state.s3.kind === 'external' && state.s3.prefixes) await deleteExternalPrefixes().catch((e) => log(`warning: could not delete the bench objects: ${e.message}`));
    if (state.s3Child && state.s3Child.exitCode === null) {
      const exited = new Promise((r) => state.s3Child.once('exit', r));
      state.s3Child.kill('SIGTERM');
      const t = setTimeout(() => state.s3Child.kill('SIGKILL'), 5000);
      await Promise.race([exited, sleep(8000)]);
      clearTimeout(t);
    }
    if (state.s3Dir) rmSync(state.s3Dir, {recursive: true, force: true});
    if (state.base) {
      if (KEEP) log(`kept ${state.base}`);
      else rmSync(state.base, {recursive: true, force: true});
    }
  })();
  return cleaning;
}

function killPostmaster(dir) {
  try {
    const pid = Number(readFileSync(join(dir, 'postmaster.pid'), 'utf8').split('\n')[0]);
    if (pid > 0) process.kill(pid, 'SIGKILL');
  } catch { /* not running */ }
}

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    log(`\n${signal}: cleaning up`);
    const hard = setTimeout(() => process.exit(130), 60_000);
    cleanup().finally(() => { clearTimeout(hard); process.exit(130); });
  });
}

// ------------------------------------------------------------------------------------------------
// PostgreSQL

function findBinDir() {
  const candidates = [];
  try { candidates.push(execFileSync('pg_config', ['--bindir'], {encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore']}).trim()); } catch { /* none */ }
  try {
    candidates.push(...readdirSync('/usr/lib/postgresql').filter((v) => /^\d+(\.\d+)?$/.test(v))
      .sort((a, b) => Number.parseFloat(b) - Number.parseFloat(a)).map((v) => `/usr/lib/postgresql/${v}/bin`));
  } catch { /* none */ }
  const dir = candidates.find((d) => existsSync(join(d, 'initdb')) && existsSync(join(d, 'pg_ctl')));
  if (!dir) throw new BenchError(`PostgreSQL binaries not found (searched ${candidates.join(', ') || 'pg_config --bindir, /usr/lib/postgresql/*/bin'})`);
  return dir;
}

let pgIds;
function chownPg(path) {
  if (!isRoot) return;
  if (!pgIds) {
    const [, , uid, gid] = execFileSync('getent', ['passwd', 'postgres'], {encoding: 'utf8'}).trim().split(':');
    pgIds = {uid: Number(uid), gid: Number(gid)};
  }
  chownSync(path, pgIds.uid, pgIds.gid);
}

function freePort() {
  return new Promise((res, rej) => {
    const server = createServer();
    server.on('error', rej);
    server.listen(0, '127.0.0.1', () => {
      const port = server.address().port;
      server.close(() => res(port));
    });
  });
}

const pgTool = (tool) => join(state.binDir, tool);

function makeCluster(dataDir, port) {
  const c = {
    dataDir, port,
    async psql(sql, db = 'postgres', timeoutMs = 600_000) {
      const r = await run(pgTool('psql'), ['-X', '-At', '-v', 'ON_ERROR_STOP=1', '-h', state.base, '-p', String(port), '-U', 'postgres', '-d', db, '-c', sql], {asPg: true, timeoutMs});
      return r.stdout.trim();
    },
    async start() {
      await run(pgTool('pg_ctl'), ['-D', dataDir, '-l', join(state.base, `server-${port}.log`), '-w', '-t', '120', 'start'], {asPg: true, env: AWS_ENV, timeoutMs: 150_000});
      state.running.add(dataDir);
    },
    async stop(mode = 'fast') {
      await run(pgTool('pg_ctl'), ['-D', dataDir, '-m', mode, '-w', '-t', '120', 'stop'], {asPg: true, timeoutMs: 150_000, check: false});
      killPostmaster(dataDir);
      state.running.delete(dataDir);
    },
    async reload() { await c.psql('select pg_reload_conf()'); await sleep(300); },
    async setArchiveCommand(command) {
      await c.psql(`alter system set archive_command = '${command.replace(/'/g, "''")}'`);
      await c.reload();
    },
  };
  return c;
}

async function waitArchived(cluster, walFile, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const row = await cluster.psql(`select coalesce(last_archived_wal, ''), archived_count, coalesce(last_failed_wal, ''), failed_count from pg_stat_archiver`);
    const [last, count, failed, failedCount] = row.split('|');
    if (last && last >= walFile) return {last, count: Number(count)};
    if (Date.now() > deadline) throw new BenchError(`WAL ${walFile} not archived within ${timeoutMs / 1000}s (last archived ${last || 'none'}, last failed ${failed || 'none'}, ${failedCount} failures; see ${state.base}/server-${cluster.port}.log)`);
    await sleep(100);
  }
}

const lsnToNum = (lsn) => { const [hi, lo] = lsn.split('/'); return parseInt(hi, 16) * 2 ** 32 + parseInt(lo, 16); };

// ------------------------------------------------------------------------------------------------
// S3

async function startS3() {
  const external = process.env.PGBK_TEST_S3_ENDPOINT;
  const prefix = `bench-${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`;
  if (external) {
    state.s3 = {
      kind: 'external', endpoint: external.replace(/\/+$/, ''), bucket: process.env.PGBK_TEST_S3_BUCKET || 'pgbk-test',
      accessKeyId: process.env.PGBK_TEST_S3_ACCESS_KEY_ID || 'minioadmin', secretAccessKey: process.env.PGBK_TEST_S3_SECRET_ACCESS_KEY || 'minioadmin',
      region: process.env.PGBK_TEST_S3_REGION || 'us-east-1', prefix, prefixes: [],
    };
    const {S3Client, HeadBucketCommand, CreateBucketCommand} = await import('@aws-sdk/client-s3');
    const client = new S3Client(s3Config());
    try {
      await client.send(new HeadBucketCommand({Bucket: state.s3.bucket})).catch(async (err) => {
        if (err?.$metadata?.httpStatusCode !== 404) throw err;
        await client.send(new CreateBucketCommand({Bucket: state.s3.bucket}));
      });
    } finally { client.destroy(); }
    return;
  }
  state.s3Dir = mkdtempSync(join(tmpdir(), 'pgbk-bench-s3rver-'));
  const bucket = 'pgbk-bench';
  const child = spawn(process.execPath, [join(repoDir, 'test', 'helpers', 's3rver-child.mjs'), JSON.stringify({directory: state.s3Dir, bucket, address: '127.0.0.1', port: 0})], {stdio: ['pipe', 'pipe', 'pipe']});
  state.s3Child = child;
  const port = await new Promise((res, rej) => {
    let out = '';
    let err = '';
    const timer = setTimeout(() => rej(new BenchError(`s3rver did not start within 20s\n${err}`)), 20_000);
    child.stderr.setEncoding('utf8').on('data', (d) => { err = (err + d).slice(-8192); });
    child.stdout.setEncoding('utf8').on('data', (d) => {
      out += d;
      const nl = out.indexOf('\n');
      if (nl < 0) return;
      clearTimeout(timer);
      try { res(JSON.parse(out.slice(0, nl)).port); } catch { rej(new BenchError(`s3rver said ${out}`)); }
    });
    child.on('exit', (code) => { clearTimeout(timer); rej(new BenchError(`s3rver exited (${code})\n${err}`)); });
  });
  state.s3 = {kind: 's3rver', endpoint: `http://127.0.0.1:${port}`, bucket, accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER', region: 'us-east-1', prefix};
}

/**
 * A counting proxy in front of the S3 endpoint (the policies point at it): requests per archived segment are a
 * figure users pay for. Headers pass unchanged (SigV4 signs the Host the client used, which the store accepts).
 */
async function startCountingProxy(target) {
  const http = await import('node:http');
  const upstream = new URL(target);
  const counts = {};
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, 'http://x');
    const kind = url.searchParams.has('list-type') || (req.method === 'GET' && /^\/[^/]+\/?$/.test(url.pathname)) ? 'LIST'
      : url.searchParams.has('uploads') || url.searchParams.has('uploadId') ? `${req.method} multipart` : req.method;
    counts[kind] = (counts[kind] ?? 0) + 1;
    const forward = http.request({host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: req.headers}, (answer) => {
      res.writeHead(answer.statusCode, answer.headers);
      answer.pipe(res);
    });
    forward.on('error', () => res.destroy());
    req.pipe(forward);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  server.unref();
  return {
    endpoint: `http://127.0.0.1:${server.address().port}`,
    take() {
      const taken = {...counts};
      for (const key of Object.keys(counts)) delete counts[key];
      return taken;
    },
  };
}

function s3Config() {
  const s3 = state.s3;
  return {endpoint: s3.endpoint, region: s3.region, forcePathStyle: true, credentials: {accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey},
    requestChecksumCalculation: 'WHEN_REQUIRED', responseChecksumValidation: 'WHEN_REQUIRED'};
}

async function deleteExternalPrefixes() {
  const {S3Client, ListObjectsV2Command, DeleteObjectsCommand} = await import('@aws-sdk/client-s3');
  const client = new S3Client(s3Config());
  try {
    for (const prefix of state.s3.prefixes) {
      for (let i = 0; i < 1000; i++) {
        const list = await client.send(new ListObjectsV2Command({Bucket: state.s3.bucket, Prefix: `${prefix}/`}));
        if (!list.Contents?.length) break;
        await client.send(new DeleteObjectsCommand({Bucket: state.s3.bucket, Delete: {Objects: list.Contents.map((o) => ({Key: o.Key}))}}));
      }
    }
  } finally { client.destroy(); }
}

/** Size of everything stored under a prefix (s3rver: on disk; external: ListObjectsV2). */
async function storedBytes(prefix) {
  const {S3Client, ListObjectsV2Command} = await import('@aws-sdk/client-s3');
  const client = new S3Client(s3Config());
  let total = 0;
  let count = 0;
  try {
    let token;
    for (let i = 0; i < 10_000; i++) {
      const list = await client.send(new ListObjectsV2Command({Bucket: state.s3.bucket, Prefix: `${prefix}/`, ContinuationToken: token}));
      for (const o of list.Contents ?? []) { total += o.Size ?? 0; count++; }
      if (!list.IsTruncated) break;
      token = list.NextContinuationToken;
    }
  } finally { client.destroy(); }
  return {total, count};
}

function writePolicy(name, prefix, url) {
  const s3 = state.s3;
  if (s3.prefixes) s3.prefixes.push(prefix);
  const file = join(state.base, `${name}.yaml`);
  writeFileSync(file, [
    `# written by bench/run.mjs`,
    'strategy: pitr',
    'postgres:',
    `  url: ${url}`,
    `  bin_dir: ${state.binDir}`,
    'repository:',
    `  url: s3://${s3.bucket}/${prefix}`,
    `  endpoint: ${state.proxy?.endpoint ?? s3.endpoint}`,
    `  region: ${s3.region}`,
    '  force_path_style: true',
    `  access_key_id: ${JSON.stringify(s3.accessKeyId)}`,
    `  secret_access_key: ${JSON.stringify(s3.secretAccessKey)}`,
    '',
  ].join('\n'));
  chownPg(file);
  return file;
}

const pgbk = (args, policy, opts = {}) => run(process.execPath, [pgbkBin, ...args, '--policy', policy], {asPg: true, env: AWS_ENV, ...opts});

// ------------------------------------------------------------------------------------------------
// statistics

const quantile = (values, q) => {
  const sorted = [...values].sort((a, b) => a - b);
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
};
const mean = (values) => values.reduce((a, b) => a + b, 0) / values.length;

// ------------------------------------------------------------------------------------------------
// the benchmark

const results = {
  machine: {}, config: {scale: SCALE, quick: QUICK, pushCount: PUSH_COUNT, drainSegments: DRAIN_SEGMENTS, restoreSegments: RESTORE_SEGMENTS},
  pgbk: {}, floor: {}, pgbackrest: {}, errors: [],
};

function recordError(what, error) {
  const message = error instanceof BenchError ? error.message : (error?.stack ?? String(error));
  log(`!! ${what} FAILED: ${message}`);
  results.errors.push({step: what, message});
}

async function main() {
  state.binDir = findBinDir();
  const pgVersion = execFileSync(join(state.binDir, 'postgres'), ['--version'], {encoding: 'utf8'}).trim();
  results.machine = {
    cpus: (await import('node:os')).cpus().length, memGb: Number(((await import('node:os')).totalmem() / 2 ** 30).toFixed(1)),
    node: process.version, postgres: pgVersion, binDir: state.binDir,
  };
  results.machine.loadAvgAtStart = (await import('node:os')).loadavg().map((l) => Number(l.toFixed(2)));
  log(`pgbk bench: ${QUICK ? 'QUICK, ' : ''}pgbench scale ${SCALE}; ${pgVersion} from ${state.binDir}; node ${process.version}; ${results.machine.cpus} CPUs; load average ${results.machine.loadAvgAtStart.join(' ')}`);
  if (!existsSync(join(repoDir, 'dist', 'main.js'))) throw new BenchError('dist/main.js missing: run "npm run build" (npm run bench does it)');

  step('setup: S3 endpoint, temp dir, cluster');
  await startS3();
  state.proxy = await startCountingProxy(state.s3.endpoint);
  results.machine.s3 = `${state.s3.kind} ${state.s3.endpoint} bucket ${state.s3.bucket}`;
  log(`S3: ${results.machine.s3}, prefix ${state.s3.prefix}`);
  state.base = mkdtempSync(join(tmpdir(), 'pgbk-bench-'));
  chmodSync(state.base, 0o700);
  chownPg(state.base);
  const runuserOverhead = [];
  for (let i = 0; i < 5; i++) runuserOverhead.push((await run('true', [], {asPg: true})).seconds);
  results.machine.runuserOverheadS = Number(quantile(runuserOverhead, 0.5).toFixed(4));

  const dataDir = join(state.base, 'data');
  const port = await freePort();
  await run(pgTool('initdb'), ['-D', dataDir, '-A', 'trust', '-U', 'postgres', '--no-sync', '-E', 'UTF8', '--locale=C'], {asPg: true, timeoutMs: 120_000});
  const url = `postgresql://postgres@127.0.0.1:${port}/postgres`;
  const policy = writePolicy('bench', `${state.s3.prefix}/main`, url);
  // The archive_command pgbk recommends (pgbk archive-command): its shell fast path takes what the pusher archived ahead.
  const archiveCommand = JSON.parse((await pgbk(['archive-command', '--json'], policy, {timeoutMs: 60_000})).stdout).archiveCommand;
  appendFileSync(join(dataDir, 'postgresql.conf'), [
    '', '# bench/run.mjs',
    `port = ${port}`, `listen_addresses = '127.0.0.1'`, `unix_socket_directories = '${state.base}'`,
    'wal_level = replica', 'archive_mode = on',
    // the initial load's WAL is not needed by any backup: discarded, then the pgbk command is set below
    `archive_command = 'true'`,
    'max_wal_size = 1GB', 'checkpoint_timeout = 30min', 'shared_buffers = 256MB',
    'wal_keep_size = 2GB', // so the floor's local replay finds its WAL in pg_wal
    'log_checkpoints = on', '',
  ].join('\n'));
  const cluster = makeCluster(dataDir, port);
  await cluster.start();
  log(`cluster ${dataDir} on port ${port}; policy ${policy}`);
  const initialised = await pgbk(['init'], policy, {timeoutMs: 60_000});
  log(initialised.stdout.trim());

  step(`pgbench -i -s ${SCALE}`);
  await cluster.psql('create database bench');
  const init = await run(pgTool('pgbench'), ['-i', '-s', String(SCALE), '-q', '-h', state.base, '-p', String(port), '-U', 'postgres', 'bench'], {asPg: true, timeoutMs: 1_800_000});
  await cluster.psql('checkpoint');
  const dbBytes = Number(await cluster.psql(`select pg_database_size('bench')`));
  const clusterBytes = Number(await cluster.psql(`select sum(pg_database_size(oid)) from pg_database`));
  results.config.databaseBytes = dbBytes;
  results.config.clusterBytes = clusterBytes;
  log(`pgbench -i: ${fmt(init.seconds, 1)}s; pg_database_size('bench') = ${fmt(dbBytes / MB, 1)} MB (all databases ${fmt(clusterBytes / MB, 1)} MB)`);

  const pgbenchRun = (seconds) => run(pgTool('pgbench'), ['-n', '-c', '2', '-j', '2', '-T', String(seconds), '-h', state.base, '-p', String(port), '-U', 'postgres', 'bench'],
    {asPg: true, env: {PGOPTIONS: '-c synchronous_commit=off'}, timeoutMs: (seconds + 60) * 1000});

  // -------------------------------------------------------------------------------- archive-push latency
  step(`archive-push latency: ${PUSH_COUNT} segments of 16 MiB, each pushed by a fresh pgbk process`);
  try {
    const walDir = join(dataDir, 'pg_wal');
    let sources = [];
    for (let round = 0; round < 6 && sources.length < PUSH_COUNT; round++) {
      await pgbenchRun(QUICK ? 3 : 5);
      const current = await cluster.psql('select pg_walfile_name(pg_current_wal_lsn())');
      sources = readdirSync(walDir).filter((n) => /^[0-9A-F]{24}$/.test(n) && n < current && statSync(join(walDir, n)).size === SEG).sort();
    }
    if (sources.length === 0) throw new BenchError('no complete segment in pg_wal to copy');
    const pushDir = join(state.base, 'push');
    mkdirSync(pushDir);
    chownPg(pushDir);
    const files = [];
    // Real segments under their own names (archive-push checks each page header against the repository's
    // cluster and the segment's position), pushed into a repository of their own.
    for (const name of sources.slice(-PUSH_COUNT)) {
      copyFileSync(join(walDir, name), join(pushDir, name));
      chownPg(join(pushDir, name));
      files.push(join(pushDir, name));
    }
    const pushPolicy = writePolicy('push', `${state.s3.prefix}/push`, url);
    await pgbk(['init'], pushPolicy, {timeoutMs: 60_000});
    const times = [];
    const rss = [];
    state.proxy.take();
    for (const file of files) {
      const r = await pgbk(['archive-push', file], pushPolicy, {rss: true, timeoutMs: 120_000});
      times.push(r.seconds);
      if (r.rssMb) rss.push(r.rssMb);
    }
    const requests = state.proxy.take();
    const total = Object.values(requests).reduce((sum, n) => sum + n, 0);
    log(`S3 requests per archived segment (cold push): ${fmt(total / files.length, 2)} — ${Object.entries(requests).map(([k, n]) => `${k} ${fmt(n / files.length, 2)}`).join(', ')}`);
    results.pgbk.requestsPerSegment = {cold: total / files.length, byKind: requests};
    const stored = await storedBytes(`${state.s3.prefix}/push`);
    results.pgbk.archivePush = {
      count: times.length, medianS: quantile(times, 0.5), p99S: quantile(times, 0.99), meanS: mean(times), minS: Math.min(...times), maxS: Math.max(...times),
      peakRssMb: rss.length ? Math.max(...rss) : undefined, storedRatio: stored.total / (SEG * times.length),
    };
    const a = results.pgbk.archivePush;
    log(`pgbk archive-push: median ${fmt(a.medianS, 3)}s, p99 ${fmt(a.p99S, 3)}s, mean ${fmt(a.meanS, 3)}s (min ${fmt(a.minS, 3)}, max ${fmt(a.maxS, 3)}); peak RSS ${fmt(a.peakRssMb, 0)} MB; stored ${fmt(a.storedRatio * 100, 1)}% of raw`);
    log(`  (each time includes runuser, ~${fmt(results.machine.runuserOverheadS, 3)}s, and node start-up)`);
    // floor: gzip -1 of the same file to local disk, and a plain cp
    const gz = [];
    const cps = [];
    for (const file of files.slice(0, 5)) {
      gz.push((await run('sh', ['-c', `gzip -1 -c '${file}' > '${file}.gz'`], {timeoutMs: 60_000})).seconds);
      cps.push((await run('cp', [file, `${file}.copy`], {timeoutMs: 60_000})).seconds);
    }
    results.floor.archivePush = {cpMedianS: quantile(cps, 0.5), gzip1MedianS: quantile(gz, 0.5)};
    log(`floor: cp of a segment to local disk ${fmt(quantile(cps, 0.5), 3)}s, gzip -1 ${fmt(quantile(gz, 0.5), 3)}s (median of 5)`);
    rmSync(pushDir, {recursive: true, force: true});
  } catch (error) { recordError('archive-push latency', error); }

  // switch to the real archive command
  await cluster.setArchiveCommand(archiveCommand);
  {
    const wal = await cluster.psql('select pg_walfile_name(pg_switch_wal())');
    await waitArchived(cluster, wal, 120_000);
  }

  // -------------------------------------------------------------------------------- archive drain
  step(`archive throughput: backlog of >= ${DRAIN_SEGMENTS} ready segments drained by PostgreSQL's archiver`);
  try {
    await cluster.setArchiveCommand('false');
    const readyCount = async () => Number(await cluster.psql(`select count(*) from pg_ls_archive_statusdir() where name like '%.ready'`));
    const genStart = performance.now();
    const genDeadline = Date.now() + (QUICK ? 300_000 : 900_000);
    let rounds = 0;
    while ((await readyCount()) < DRAIN_SEGMENTS) {
      if (Date.now() > genDeadline) throw new BenchError(`could not produce ${DRAIN_SEGMENTS} ready segments in time (have ${await readyCount()})`);
      if (rounds % 3 === 0) await cluster.psql('checkpoint'); // full-page images, as after every real checkpoint
      await pgbenchRun(3);
      await cluster.psql('select pg_switch_wal()');
      rounds++;
    }
    const ready = (await cluster.psql(`select name from pg_ls_archive_statusdir() where name like '%.ready' order by name`)).split('\n').map((n) => n.replace(/\.ready$/, ''));
    const lastReady = ready.at(-1);
    const before = Number(await cluster.psql('select archived_count from pg_stat_archiver'));
    const rawBefore = await storedBytes(`${state.s3.prefix}/main`);
    log(`${ready.length} ready segments (${ready[0]} .. ${lastReady}) produced in ${fmt((performance.now() - genStart) / 1000, 0)}s`);
    const t = performance.now();
    state.proxy.take();
    await cluster.setArchiveCommand(archiveCommand);
    let timedOut = false;
    const drainTimeout = Math.max(120_000, ready.length * 5_000);
    try {
      await waitArchived(cluster, lastReady, drainTimeout);
    } catch (error) { timedOut = true; recordError('archive drain', error); }
    const seconds = (performance.now() - t) / 1000;
    const archived = Number(await cluster.psql('select archived_count from pg_stat_archiver')) - before;
    const drainRequests = state.proxy.take();
    const drainTotal = Object.values(drainRequests).reduce((sum, n) => sum + n, 0);
    log(`S3 requests per archived segment (drain, look-ahead): ${fmt(drainTotal / Math.max(1, archived), 2)} — ${Object.entries(drainRequests).map(([k, n]) => `${k} ${fmt(n / Math.max(1, archived), 2)}`).join(', ')}`);
    if (results.pgbk.requestsPerSegment) results.pgbk.requestsPerSegment.drain = drainTotal / Math.max(1, archived);
    const rawAfter = await storedBytes(`${state.s3.prefix}/main`);
    results.pgbk.drain = {segments: archived, seconds, segmentsPerS: archived / seconds, timedOut, storedRatio: (rawAfter.total - rawBefore.total) / (archived * SEG)};
    log(`pgbk drain: ${archived} segments in ${fmt(seconds, 1)}s = ${fmt(archived / seconds, 2)} segments/s (${fmt(archived * SEG / MB / seconds, 1)} MB/s of WAL; stored ${fmt(results.pgbk.drain.storedRatio * 100, 1)}% of raw)${timedOut ? ' [TIMED OUT]' : ''}`);
  } catch (error) {
    recordError('archive drain', error);
    await cluster.setArchiveCommand(archiveCommand).catch(() => undefined);
  }

  // -------------------------------------------------------------------------------- backup
  step(`full backup of the ${fmt(dbBytes / MB, 0)} MB pgbench database`);
  const localDir = join(state.base, 'local');
  mkdirSync(localDir);
  chownPg(localDir);
  let backupManifest;
  const sizeNow = Number(await cluster.psql(`select pg_database_size('bench')`));
  try {
        const r = await pgbk(['backup', '--json'], policy, {rss: true, timeoutMs: 3_600_000});
    backupManifest = JSON.parse(r.stdout);
    results.pgbk.backup = {
      seconds: r.seconds, databaseBytes: sizeNow, sourceBytes: backupManifest.sourceBytes, storedBytes: backupManifest.storedBytes,
      mbPerS: sizeNow / MB / r.seconds, sourceMbPerS: backupManifest.sourceBytes / MB / r.seconds,
      storedRatio: backupManifest.storedBytes / backupManifest.sourceBytes, peakRssMb: r.rssMb, id: backupManifest.id,
      internalDurationS: backupManifest.durationMs / 1000, startLsn: backupManifest.startLsn, stopLsn: backupManifest.stopLsn,
    };
    const b = results.pgbk.backup;
    log(`pgbk backup ${b.id}: ${fmt(b.seconds, 1)}s wall = ${fmt(b.mbPerS, 1)} MB/s of database size (${fmt(sizeNow / MB, 1)} MB); ` +
      `${fmt(b.sourceBytes / MB, 1)} MB read (${fmt(b.sourceMbPerS, 1)} MB/s), ${fmt(b.storedBytes / MB, 1)} MB stored (ratio ${fmt(b.storedRatio, 3)}); peak RSS ${fmt(b.peakRssMb, 0)} MB`);
  } catch (error) { recordError('pgbk backup', error); }

  let floorPlain;
  let floorLabel;
  try {
    const tarDir = join(localDir, 'bb-tar');
    const r1 = await run(pgTool('pg_basebackup'), ['-D', tarDir, '-Ft', '-X', 'none', '-c', 'fast', '-h', state.base, '-p', String(port), '-U', 'postgres', '--no-sync'], {asPg: true, rss: true, timeoutMs: 1_800_000});
    const tarBytes = dirBytes(tarDir);
    rmSync(tarDir, {recursive: true, force: true});
    const cpDir = join(localDir, 'cp-data');
    // the data dir without pg_wal (which holds GBs of kept WAL here): what a backup copies
    mkdirSync(cpDir);
    const entries = readdirSync(dataDir).filter((n) => n !== 'pg_wal').map((n) => join(dataDir, n));
    const r2 = await run('cp', ['-r', ...entries, cpDir], {timeoutMs: 1_800_000});
    const cpBytes = dirBytes(cpDir);
    rmSync(cpDir, {recursive: true, force: true});
    // a plain-format local base backup: the restore floor starts from it
    floorPlain = join(localDir, 'bb-plain');
    const r3 = await run(pgTool('pg_basebackup'), ['-D', floorPlain, '-Fp', '-X', 'none', '-c', 'fast', '-h', state.base, '-p', String(port), '-U', 'postgres', '--no-sync'], {asPg: true, timeoutMs: 1_800_000});
    floorLabel = readFileSync(join(floorPlain, 'backup_label'), 'utf8');
    results.floor.backup = {
      basebackupTarS: r1.seconds, basebackupTarMbPerS: sizeNow / MB / r1.seconds, basebackupTarBytes: tarBytes, basebackupRssMb: r1.rssMb,
      cpS: r2.seconds, cpMbPerS: sizeNow / MB / r2.seconds, cpBytes, cpBytesMbPerS: cpBytes / MB / r2.seconds, basebackupPlainS: r3.seconds,
    };
    log(`floor: pg_basebackup -Ft -X none to local disk ${fmt(r1.seconds, 1)}s = ${fmt(results.floor.backup.basebackupTarMbPerS, 1)} MB/s (${fmt(tarBytes / MB, 0)} MB, uncompressed); ` +
      `cp -r of the data dir without pg_wal ${fmt(r2.seconds, 1)}s = ${fmt(results.floor.backup.cpMbPerS, 1)} MB/s (${fmt(cpBytes / MB, 0)} MB copied)`);
  } catch (error) { recordError('backup floor', error); }

  // -------------------------------------------------------------------------------- restore + replay
  step(`restore + replay to a target ${RESTORE_SEGMENTS} segments past the backup`);
  try {
    if (!backupManifest) throw new BenchError('no pgbk backup to restore');
    const from = lsnToNum(backupManifest.stopLsn);
    const genDeadline = Date.now() + 900_000;
    for (;;) {
      const lsn = await cluster.psql('select pg_current_wal_lsn()');
      if (lsnToNum(lsn) - from >= RESTORE_SEGMENTS * SEG) break;
      if (Date.now() > genDeadline) throw new BenchError('could not generate the WAL in time');
      await pgbenchRun(3);
    }
    await cluster.psql('create table if not exists bench_marker (id int)');
    await cluster.psql('insert into bench_marker values (1)');
    const historyAtTarget = Number(await cluster.psql('select count(*) from pgbench_history', 'bench'));
    const tgt = await cluster.psql('select pg_current_wal_lsn()');
    await cluster.psql('insert into bench_marker values (2)'); // after the target: must not be restored
    const wal = await cluster.psql('select pg_walfile_name(pg_switch_wal())');
    await waitArchived(cluster, wal, 600_000);
    results.config.restoreTargetLsn = tgt;
    results.config.restoreWalBytes = lsnToNum(tgt) - from;
    log(`target LSN ${tgt}: ${fmt((lsnToNum(tgt) - from) / SEG, 1)} segments past the backup's stop LSN ${backupManifest.stopLsn}; archived through ${wal}`);

    const restoreDir = join(state.base, 'restored');
    const restorePort = await freePort();
    state.running.add(restoreDir);
    const r = await pgbk(['restore', '--target-lsn', tgt, '--to', restoreDir, '--start', '--port', String(restorePort), '--timeout', '1500'], policy, {rss: true, timeoutMs: 1_800_000});
    const restored = makeCluster(restoreDir, restorePort);
    const check = await run(pgTool('psql'), ['-X', '-At', '-h', '127.0.0.1', '-p', String(restorePort), '-U', 'postgres', '-d', 'postgres', '-c',
      'select pg_is_in_recovery(), (select string_agg(id::text, \',\' order by id) from bench_marker)'], {asPg: true, timeoutMs: 30_000, check: false});
    const history = await run(pgTool('psql'), ['-X', '-At', '-h', '127.0.0.1', '-p', String(restorePort), '-U', 'postgres', '-d', 'bench', '-c', 'select count(*) from pgbench_history'], {asPg: true, timeoutMs: 60_000, check: false});
    await restored.stop('immediate');
    const fetched = /\(([^)]*) in ([\d.]+)s\)/.exec(r.stdout);
    results.pgbk.restore = {
      seconds: r.seconds, peakRssMb: r.rssMb, fetchS: fetched ? Number(fetched[2]) : undefined,
      verified: check.stdout.trim() === 'f|1' && Number(history.stdout.trim()) === historyAtTarget, check: `${check.stdout.trim()} history ${history.stdout.trim()}/${historyAtTarget}`,
      output: r.stdout.trim(),
    };
    const s = results.pgbk.restore;
    log(r.stdout.trim().replace(/^/gm, '  | '));
    log(`pgbk restore --start: ${fmt(s.seconds, 1)}s (backup fetch ${fmt(s.fetchS, 1)}s, replay + promote ${fmt(s.seconds - (s.fetchS ?? 0), 1)}s); peak RSS ${fmt(s.peakRssMb, 0)} MB; ` +
      `restored data ${s.verified ? 'verified (marker 1 only, pgbench_history count matches)' : `NOT as expected: ${s.check}`}`);
    rmSync(restoreDir, {recursive: true, force: true});

    // floor: cp of the local plain base backup, then replay from a local WAL directory (cp as restore_command)
    if (floorPlain) {
      const floorDir = join(state.base, 'floor-restored');
      const walArchive = join(localDir, 'wal');
      mkdirSync(walArchive);
      const startSeg = /START WAL LOCATION: .* \(file ([0-9A-F]{24})\)/.exec(floorLabel)?.[1];
      for (const n of readdirSync(join(dataDir, 'pg_wal'))) {
        if (/^[0-9A-F]{24}$/.test(n) && n >= startSeg && n <= wal) copyFileSync(join(dataDir, 'pg_wal', n), join(walArchive, n));
      }
      execFileSync('chown', ['-R', 'postgres:postgres', walArchive]);
      const t = performance.now();
      const cp = await run('cp', ['-a', floorPlain, floorDir], {asPg: true, timeoutMs: 1_800_000});
      appendFileSync(join(floorDir, 'postgresql.auto.conf'), `\nrestore_command = 'cp ${walArchive}/%f %p'\nrecovery_target_lsn = '${tgt}'\nrecovery_target_action = 'promote'\n`);
      writeFileSync(join(floorDir, 'recovery.signal'), '');
      chownPg(join(floorDir, 'recovery.signal'));
      const floorPort = await freePort();
      state.running.add(floorDir);
      await run(pgTool('pg_ctl'), ['-D', floorDir, '-l', join(state.base, 'floor.log'), '-o', `-p ${floorPort} -c archive_mode=off -c listen_addresses=127.0.0.1`, 'start'], {asPg: true, timeoutMs: 120_000});
      const deadline = Date.now() + 1_200_000;
      for (;;) {
        const q = await run(pgTool('psql'), ['-X', '-At', '-h', '127.0.0.1', '-p', String(floorPort), '-U', 'postgres', '-d', 'postgres', '-c', 'select pg_is_in_recovery()'], {asPg: true, timeoutMs: 10_000, check: false, quiet: true});
        if (q.code === 0 && q.stdout.trim() === 'f') break;
        if (Date.now() > deadline) throw new BenchError(`floor replay did not finish in time; see ${join(state.base, 'floor.log')}`);
        await sleep(100);
      }
      const seconds = (performance.now() - t) / 1000;
      await makeCluster(floorDir, floorPort).stop('immediate');
      results.floor.restore = {cpS: cp.seconds, cpPlusReplayS: seconds};
      log(`floor: cp -a of a local pg_basebackup ${fmt(cp.seconds, 1)}s; cp + local replay (restore_command = cp) to the same target + promote ${fmt(seconds, 1)}s`);
      rmSync(floorDir, {recursive: true, force: true});
    }
  } catch (error) { recordError('restore + replay', error); }

  // -------------------------------------------------------------------------------- pgBackRest
  step('pgBackRest');
  let pgbackrest = '';
  try { pgbackrest = execFileSync('sh', ['-c', 'command -v pgbackrest'], {encoding: 'utf8'}).trim(); } catch { /* none */ }
  if (pgbackrest) {
    // Its S3 driver requires TLS; s3rver speaks plain HTTP. A TLS proxy in front of it is not set up here.
    results.pgbackrest = {skipped: `installed at ${pgbackrest}, but its S3 repository needs TLS and the bench's S3 endpoint is plain HTTP (${state.s3.endpoint}); not measured`, reference};
    log(`pgBackRest: skipped (${results.pgbackrest.skipped})`);
  } else {
    results.pgbackrest = {skipped: 'not installed (Debian package pgbackrest)', reference};
    log(`pgBackRest: not installed; ${reference.label}: archive-push ${reference.pushGz}s (gz) / ${reference.pushLz4}s (lz4) per segment; ` +
      `drain ${reference.drain} segments/s (async, 2 processes); backup ${reference.backup} MB/s (lz4); restore + replay ${reference.restore}s`);
  }

  await cluster.stop('fast');
}

function dirBytes(dir) {
  let total = 0;
  for (const entry of readdirSync(dir, {withFileTypes: true})) {
    const path = join(dir, entry.name);
    total += entry.isDirectory() ? dirBytes(path) : statSync(path).size;
  }
  return total;
}

function table() {
  const p = results.pgbk;
  const f = results.floor;
  const rssValues = [p.archivePush?.peakRssMb, p.backup?.peakRssMb, p.restore?.peakRssMb].filter((v) => v !== undefined);
  const rows = [
    {metric: 'archive-push p99 (s, lower is better)', pgbk: p.archivePush?.p99S, floor: f.archivePush?.cpMedianS, floorNote: 'cp', peer: reference.pushLz4, target: targets.pushP99, lower: true},
    {metric: 'archive-push median (s)', pgbk: p.archivePush?.medianS, floor: f.archivePush?.gzip1MedianS, floorNote: 'gzip -1', peer: reference.pushGz, target: targets.pushP99, lower: true},
    {metric: 'archive drain (segments/s)', pgbk: p.drain?.segmentsPerS, floor: undefined, peer: reference.drain, target: targets.drain, lower: false},
    {metric: 'full backup (MB/s of db size)', pgbk: p.backup?.mbPerS, floor: f.backup?.basebackupTarMbPerS, floorNote: 'pg_basebackup -Ft', peer: reference.backup, target: targets.backup, lower: false},
    {metric: 'backup stored/source ratio', pgbk: p.backup?.storedRatio, floor: 1, floorNote: 'uncompressed', peer: undefined, target: undefined},
    {metric: 'restore + replay (s)', pgbk: p.restore?.seconds, floor: f.restore?.cpPlusReplayS, floorNote: 'cp + local replay', peer: reference.restore, target: targets.restore, lower: true},
    {metric: 'peak RSS, max of push/backup/restore (MB)', pgbk: rssValues.length ? Math.max(...rssValues) : undefined, floor: f.backup?.basebackupRssMb, floorNote: 'pg_basebackup', peer: undefined, target: targets.rss, lower: true},
    {metric: '  peak RSS archive-push (MB)', pgbk: p.archivePush?.peakRssMb, target: targets.rss, lower: true},
    {metric: '  peak RSS backup (MB)', pgbk: p.backup?.peakRssMb, target: targets.rss, lower: true},
    {metric: '  peak RSS restore (MB)', pgbk: p.restore?.peakRssMb, target: targets.rss, lower: true},
  ];
  for (const row of rows) {
    row.ratio = row.pgbk !== undefined && row.target ? row.pgbk / row.target : undefined;
    row.met = row.ratio === undefined ? undefined : row.lower ? row.ratio <= 1 : row.ratio >= 1;
  }
  const head = ['metric', 'pgbk', 'floor', 'pgBackRest*', 'target', 'pgbk/target', 'met'];
  const body = rows.map((r) => [r.metric, fmt(r.pgbk, 3), r.floor === undefined ? '-' : `${fmt(r.floor, 3)}${r.floorNote ? ` (${r.floorNote})` : ''}`, fmt(r.peer, 2),
    r.target === undefined ? '-' : `${r.lower ? '<=' : '>='} ${r.target}`, fmt(r.ratio, 2), r.met === undefined ? '-' : r.met ? 'yes' : 'NO']);
  const widths = head.map((_, i) => Math.max(head[i].length, ...body.map((b) => b[i].length)));
  const line = (cells) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  log(line(head));
  log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const b of body) log(line(b));
  log(`* pgBackRest: ${results.pgbackrest.skipped ? `reference figures measured elsewhere (${results.pgbackrest.skipped})` : 'measured here'}; push p99 row shows its lz4 per-segment time, median row its gz time`);
  return rows;
}

let exitCode = 0;
try {
  await main();
} catch (error) {
  recordError('bench', error);
  exitCode = 1;
} finally {
  await cleanup().catch((e) => log(`cleanup: ${e.message}`));
}
results.totalSeconds = (performance.now() - T0) / 1000;
results.machine.loadAvgAtEnd = (await import('node:os')).loadavg().map((l) => Number(l.toFixed(2)));
step('results');
results.table = table();
log(`total runtime ${fmt(results.totalSeconds, 0)}s${results.errors.length ? `; ${results.errors.length} step(s) failed: ${results.errors.map((e) => e.step).join(', ')}` : ''}`);
mkdirSync(join(repoDir, '.bench'), {recursive: true});
writeFileSync(join(repoDir, '.bench', 'results.json'), `${JSON.stringify(results, null, 2)}\n`);
log(`written ${join(repoDir, '.bench', 'results.json')}`);
if (results.errors.length) exitCode = 1;
process.exit(exitCode);
