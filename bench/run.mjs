#!/usr/bin/env node
// pgbk benchmark (`npm run bench` = build + this script). Plain Node ESM, no build step of its own.
//
// Runs pgbk and, when installed, pgBackRest side by side on one throwaway cluster and one S3 endpoint (radosgw when
// installed, else s3rver, or PGBK_TEST_S3_ENDPOINT with PGBK_TEST_S3_ACCESS_KEY_ID / PGBK_TEST_S3_SECRET_ACCESS_KEY /
// PGBK_TEST_S3_BUCKET / PGBK_TEST_S3_REGION), and prints pgbk / pgBackRest ratios for:
//   1. cold archive-push of one 16 MiB segment, each a fresh process (pgBackRest: lz4 and gz)
//   2. archive-push with a backlog: per-call p50/p99 while PostgreSQL's archiver drains N ready segments, and the
//      drain rate in segments/s (pgBackRest: archive-async=y, process-max=2); both drain the same segments (after
//      pgbk's drain their .done status files are renamed back to .ready)
//   3. full backup MB/s (of the database size) and stored MB (pgBackRest: lz4, process-max=2)
//   4. PITR restore + replay of N segments (pgBackRest: archive-async archive-get, process-max=2); floor: cp of a
//      local pg_basebackup + replay from a local WAL directory
//   5. S3 requests per archived segment (a counting proxy in front of the endpoint) and peak RSS of every command
// Both tools talk to S3 through the same counting proxy over https (a self-signed certificate made with openssl in
// the temp dir; pgBackRest's S3 driver requires TLS: repo1-storage-verify-tls=n; pgbk trusts it with
// NODE_EXTRA_CA_CERTS). Prints a table and one line `BENCH_JSON {...}`; also writes .bench/results.json.
//
// Env: PGBK_BENCH_SCALE (pgbench scale, default 10), PGBK_BENCH_SEGMENTS (drain backlog, default 32),
//      PGBK_BENCH_RESTORE_SEGMENTS (WAL to replay after the backup, default 16), PGBK_BENCH_PUSHES (cold pushes,
//      default 10), PGBK_BENCH_QUICK=1 (scale 5, 16 / 8 / 6), PGBK_BENCH_PGBACKREST=0 (skip pgBackRest),
//      PGBK_BENCH_S3=s3rver (force the s3rver mock), PGBK_BENCH_KEEP=1 (keep the temp dir, clusters stopped).
// As root every PostgreSQL binary, pgbk and pgBackRest command runs as the postgres OS user (runuser -u postgres --).

import {spawn, execFileSync} from 'node:child_process';
import {chmodSync, chownSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync, appendFileSync} from 'node:fs';
import {createServer} from 'node:net';
import {cpus, loadavg, tmpdir, totalmem} from 'node:os';
import {dirname, join, resolve} from 'node:path';
import {fileURLToPath} from 'node:url';
import {performance} from 'node:perf_hooks';
import {randomBytes} from 'node:crypto';
import {allowTsImports} from './ts-imports.mjs';

const repoDir = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const pgbkBin = join(repoDir, 'bin', 'pgbk');
const QUICK = process.env.PGBK_BENCH_QUICK === '1';
const envInt = (name, fallback) => {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1) {
    process.stderr.write(`bench: ${name}=${raw} is not a positive integer\n`);
    process.exit(2);
  }
  return n;
};
const SCALE = envInt('PGBK_BENCH_SCALE', QUICK ? 5 : 10);
const PUSH_COUNT = envInt('PGBK_BENCH_PUSHES', QUICK ? 6 : 10);
const DRAIN_SEGMENTS = envInt('PGBK_BENCH_SEGMENTS', QUICK ? 16 : 32);
const RESTORE_SEGMENTS = envInt('PGBK_BENCH_RESTORE_SEGMENTS', QUICK ? 8 : 16);
const WANT_PGBACKREST = process.env.PGBK_BENCH_PGBACKREST !== '0';
const KEEP = process.env.PGBK_BENCH_KEEP === '1';
const SEG = 16 * 1024 * 1024;
const MB = 1e6;
const isRoot = process.getuid?.() === 0;
const T0 = performance.now();
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true'; // this process lists the bucket with the SDK too

// The goals of the performance issue: pgbk / pgBackRest ratios and absolute figures.
const goals = {
  coldPushVsLz4: 0.8, backlogP99S: 0.1, drainSegPerS: 10, drainVsPgbr: 4, restoreVsPgbr: 0.6, restoreS: 10,
  replayVsLocal: 1.5, backupVsPgbr: 1.8, rssMb: 150, requestsPerSegment: 1,
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
      live.delete(child);
      const seconds = (performance.now() - started) / 1000;
      let peakKb = 0;
      if (rssFile) {
        try { peakKb = Number(readFileSync(rssFile, 'utf8').trim().split('\n').pop()) || 0; } catch { /* killed */ }
        rmSync(rssFile, {force: true});
      }
      const result = {code: code ?? 128, signal, stdout, stderr, seconds, timedOut, rssMb: peakKb ? peakKb / 1024 : undefined};
      if (check && (code !== 0 || timedOut)) {
        const what = `${file.split('/').pop()} ${args.join(' ')}`;
        const err = new BenchError(`${what}\n  ${timedOut ? `timed out after ${timeoutMs / 1000}s` : `exited ${code ?? signal}`}\n  stderr: ${stderr.trim().split('\n').slice(-15).join('\n          ') || '(empty)'}${stdout.trim() ? `\n  stdout: ${stdout.trim().split('\n').slice(-8).join('\n          ')}` : ''}`);
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

// ------------------------------------------------------------------------------------------------
// state and cleanup

const state = {base: undefined, s3: undefined, s3Child: undefined, s3Dir: undefined, rgw: undefined, running: new Set(), binDir: undefined, proxy: undefined, tls: undefined};

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
    killPgbackrestLeftovers();
    state.proxy?.close();
    if (state.s3 && state.s3.kind === 'external' && state.s3.prefixes) await deleteExternalPrefixes().catch((e) => log(`warning: could not delete the bench objects: ${e.message}`));
    if (state.rgw) await state.rgw.stop().catch((e) => log(`warning: radosgw stop: ${e.message}`));
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

/** pgBackRest's async archive-push/get processes detach; the ones started with this bench's config are ours. */
function killPgbackrestLeftovers() {
  if (!state.pgbrConf) return;
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8');
      if (cmdline.split('\0')[0].endsWith('pgbackrest') && cmdline.includes(state.pgbrConf)) process.kill(Number(entry), 'SIGKILL');
    } catch { /* gone */ }
  }
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

function pgDir(path) {
  mkdirSync(path, {recursive: true, mode: 0o700});
  chownPg(path);
  return path;
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

function makeCluster(dataDir, port, host) {
  const c = {
    dataDir, port,
    async psql(sql, db = 'postgres', timeoutMs = 600_000) {
      const r = await run(pgTool('psql'), ['-X', '-At', '-v', 'ON_ERROR_STOP=1', '-h', host ?? state.base, '-p', String(port), '-U', 'postgres', '-d', db, '-c', sql], {asPg: true, timeoutMs});
      return r.stdout.trim();
    },
    async start(options) {
      await run(pgTool('pg_ctl'), ['-D', dataDir, '-l', join(state.base, `server-${port}.log`), '-w', '-t', '120', ...(options ? ['-o', options] : []), 'start'], {asPg: true, env: pgbkEnv(), timeoutMs: 150_000});
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
    await sleep(50);
  }
}

/** Poll a started server until it has left recovery (promoted). */
async function waitPromoted(port, timeoutMs, logFile) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const q = await run(pgTool('psql'), ['-X', '-At', '-h', '127.0.0.1', '-p', String(port), '-U', 'postgres', '-d', 'postgres', '-c', 'select pg_is_in_recovery()'], {asPg: true, timeoutMs: 10_000, check: false, quiet: true});
    if (q.code === 0 && q.stdout.trim() === 'f') return;
    if (Date.now() > deadline) throw new BenchError(`replay did not finish within ${timeoutMs / 1000}s; see ${logFile}`);
    await sleep(100);
  }
}

const lsnToNum = (lsn) => { const [hi, lo] = lsn.split('/'); return parseInt(hi, 16) * 2 ** 32 + parseInt(lo, 16); };

// ------------------------------------------------------------------------------------------------
// S3: radosgw (test/helpers/radosgw.ts, loaded with Node's type stripping), s3rver, or an external endpoint

async function startS3() {
  const external = process.env.PGBK_TEST_S3_ENDPOINT;
  const prefix = `bench-${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`;
  if (external) {
    state.s3 = {
      kind: 'external', endpoint: external.replace(/\/+$/, ''), bucket: process.env.PGBK_TEST_S3_BUCKET || 'pgbk-test',
      accessKeyId: process.env.PGBK_TEST_S3_ACCESS_KEY_ID || 'minioadmin', secretAccessKey: process.env.PGBK_TEST_S3_SECRET_ACCESS_KEY || 'minioadmin',
      region: process.env.PGBK_TEST_S3_REGION || 'us-east-1', prefix, prefixes: [],
    };
    await ensureBucket();
    return;
  }
  if (process.env.PGBK_BENCH_S3 !== 's3rver') {
    allowTsImports();
    const rgwModule = await import(join(repoDir, 'test', 'helpers', 'radosgw.ts'));
    if (rgwModule.radosgwAvailable()) {
      const rgw = await rgwModule.startRadosgw();
      state.rgw = rgw;
      state.s3 = {kind: 'radosgw', endpoint: rgw.endpoint, bucket: 'pgbk-bench', accessKeyId: rgw.accessKeyId, secretAccessKey: rgw.secretAccessKey, region: 'us-east-1', prefix};
      await ensureBucket();
      return;
    }
    log('radosgw is not installed: falling back to the s3rver mock');
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

async function ensureBucket() {
  const {S3Client, HeadBucketCommand, CreateBucketCommand} = await import('@aws-sdk/client-s3');
  const client = new S3Client(s3Config());
  try {
    await client.send(new HeadBucketCommand({Bucket: state.s3.bucket})).catch(async (err) => {
      if (err?.$metadata?.httpStatusCode !== 404) throw err;
      await client.send(new CreateBucketCommand({Bucket: state.s3.bucket}));
    });
  } finally { client.destroy(); }
}

/** A self-signed certificate for 127.0.0.1 (openssl), or undefined when openssl is missing or fails. */
function makeCertificate(dir) {
  try {
    const key = join(dir, 'key.pem');
    const cert = join(dir, 'cert.pem');
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', cert,
      '-days', '2', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'], {stdio: ['ignore', 'ignore', 'pipe']});
    chownPg(cert);
    return {key, cert};
  } catch (error) {
    log(`openssl could not make a certificate (${String(error.stderr ?? error.message).trim().split('\n').pop()}): no https endpoint`);
    return undefined;
  }
}

/**
 * A counting proxy in front of the S3 endpoint: requests per archived segment are a figure users pay for. It listens
 * on http and, with a certificate, on https (TLS ends here; pgBackRest's S3 driver requires TLS). Headers pass
 * unchanged (SigV4 signs the Host the client used, which the store accepts).
 */
async function startCountingProxy(target, tls) {
  const http = await import('node:http');
  const https = await import('node:https');
  const upstream = new URL(target);
  const upstreamModule = upstream.protocol === 'https:' ? https : http;
  const counts = {};
  const handler = (req, res) => {
    const url = new URL(req.url, 'http://x');
    const kind = url.searchParams.has('list-type') || (req.method === 'GET' && /^\/[^/]+\/?$/.test(url.pathname)) ? 'LIST'
      : url.searchParams.has('uploads') || url.searchParams.has('uploadId') ? `${req.method} multipart` : req.method;
    counts[kind] = (counts[kind] ?? 0) + 1;
    const forward = upstreamModule.request({host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: req.headers, rejectUnauthorized: false}, (answer) => {
      res.writeHead(answer.statusCode, answer.headers);
      answer.pipe(res);
    });
    forward.on('error', () => res.destroy());
    req.pipe(forward);
  };
  const servers = [http.createServer(handler)];
  if (tls) servers.push(https.createServer({key: readFileSync(tls.key), cert: readFileSync(tls.cert)}, handler));
  for (const server of servers) {
    server.keepAliveTimeout = 30_000;
    await new Promise((resolvePromise) => server.listen(0, '127.0.0.1', resolvePromise));
    server.unref();
  }
  return {
    endpoint: `http://127.0.0.1:${servers[0].address().port}`,
    httpsPort: servers[1]?.address().port,
    take() {
      const taken = {...counts};
      for (const key of Object.keys(counts)) delete counts[key];
      return taken;
    },
    close() { for (const server of servers) server.close(); },
  };
}

const totalOf = (counts) => Object.values(counts).reduce((sum, n) => sum + n, 0);
const describeCounts = (counts, per) => Object.entries(counts).map(([k, n]) => `${k} ${fmt(n / per, 2)}`).join(', ');

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

/** Size of everything stored under a prefix (ListObjectsV2, straight to the store: not counted by the proxy). */
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

/** pgbk's endpoint: https through the proxy when there is a certificate (as pgBackRest), else http. */
const pgbkEndpoint = () => (state.proxy.httpsPort ? `https://127.0.0.1:${state.proxy.httpsPort}` : state.proxy.endpoint);
const pgbkEnv = () => ({AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true', ...(state.tls ? {NODE_EXTRA_CA_CERTS: state.tls.cert} : {})});

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
    `  endpoint: ${pgbkEndpoint()}`,
    `  region: ${s3.region}`,
    '  force_path_style: true',
    `  access_key_id: ${JSON.stringify(s3.accessKeyId)}`,
    `  secret_access_key: ${JSON.stringify(s3.secretAccessKey)}`,
    '',
  ].join('\n'), {mode: 0o600});
  chownPg(file);
  return file;
}

const pgbk = (args, policy, opts = {}) => run(process.execPath, [pgbkBin, ...args, '--policy', policy], {asPg: true, env: pgbkEnv(), ...opts});

// ------------------------------------------------------------------------------------------------
// pgBackRest

function writePgbrConfig(cluster) {
  const s3 = state.s3;
  const dir = pgDir(join(state.base, 'pgbackrest'));
  for (const sub of ['log', 'lock', 'spool']) pgDir(join(dir, sub));
  const prefix = `${s3.prefix}/pgbackrest`;
  if (s3.prefixes) s3.prefixes.push(prefix);
  const file = join(dir, 'pgbackrest.conf');
  writeFileSync(file, [
    '# written by bench/run.mjs',
    '[global]',
    'repo1-type=s3',
    `repo1-path=/${prefix}/main`,
    `repo1-s3-bucket=${s3.bucket}`,
    'repo1-s3-endpoint=127.0.0.1',
    `repo1-storage-port=${state.proxy.httpsPort}`,
    `repo1-s3-region=${s3.region}`,
    `repo1-s3-key=${s3.accessKeyId}`,
    `repo1-s3-key-secret=${s3.secretAccessKey}`,
    'repo1-s3-uri-style=path',
    'repo1-storage-verify-tls=n',
    'repo1-retention-full=10',
    `log-path=${join(dir, 'log')}`,
    `lock-path=${join(dir, 'lock')}`,
    `spool-path=${join(dir, 'spool')}`,
    'log-level-console=warn',
    'log-level-file=info',
    'process-max=2',
    'compress-type=lz4',
    'start-fast=y',
    'archive-timeout=300',
    '',
    '[global:archive-get]',
    'archive-async=y',
    '',
    '[bench]',
    `pg1-path=${cluster.dataDir}`,
    `pg1-port=${cluster.port}`,
    `pg1-socket-path=${state.base}`,
    'pg1-user=postgres',
    '',
  ].join('\n'), {mode: 0o600});
  chownPg(file);
  state.pgbrConf = file;
  return {file, prefix};
}

const pgbr = (args, opts = {}) => run('pgbackrest', [`--config=${state.pgbrConf}`, '--stanza=bench', ...args], {asPg: true, ...opts});
const pgbrCommand = (extra = '') => `pgbackrest --config=${state.pgbrConf} --stanza=bench${extra} archive-push %p`;

// ------------------------------------------------------------------------------------------------
// statistics

const quantile = (values, q) => {
  if (!values.length) return undefined;
  const sorted = [...values].sort((a, b) => a - b);
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
};
const mean = (values) => (values.length ? values.reduce((a, b) => a + b, 0) / values.length : undefined);
const max = (values) => { const v = values.filter((x) => x !== undefined); return v.length ? Math.max(...v) : undefined; };

// ------------------------------------------------------------------------------------------------
// the benchmark

const results = {
  machine: {}, config: {scale: SCALE, quick: QUICK, pushCount: PUSH_COUNT, drainSegments: DRAIN_SEGMENTS, restoreSegments: RESTORE_SEGMENTS},
  pgbk: {}, pgbackrest: {}, floor: {}, errors: [],
};

function recordError(what, error) {
  const message = error instanceof BenchError ? error.message : (error?.stack ?? String(error));
  log(`!! ${what} FAILED: ${message}`);
  results.errors.push({step: what, message});
}

/** A wrapper for archive_command that logs each call's exit code, wall time (ns) and peak RSS (kB). */
function writeTimedWrapper() {
  const file = join(state.base, 'timed-archive');
  writeFileSync(file, [
    '#!/bin/sh',
    '# bench/run.mjs: timed-archive LOG COMMAND... -> "rc nanoseconds maxrss_kb" appended to LOG',
    'log=$1; shift',
    's=$(date +%s%N)',
    'if [ -x /usr/bin/time ]; then /usr/bin/time -f %M -o "$log.$$" "$@"; rc=$?; else "$@"; rc=$?; fi',
    'e=$(date +%s%N)',
    'echo "$rc $((e - s)) $(tail -n 1 "$log.$$" 2>/dev/null)" >> "$log"',
    'rm -f "$log.$$"',
    'exit $rc',
    '',
  ].join('\n'), {mode: 0o755});
  return file;
}

function readTimedLog(file) {
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8').trim().split('\n').filter(Boolean).map((line) => {
    const [rc, ns, kb] = line.split(' ');
    return {rc: Number(rc), seconds: Number(ns) / 1e9, rssMb: kb ? Number(kb) / 1024 : undefined};
  });
}

async function main() {
  state.binDir = findBinDir();
  const pgVersion = execFileSync(join(state.binDir, 'postgres'), ['--version'], {encoding: 'utf8'}).trim();
  let pgbackrest = '';
  let pgbackrestVersion = '';
  try {
    pgbackrest = execFileSync('sh', ['-c', 'command -v pgbackrest'], {encoding: 'utf8'}).trim();
    pgbackrestVersion = execFileSync(pgbackrest, ['version'], {encoding: 'utf8'}).trim();
  } catch { /* none */ }
  results.machine = {
    cpus: cpus().length, cpuModel: cpus()[0]?.model, memGb: Number((totalmem() / 2 ** 30).toFixed(1)),
    node: process.version, postgres: pgVersion, binDir: state.binDir, pgbackrest: pgbackrestVersion || null,
    loadAvgAtStart: loadavg().map((l) => Number(l.toFixed(2))),
  };
  log(`pgbk bench: ${QUICK ? 'QUICK, ' : ''}pgbench scale ${SCALE}, ${PUSH_COUNT} cold pushes, drain of ${DRAIN_SEGMENTS} segments, restore of ${RESTORE_SEGMENTS} segments; ` +
    `${pgVersion}; node ${process.version}; ${pgbackrestVersion || 'pgBackRest not installed'}; ${results.machine.cpus} CPUs; load average ${results.machine.loadAvgAtStart.join(' ')}`);
  if (!existsSync(join(repoDir, 'dist', 'main.js'))) throw new BenchError('dist/main.js missing: run "npm run build" (npm run bench does it)');

  step('setup: temp dir, S3 endpoint, TLS proxy, cluster');
  state.base = mkdtempSync(join(tmpdir(), 'pgbk-bench-'));
  chmodSync(state.base, 0o700);
  chownPg(state.base);
  state.tls = makeCertificate(pgDir(join(state.base, 'tls')));
  await startS3();
  state.proxy = await startCountingProxy(state.s3.endpoint, state.tls);
  results.machine.s3 = `${state.s3.kind} ${state.s3.endpoint} bucket ${state.s3.bucket}, through a counting proxy (${state.tls ? 'https' : 'http'})`;
  log(`S3: ${results.machine.s3}, prefix ${state.s3.prefix}; pgbk at ${pgbkEndpoint()}${state.tls ? `, pgBackRest at https://127.0.0.1:${state.proxy.httpsPort}` : ''}`);

  let withPgbr = false;
  if (!WANT_PGBACKREST) results.pgbackrest.skipped = 'PGBK_BENCH_PGBACKREST=0';
  else if (!pgbackrest) results.pgbackrest.skipped = 'not installed (Debian package pgbackrest)';
  else if (!state.tls) results.pgbackrest.skipped = 'no TLS certificate (openssl missing): its S3 driver requires https';
  else withPgbr = true;
  if (!withPgbr) log(`pgBackRest: skipped (${results.pgbackrest.skipped}); only pgbk's figures follow`);
  results.pgbackrest.version = pgbackrestVersion || null;

  const runuserOverhead = [];
  for (let i = 0; i < 5; i++) runuserOverhead.push((await run('true', [], {asPg: true})).seconds);
  results.machine.runuserOverheadS = Number(quantile(runuserOverhead, 0.5).toFixed(4));
  const timed = writeTimedWrapper();
  {
    const probe = join(state.base, 'probe.log');
    for (let i = 0; i < 5; i++) await run(timed, [probe, 'true']);
    results.machine.timedWrapperOverheadS = Number(quantile(readTimedLog(probe).map((c) => c.seconds), 0.5).toFixed(4));
  }

  const dataDir = join(state.base, 'data');
  const port = await freePort();
  await run(pgTool('initdb'), ['-D', dataDir, '-A', 'trust', '-U', 'postgres', '--no-sync', '-E', 'UTF8', '--locale=C'], {asPg: true, timeoutMs: 120_000});
  const url = `postgresql://postgres@127.0.0.1:${port}/postgres`;
  const policy = writePolicy('bench', `${state.s3.prefix}/main`, url);
  // The archive_command pgbk recommends (pgbk archive-command): its shell fast path takes what the pusher archived ahead.
  const pgbkCommand = JSON.parse((await pgbk(['archive-command', '--json'], policy, {timeoutMs: 60_000})).stdout).archiveCommand;
  appendFileSync(join(dataDir, 'postgresql.conf'), [
    '', '# bench/run.mjs',
    `port = ${port}`, `listen_addresses = '127.0.0.1'`, `unix_socket_directories = '${state.base}'`,
    'wal_level = replica', 'archive_mode = on',
    // the initial load's WAL is not needed by any backup: discarded, then the archive commands are set below
    `archive_command = 'true'`,
    'max_wal_size = 1GB', 'checkpoint_timeout = 30min', 'shared_buffers = 256MB',
    'wal_keep_size = 2GB', // so the floor's local replay finds its WAL in pg_wal
    'log_checkpoints = on', '',
  ].join('\n'));
  const cluster = makeCluster(dataDir, port);
  await cluster.start();
  log(`cluster ${dataDir} on port ${port}; policy ${policy}`);
  log((await pgbk(['init'], policy, {timeoutMs: 60_000})).stdout.trim());
  if (withPgbr) {
    writePgbrConfig(cluster);
    try {
      await pgbr(['stanza-create'], {timeoutMs: 120_000});
      log(`pgBackRest: stanza "bench" created (config ${state.pgbrConf})`);
    } catch (error) {
      recordError('pgBackRest stanza-create', error);
      withPgbr = false;
      results.pgbackrest.skipped = 'stanza-create failed (see errors)';
    }
  }

  step(`pgbench -i -s ${SCALE}`);
  await cluster.psql('create database bench');
  const init = await run(pgTool('pgbench'), ['-i', '-s', String(SCALE), '-q', '-h', state.base, '-p', String(port), '-U', 'postgres', 'bench'], {asPg: true, timeoutMs: 1_800_000});
  await cluster.psql('create table walfill (id bigint, at timestamptz, note text, tag text, amount int)', 'bench');
  await cluster.psql('checkpoint');
  const dbBytes = Number(await cluster.psql(`select pg_database_size('bench')`));
  results.config.databaseBytes = dbBytes;
  log(`pgbench -i: ${fmt(init.seconds, 1)}s; pg_database_size('bench') = ${fmt(dbBytes / MB, 1)} MB`);

  /**
   * Generate at least `segments` segments of WAL: row-like data (ids, timestamps, hex text, repeated tags, ints)
   * compressing about 2:1, updates of pgbench_accounts and a few pgbench transactions; then switch to a new segment.
   */
  let fillId = 0;
  const makeWal = async (segments) => {
    const from = lsnToNum(await cluster.psql('select pg_current_wal_lsn()'));
    const t = performance.now();
    for (let round = 0; ; round++) {
      const lsn = lsnToNum(await cluster.psql('select pg_current_wal_lsn()'));
      if (lsn - from >= segments * SEG) break;
      if (round > segments * 20) throw new BenchError('could not generate the WAL');
      if (round === 0) {
        await run(pgTool('pgbench'), ['-n', '-c', '2', '-j', '2', '-t', '200', '-h', state.base, '-p', String(port), '-U', 'postgres', 'bench'],
          {asPg: true, env: {PGOPTIONS: '-c synchronous_commit=off'}, timeoutMs: 120_000});
        continue;
      }
      if (round % 4 === 2) {
        // updates of existing rows: heap update records and full-page images after a checkpoint
        const from = 1 + ((round * 25_000) % (SCALE * 100_000 - 25_000));
        await cluster.psql(`update pgbench_accounts set abalance = abalance + 1 where aid between ${from} and ${from + 24_999}`, 'bench');
        continue;
      }
      const rows = 60_000;
      await cluster.psql(`insert into walfill select g, timestamptz '2026-01-01' + g * interval '37 ms', md5(g::text) || ' ' || (g % 9973)::text,
        (array['pending','shipped','delivered','returned'])[1 + g % 4] || '/' || (g % 100)::text, ((g::bigint * 7919) % 100000)::int
        from generate_series(${fillId + 1}, ${fillId + rows}) g`, 'bench');
      fillId += rows;
    }
    await cluster.psql('truncate walfill', 'bench');
    const wal = await cluster.psql('select pg_walfile_name(pg_switch_wal())');
    const made = (lsnToNum(await cluster.psql('select pg_current_wal_lsn()')) - from) / SEG;
    return {wal, seconds: (performance.now() - t) / 1000, segments: made};
  };

  // the pgbk repository's own chain starts here
  await cluster.setArchiveCommand(pgbkCommand);
  await waitArchived(cluster, await cluster.psql('select pg_walfile_name(pg_switch_wal())'), 120_000);

  // -------------------------------------------------------------------------------- one backlog for all archive figures
  // One backlog of ready segments: the cold pushes use copies of some, then pgbk's archive_command drains it, then its
  // .done files are turned back into .ready (the segments stay in pg_wal: wal_keep_size) and pgBackRest drains the
  // very same segments.
  const backlogSegments = Math.max(DRAIN_SEGMENTS, PUSH_COUNT);
  step(`backlog: ${backlogSegments} segments of WAL with archiving paused`);
  await cluster.setArchiveCommand('false');
  let backlog = [];
  try {
    const gen = await makeWal(backlogSegments);
    backlog = (await cluster.psql(`select name from pg_ls_archive_statusdir() where name like '%.ready' order by name`)).split('\n').filter(Boolean).map((n) => n.replace(/\.ready$/, ''));
    log(`${backlog.length} ready segments (${backlog[0]} .. ${backlog.at(-1)}), generated in ${fmt(gen.seconds, 0)}s`);
    results.config.backlogSegments = backlog.length;
  } catch (error) { recordError('backlog', error); }

  // -------------------------------------------------------------------------------- cold archive-push
  step(`cold archive-push: ${PUSH_COUNT} segments of 16 MiB, each pushed by a fresh process`);
  let pushFiles = [];
  const pushDir = pgDir(join(state.base, 'push'));
  try {
    const walDir = join(dataDir, 'pg_wal');
    if (backlog.length === 0) throw new BenchError('no segment in the backlog to copy');
    // Real segments of the backlog under their own names (both tools check each page header against their
    // repository's cluster), copied out of pg_wal and pushed into repositories of their own.
    for (const name of backlog.slice(0, PUSH_COUNT)) {
      copyFileSync(join(walDir, name), join(pushDir, name));
      chownPg(join(pushDir, name));
      pushFiles.push(join(pushDir, name));
    }
    const pushPolicy = writePolicy('push', `${state.s3.prefix}/push`, url);
    await pgbk(['init'], pushPolicy, {timeoutMs: 60_000});
    const times = [];
    const rss = [];
    state.proxy.take();
    for (const file of pushFiles) {
      const r = await pgbk(['archive-push', file], pushPolicy, {rss: true, timeoutMs: 120_000});
      times.push(r.seconds);
      rss.push(r.rssMb);
    }
    const requests = state.proxy.take();
    const stored = await storedBytes(`${state.s3.prefix}/push`);
    results.pgbk.coldPush = {
      count: times.length, medianS: quantile(times, 0.5), p99S: quantile(times, 0.99), meanS: mean(times), minS: Math.min(...times), maxS: Math.max(...times),
      peakRssMb: max(rss), storedRatio: stored.total / (SEG * times.length), requestsPerSegment: totalOf(requests) / pushFiles.length, requests,
    };
    const a = results.pgbk.coldPush;
    log(`pgbk archive-push (cold): median ${fmt(a.medianS, 3)}s, p99 ${fmt(a.p99S, 3)}s (min ${fmt(a.minS, 3)}, max ${fmt(a.maxS, 3)}); peak RSS ${fmt(a.peakRssMb, 0)} MB; ` +
      `stored ${fmt(a.storedRatio * 100, 1)}% of raw; S3 requests per segment ${fmt(a.requestsPerSegment, 2)} (${describeCounts(requests, pushFiles.length)})`);
    log(`  (each time includes runuser, ~${fmt(results.machine.runuserOverheadS, 3)}s, and node start-up; the segment is outside a data directory)`);
    const cps = [];
    for (const file of pushFiles.slice(0, 5)) cps.push((await run('cp', [file, `${file}.copy`], {timeoutMs: 60_000})).seconds);
    for (const file of pushFiles.slice(0, 5)) rmSync(`${file}.copy`, {force: true});
    results.floor.coldPush = {cpMedianS: quantile(cps, 0.5)};
    log(`floor: cp of a segment to local disk ${fmt(results.floor.coldPush.cpMedianS, 3)}s (median of ${cps.length})`);
  } catch (error) { recordError('pgbk cold archive-push', error); }

  if (withPgbr && pushFiles.length) {
    results.pgbackrest.coldPush = {};
    for (const codec of ['lz4', 'gz']) {
      try {
        const repoPath = `--repo1-path=/${state.s3.prefix}/pgbackrest/push-${codec}`;
        await pgbr([repoPath, 'stanza-create'], {timeoutMs: 120_000});
        const times = [];
        const rss = [];
        state.proxy.take();
        for (const file of pushFiles) {
          const r = await pgbr([repoPath, `--compress-type=${codec}`, '--no-archive-async', 'archive-push', file], {rss: true, timeoutMs: 120_000});
          times.push(r.seconds);
          rss.push(r.rssMb);
        }
        const requests = state.proxy.take();
        const stored = await storedBytes(`${state.s3.prefix}/pgbackrest/push-${codec}/archive`);
        const b = {
          count: times.length, medianS: quantile(times, 0.5), p99S: quantile(times, 0.99), minS: Math.min(...times), maxS: Math.max(...times),
          peakRssMb: max(rss), storedRatio: stored.total / (SEG * times.length), requestsPerSegment: totalOf(requests) / pushFiles.length, requests,
        };
        results.pgbackrest.coldPush[codec] = b;
        log(`pgBackRest archive-push (cold, ${codec}): median ${fmt(b.medianS, 3)}s, p99 ${fmt(b.p99S, 3)}s (min ${fmt(b.minS, 3)}, max ${fmt(b.maxS, 3)}); peak RSS ${fmt(b.peakRssMb, 0)} MB; ` +
          `stored ${fmt(b.storedRatio * 100, 1)}% of raw; S3 requests per segment ${fmt(b.requestsPerSegment, 2)} (${describeCounts(requests, pushFiles.length)})`);
      } catch (error) { recordError(`pgBackRest cold archive-push ${codec}`, error); }
    }
  }
  rmSync(pushDir, {recursive: true, force: true});

  // -------------------------------------------------------------------------------- drain of the backlog
  /** Archive the backlog's ready segments with `command` (timed per call); archiving paused again afterwards. */
  const drain = async (label, command) => {
    if (backlog.length === 0) throw new BenchError('no backlog');
    const before = Number(await cluster.psql('select archived_count from pg_stat_archiver'));
    const callLog = join(state.base, `drain-${label}.log`);
    writeFileSync(callLog, '');
    chownPg(callLog);
    state.proxy.take();
    const t = performance.now();
    // A command that is a shell snippet (pgbk's fast path) runs under its own sh, timed as a whole.
    await cluster.setArchiveCommand(`${timed} ${callLog} ${/[;&|]/.test(command) ? `sh -c '${command}'` : command}`);
    let timedOut = false;
    const deadline = Date.now() + Math.max(120_000, backlog.length * 5_000);
    while (Number(await cluster.psql('select archived_count from pg_stat_archiver')) - before < backlog.length) {
      if (Date.now() > deadline) {
        timedOut = true;
        recordError(`${label} drain`, new BenchError(`the backlog was not archived in time; see ${state.base}/server-${cluster.port}.log`));
        break;
      }
      await sleep(50);
    }
    const seconds = (performance.now() - t) / 1000;
    await cluster.setArchiveCommand('false');
    const archived = Number(await cluster.psql('select archived_count from pg_stat_archiver')) - before;
    const requests = state.proxy.take();
    const calls = readTimedLog(callLog);
    const ok = calls.filter((c) => c.rc === 0).map((c) => c.seconds);
    const d = {
      segments: archived, seconds, segmentsPerS: archived / seconds, timedOut, calls: calls.length, failedCalls: calls.filter((c) => c.rc !== 0).length,
      callP50S: quantile(ok, 0.5), callP99S: quantile(ok, 0.99), callMaxS: max(ok), peakRssMb: max(calls.map((c) => c.rssMb)),
      requestsPerSegment: totalOf(requests) / Math.max(1, archived), requests,
    };
    log(`${label} drain: ${archived} segments in ${fmt(seconds, 1)}s = ${fmt(d.segmentsPerS, 2)} segments/s; per archive_command call p50 ${fmt(d.callP50S, 3)}s, ` +
      `p99 ${fmt(d.callP99S, 3)}s, max ${fmt(d.callMaxS, 3)}s (${d.calls} calls, ${d.failedCalls} failed); peak RSS of a call ${fmt(d.peakRssMb, 0)} MB; ` +
      `S3 requests per segment ${fmt(d.requestsPerSegment, 2)} (${describeCounts(requests, Math.max(1, archived))})${timedOut ? ' [TIMED OUT]' : ''}`);
    return d;
  };

  step(`archive-push with a backlog: PostgreSQL's archiver drains ${backlog.length} ready segments`);
  log(`(per-call times include the timing wrapper, ~${fmt(results.machine.timedWrapperOverheadS, 3)}s)`);
  try {
    results.pgbk.drain = await drain('pgbk', pgbkCommand);
  } catch (error) { recordError('pgbk drain', error); }
  if (withPgbr) {
    try {
      // pgbk's look-ahead pusher (a detached process holding pg_wal/pgbk-spool/pushed/.pusher.lock) must be gone
      // first, or it would see the renewed .ready files
      const lock = join(dataDir, 'pg_wal', 'pgbk-spool', 'pushed', '.pusher.lock');
      for (let i = 0; i < 600; i++) {
        let pid = 0;
        try { pid = Number(readFileSync(lock, 'utf8').trim()); } catch { /* no lock */ }
        if (!(pid > 0 && existsSync(`/proc/${pid}`))) break;
        await sleep(100);
      }
      const statusDir = join(dataDir, 'pg_wal', 'archive_status');
      for (const name of backlog) {
        if (!existsSync(join(dataDir, 'pg_wal', name))) throw new BenchError(`${name} left pg_wal: cannot archive the backlog again`);
        if (existsSync(join(statusDir, `${name}.done`))) renameSync(join(statusDir, `${name}.done`), join(statusDir, `${name}.ready`));
      }
      results.pgbackrest.drain = await drain('pgBackRest', pgbrCommand(' --archive-async --process-max=2'));
    } catch (error) { recordError('pgBackRest drain', error); }
  }

  // from here on both tools archive every segment (pgBackRest synchronously), so both can restore to one target
  // pgbk's recommended command is a shell snippet ending in `exec node ...`: run it in a subshell, so pgBackRest's
  // push still follows.
  const bothCommand = withPgbr ? `( ${pgbkCommand} ) && ${pgbrCommand()}` : pgbkCommand;
  await cluster.setArchiveCommand(bothCommand);
  await waitArchived(cluster, await cluster.psql('select pg_walfile_name(pg_switch_wal())'), 300_000);

  // -------------------------------------------------------------------------------- full backup
  const sizeNow = Number(await cluster.psql(`select pg_database_size('bench')`));
  step(`full backup of the ${fmt(sizeNow / MB, 0)} MB pgbench database`);
  const localDir = pgDir(join(state.base, 'local'));
  let floorPlain;
  let floorLabel;
  try {
    const tarDir = join(localDir, 'bb-tar');
    const r1 = await run(pgTool('pg_basebackup'), ['-D', tarDir, '-Ft', '-X', 'none', '-c', 'fast', '-h', state.base, '-p', String(port), '-U', 'postgres', '--no-sync'], {asPg: true, rss: true, timeoutMs: 1_800_000});
    const tarBytes = dirBytes(tarDir);
    rmSync(tarDir, {recursive: true, force: true});
    // a plain-format local base backup: the restore floor starts from it
    floorPlain = join(localDir, 'bb-plain');
    await run(pgTool('pg_basebackup'), ['-D', floorPlain, '-Fp', '-X', 'none', '-c', 'fast', '-h', state.base, '-p', String(port), '-U', 'postgres', '--no-sync'], {asPg: true, timeoutMs: 1_800_000});
    floorLabel = readFileSync(join(floorPlain, 'backup_label'), 'utf8');
    results.floor.backup = {seconds: r1.seconds, mbPerS: sizeNow / MB / r1.seconds, bytes: tarBytes, peakRssMb: r1.rssMb};
    log(`floor: pg_basebackup -Ft -X none to local disk ${fmt(r1.seconds, 1)}s = ${fmt(results.floor.backup.mbPerS, 1)} MB/s (${fmt(tarBytes / MB, 0)} MB, uncompressed)`);
  } catch (error) { recordError('backup floor', error); }

  let backupManifest;
  try {
    state.proxy.take();
    const r = await pgbk(['backup', '--json'], policy, {rss: true, timeoutMs: 3_600_000});
    const requests = state.proxy.take();
    backupManifest = JSON.parse(r.stdout);
    results.pgbk.backup = {
      seconds: r.seconds, databaseBytes: sizeNow, sourceBytes: backupManifest.sourceBytes, storedBytes: backupManifest.storedBytes,
      mbPerS: sizeNow / MB / r.seconds, storedMb: backupManifest.storedBytes / MB, peakRssMb: r.rssMb, id: backupManifest.id,
      startLsn: backupManifest.startLsn, stopLsn: backupManifest.stopLsn, requests: totalOf(requests),
    };
    const b = results.pgbk.backup;
    log(`pgbk backup ${b.id}: ${fmt(b.seconds, 1)}s = ${fmt(b.mbPerS, 1)} MB/s of database size; ${fmt(b.sourceBytes / MB, 1)} MB read, ${fmt(b.storedMb, 1)} MB stored; peak RSS ${fmt(b.peakRssMb, 0)} MB; ${b.requests} S3 requests`);
  } catch (error) { recordError('pgbk backup', error); }

  let pgbrBackupStart;
  if (withPgbr) {
    try {
      state.proxy.take();
      const r = await pgbr(['--type=full', 'backup'], {rss: true, timeoutMs: 3_600_000});
      const requests = state.proxy.take();
      const info = JSON.parse((await pgbr(['--output=json', 'info'], {timeoutMs: 60_000})).stdout);
      const last = info[0]?.backup?.at(-1);
      pgbrBackupStart = last?.lsn?.start;
      const stored = await storedBytes(`${state.s3.prefix}/pgbackrest/main/backup`);
      results.pgbackrest.backup = {
        seconds: r.seconds, mbPerS: sizeNow / MB / r.seconds, storedMb: (last?.info?.repository?.delta ?? stored.total) / MB, storedObjectsMb: stored.total / MB,
        peakRssMb: r.rssMb, label: last?.label, startLsn: last?.lsn?.start, stopLsn: last?.lsn?.stop, requests: totalOf(requests),
      };
      const b = results.pgbackrest.backup;
      log(`pgBackRest backup ${b.label} (lz4, process-max 2): ${fmt(b.seconds, 1)}s = ${fmt(b.mbPerS, 1)} MB/s of database size; ${fmt(b.storedMb, 1)} MB stored; peak RSS ${fmt(b.peakRssMb, 0)} MB (main process); ${b.requests} S3 requests`);
    } catch (error) { recordError('pgBackRest backup', error); }
  }

  // -------------------------------------------------------------------------------- restore + replay
  step(`PITR restore + replay to a target ${RESTORE_SEGMENTS} segments past the last backup`);
  let target;
  let historyAtTarget;
  let lastWal;
  try {
    const gen = await makeWal(RESTORE_SEGMENTS);
    await cluster.psql('create table if not exists bench_marker (id int)');
    await cluster.psql('insert into bench_marker values (1)');
    historyAtTarget = Number(await cluster.psql('select count(*) from pgbench_history', 'bench'));
    target = await cluster.psql('select pg_current_wal_lsn()');
    await cluster.psql('insert into bench_marker values (2)'); // after the target: must not be restored
    lastWal = await cluster.psql('select pg_walfile_name(pg_switch_wal())');
    await waitArchived(cluster, lastWal, 900_000);
    results.config.restoreTargetLsn = target;
    log(`target LSN ${target}, WAL generated in ${fmt(gen.seconds, 0)}s; archived by ${withPgbr ? 'both tools' : 'pgbk'} through ${lastWal}`);
  } catch (error) { recordError('restore WAL', error); }

  const segmentsFrom = (startLsn) => (startLsn && target ? (lsnToNum(target) - lsnToNum(startLsn)) / SEG : undefined);
  const verifyRestored = async (restorePort) => {
    const check = await run(pgTool('psql'), ['-X', '-At', '-h', '127.0.0.1', '-p', String(restorePort), '-U', 'postgres', '-d', 'postgres', '-c',
      'select pg_is_in_recovery(), (select string_agg(id::text, \',\' order by id) from bench_marker)'], {asPg: true, timeoutMs: 30_000, check: false});
    const history = await run(pgTool('psql'), ['-X', '-At', '-h', '127.0.0.1', '-p', String(restorePort), '-U', 'postgres', '-d', 'bench', '-c', 'select count(*) from pgbench_history'], {asPg: true, timeoutMs: 60_000, check: false});
    const verified = check.stdout.trim() === 'f|1' && Number(history.stdout.trim()) === historyAtTarget;
    const result = {verified, check: `${check.stdout.trim()} history ${history.stdout.trim()}/${historyAtTarget}`};
    if (!verified) recordError(`restored data on port ${restorePort}`, new BenchError(`not as expected (promoted|markers, history rows): ${result.check}; want f|1 history ${historyAtTarget}`));
    return result;
  };

  if (target && backupManifest) {
    try {
      const restoreDir = join(state.base, 'restored-pgbk');
      const restorePort = await freePort();
      state.running.add(restoreDir);
      state.proxy.take();
      const r = await pgbk(['restore', '--target-lsn', target, '--to', restoreDir, '--start', '--port', String(restorePort), '--timeout', '1500'], policy, {rss: true, timeoutMs: 1_800_000});
      const requests = state.proxy.take();
      const v = await verifyRestored(restorePort);
      await makeCluster(restoreDir, restorePort, '127.0.0.1').stop('immediate');
      const fetched = /\(([^)]*) in ([\d.]+)s\)/.exec(r.stdout);
      const fetchS = fetched ? Number(fetched[2]) : undefined;
      results.pgbk.restore = {
        seconds: r.seconds, fetchS, replayS: fetchS === undefined ? undefined : r.seconds - fetchS, segments: segmentsFrom(backupManifest.startLsn),
        peakRssMb: r.rssMb, requests: totalOf(requests), ...v,
      };
      const s = results.pgbk.restore;
      log(r.stdout.trim().replace(/^/gm, '  | '));
      log(`pgbk restore --start: ${fmt(s.seconds, 1)}s (backup fetch ${fmt(s.fetchS, 1)}s, replay of ${fmt(s.segments, 1)} segments + promote ${fmt(s.replayS, 1)}s); peak RSS ${fmt(s.peakRssMb, 0)} MB; ` +
        `${s.requests} S3 requests; restored data ${s.verified ? 'verified (marker 1 only, pgbench_history count matches)' : `NOT as expected: ${s.check}`}`);
      rmSync(restoreDir, {recursive: true, force: true});
    } catch (error) { recordError('pgbk restore + replay', error); }
  }

  if (target && withPgbr && results.pgbackrest.backup) {
    try {
      const restoreDir = pgDir(join(state.base, 'restored-pgbr'));
      const restorePort = await freePort();
      state.proxy.take();
      const r = await pgbr([`--pg1-path=${restoreDir}`, '--type=lsn', `--target=${target}`, '--target-action=promote',
        `--recovery-option=restore_command=pgbackrest --config=${state.pgbrConf} --stanza=bench --pg1-path=${restoreDir} archive-get %f "%p"`, 'restore'], {rss: true, timeoutMs: 1_800_000});
      const t = performance.now();
      state.running.add(restoreDir);
      const logFile = join(state.base, 'restored-pgbr.log');
      await run(pgTool('pg_ctl'), ['-D', restoreDir, '-l', logFile, '-o', `-p ${restorePort} -c archive_mode=off -c listen_addresses=127.0.0.1 -c unix_socket_directories=${state.base}`, 'start'], {asPg: true, timeoutMs: 120_000});
      await waitPromoted(restorePort, 1_500_000, logFile);
      const replayS = (performance.now() - t) / 1000;
      const requests = state.proxy.take();
      const v = await verifyRestored(restorePort);
      await makeCluster(restoreDir, restorePort, '127.0.0.1').stop('immediate');
      killPgbackrestLeftovers();
      results.pgbackrest.restore = {
        seconds: r.seconds + replayS, fetchS: r.seconds, replayS, segments: segmentsFrom(pgbrBackupStart), peakRssMb: r.rssMb, requests: totalOf(requests), ...v,
      };
      const s = results.pgbackrest.restore;
      log(`pgBackRest restore + start: ${fmt(s.seconds, 1)}s (restore ${fmt(s.fetchS, 1)}s, replay of ${fmt(s.segments, 1)} segments + promote ${fmt(s.replayS, 1)}s); ` +
        `peak RSS ${fmt(s.peakRssMb, 0)} MB (restore command); ${s.requests} S3 requests; restored data ${s.verified ? 'verified' : `NOT as expected: ${s.check}`}`);
      rmSync(restoreDir, {recursive: true, force: true});
    } catch (error) {
      let tail = '';
      try { tail = readFileSync(join(state.base, 'restored-pgbr.log'), 'utf8').trim().split('\n').slice(-10).join('\n  | '); } catch { /* no log */ }
      recordError('pgBackRest restore + replay', tail ? new BenchError(`${error.message}\n  server log:\n  | ${tail}`) : error);
    }
  }

  // floor: cp of the local plain base backup, then replay from a local WAL directory (cp as restore_command)
  if (target && floorPlain) {
    try {
      const floorDir = join(state.base, 'floor-restored');
      const walArchive = pgDir(join(localDir, 'wal'));
      const startSeg = /START WAL LOCATION: .* \(file ([0-9A-F]{24})\)/.exec(floorLabel)?.[1];
      for (const n of readdirSync(join(dataDir, 'pg_wal'))) {
        if (/^[0-9A-F]{24}$/.test(n) && n >= startSeg && n <= lastWal) {
          copyFileSync(join(dataDir, 'pg_wal', n), join(walArchive, n));
          chownPg(join(walArchive, n));
        }
      }
      const t = performance.now();
      const cp = await run('cp', ['-a', floorPlain, floorDir], {asPg: true, timeoutMs: 1_800_000});
      appendFileSync(join(floorDir, 'postgresql.auto.conf'), `\nrestore_command = 'cp ${walArchive}/%f %p'\nrecovery_target_lsn = '${target}'\nrecovery_target_action = 'promote'\n`);
      writeFileSync(join(floorDir, 'recovery.signal'), '');
      chownPg(join(floorDir, 'recovery.signal'));
      const floorPort = await freePort();
      state.running.add(floorDir);
      const tReplay = performance.now();
      await run(pgTool('pg_ctl'), ['-D', floorDir, '-l', join(state.base, 'floor.log'), '-o', `-p ${floorPort} -c archive_mode=off -c listen_addresses=127.0.0.1`, 'start'], {asPg: true, timeoutMs: 120_000});
      await waitPromoted(floorPort, 1_200_000, join(state.base, 'floor.log'));
      const replayS = (performance.now() - tReplay) / 1000;
      await makeCluster(floorDir, floorPort, '127.0.0.1').stop('immediate');
      const startLsn = /START WAL LOCATION: ([0-9A-F]+\/[0-9A-F]+)/.exec(floorLabel)?.[1];
      results.floor.restore = {cpS: cp.seconds, replayS, seconds: (performance.now() - t) / 1000, segments: segmentsFrom(startLsn)};
      const f = results.floor.restore;
      log(`floor: cp -a of a local pg_basebackup ${fmt(f.cpS, 1)}s + replay of ${fmt(f.segments, 1)} segments from a local directory (restore_command = cp) + promote ${fmt(f.replayS, 1)}s = ${fmt(f.seconds, 1)}s`);
      rmSync(floorDir, {recursive: true, force: true});
    } catch (error) { recordError('restore floor', error); }
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

// ------------------------------------------------------------------------------------------------
// the table: one row per figure of the issue, pgbk / pgBackRest ratio, and the goal

function table() {
  const p = results.pgbk;
  const b = results.pgbackrest;
  const f = results.floor;
  const ratio = (x, y) => (x !== undefined && y ? x / y : undefined);
  const rows = [];
  const row = (figure, pgbkValue, peerValue, floorValue, goal, met, digits = 3) => rows.push({figure, pgbk: pgbkValue, pgbackrest: peerValue, ratio: ratio(pgbkValue, peerValue), floor: floorValue, goal, met, digits});
  const isMet = (value, limit, lower = true) => (value === undefined ? undefined : lower ? value <= limit : value >= limit);
  const both = (...flags) => (flags.some((x) => x === undefined) ? (flags.some((x) => x === false) ? false : undefined) : flags.every(Boolean));

  row('cold archive-push, one segment, median (s) vs lz4', p.coldPush?.medianS, b.coldPush?.lz4?.medianS, f.coldPush?.cpMedianS, `<= ${goals.coldPushVsLz4}x lz4`,
    isMet(ratio(p.coldPush?.medianS, b.coldPush?.lz4?.medianS), goals.coldPushVsLz4));
  row('cold archive-push, one segment, median (s) vs gz', p.coldPush?.medianS, b.coldPush?.gz?.medianS, f.coldPush?.cpMedianS, '-', undefined);
  row('archive-push with a backlog, p50 per call (s)', p.drain?.callP50S, b.drain?.callP50S, undefined, '-', undefined);
  row('archive-push with a backlog, p99 per call (s)', p.drain?.callP99S, b.drain?.callP99S, undefined, `<= ${goals.backlogP99S} s`, isMet(p.drain?.callP99S, goals.backlogP99S));
  row('drain of ready segments (seg/s)', p.drain?.segmentsPerS, b.drain?.segmentsPerS, undefined, `>= ${goals.drainSegPerS}, >= ${goals.drainVsPgbr}x`,
    both(isMet(p.drain?.segmentsPerS, goals.drainSegPerS, false), isMet(ratio(p.drain?.segmentsPerS, b.drain?.segmentsPerS), goals.drainVsPgbr, false)), 2);
  row('full backup (MB/s of database size)', p.backup?.mbPerS, b.backup?.mbPerS, f.backup?.mbPerS, `>= ${goals.backupVsPgbr}x`, isMet(ratio(p.backup?.mbPerS, b.backup?.mbPerS), goals.backupVsPgbr, false), 1);
  row('full backup, stored (MB)', p.backup?.storedMb, b.backup?.storedMb, f.backup ? f.backup.bytes / MB : undefined, '-', undefined, 1);
  row('PITR restore + replay (s)', p.restore?.seconds, b.restore?.seconds, f.restore?.seconds, `<= ${goals.restoreVsPgbr}x, <= ${goals.restoreS} s`,
    both(isMet(ratio(p.restore?.seconds, b.restore?.seconds), goals.restoreVsPgbr), isMet(p.restore?.seconds, goals.restoreS)), 1);
  row('  of which replay + promote (s)', p.restore?.replayS, b.restore?.replayS, f.restore?.replayS, `<= ${goals.replayVsLocal}x local`,
    isMet(ratio(p.restore?.replayS, f.restore?.replayS), goals.replayVsLocal), 1);
  row('S3 requests per segment, cold push', p.coldPush?.requestsPerSegment, b.coldPush?.lz4?.requestsPerSegment, undefined, '-', undefined, 2);
  row('S3 requests per segment, backlog (steady state)', p.drain?.requestsPerSegment, b.drain?.requestsPerSegment, undefined, `<= ${goals.requestsPerSegment}`,
    isMet(p.drain?.requestsPerSegment, goals.requestsPerSegment + 0.05), 2);
  const rss = [['archive-push cold', p.coldPush?.peakRssMb, b.coldPush?.lz4?.peakRssMb], ['archive-push backlog', p.drain?.peakRssMb, b.drain?.peakRssMb],
    ['backup', p.backup?.peakRssMb, b.backup?.peakRssMb], ['restore', p.restore?.peakRssMb, b.restore?.peakRssMb]];
  for (const [what, mine, theirs] of rss) row(`peak RSS, ${what} (MB)`, mine, theirs, what === 'backup' ? f.backup?.peakRssMb : undefined, `<= ${goals.rssMb}`, isMet(mine, goals.rssMb), 0);

  const head = ['figure', 'pgbk', 'pgBackRest', 'pgbk/pgBR', 'floor', 'goal', 'met'];
  const body = rows.map((r) => [r.figure, fmt(r.pgbk, r.digits), fmt(r.pgbackrest, r.digits), r.ratio === undefined ? '-' : `${fmt(r.ratio, 2)}x`, fmt(r.floor, r.digits), r.goal,
    r.met === undefined ? '-' : r.met ? 'yes' : 'NO']);
  const widths = head.map((_, i) => Math.max(head[i].length, ...body.map((x) => x[i].length)));
  const line = (cells) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  log(line(head));
  log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const x of body) log(line(x));
  log(`pgBackRest: ${b.skipped ? `skipped (${b.skipped})` : `${b.version}, measured here: archive-push lz4/gz sync; backlog archive-async=y process-max=2; backup lz4 process-max=2; restore with async archive-get`}.`);
  log('floor: cp of a segment; pg_basebackup -Ft to local disk; cp of a local pg_basebackup + replay from a local WAL directory.');
  log(`Times of commands include runuser (~${fmt(results.machine.runuserOverheadS, 3)}s); per-call backlog times include the timing wrapper (~${fmt(results.machine.timedWrapperOverheadS, 3)}s). ` +
    'Peak RSS is the largest process of each command as /usr/bin/time sees it (detached background processes not included).');
  return rows.map(({digits, ...r}) => r);
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
results.machine.loadAvgAtEnd = loadavg().map((l) => Number(l.toFixed(2)));
step('results');
results.table = table();
log(`total runtime ${fmt(results.totalSeconds, 0)}s; load average at start ${results.machine.loadAvgAtStart?.join(' ')}, at end ${results.machine.loadAvgAtEnd.join(' ')}` +
  `${results.errors.length ? `; ${results.errors.length} step(s) failed: ${results.errors.map((e) => e.step).join(', ')}` : ''}`);
mkdirSync(join(repoDir, '.bench'), {recursive: true});
writeFileSync(join(repoDir, '.bench', 'results.json'), `${JSON.stringify(results, null, 2)}\n`);
log(`written ${join(repoDir, '.bench', 'results.json')}`);
log(`BENCH_JSON ${JSON.stringify(results)}`);
if (results.errors.length) exitCode = 1;
process.exit(exitCode);
