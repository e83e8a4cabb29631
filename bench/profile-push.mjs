#!/usr/bin/env node
// Where a cold `pgbk archive-push` spends its time (`npm run bench:profile`). Plain Node ESM.
//
// Starts a throwaway radosgw (test/helpers/radosgw.ts) and cluster, `pgbk init`, makes a few WAL segments, copies
// them out of pg_wal, then pushes each with a fresh `node --cpu-prof bin/pgbk archive-push` (as the postgres user when
// run as root; the segment outside a data directory, as the bench's cold push) and sums the CPU profiles by what each
// sample's stack is doing: module loading (by package), the AWS SDK at run time, hashing, compression, GC, and idle
// (waiting for S3, the disk or the thread pool, where zstd runs). Also times `node -e ''`, `pgbk --version` and the
// import of the heaviest modules alone. Env: PGBK_PROFILE_PUSHES (default 8), PGBK_PROFILE_KEEP=1 (keep the profiles).

import {execFileSync, spawnSync} from 'node:child_process';
import {appendFileSync, chownSync, copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync} from 'node:fs';
import {allowTsImports} from './ts-imports.mjs';
import {loadavg, tmpdir} from 'node:os';
import {dirname, join, resolve} from 'node:path';
import {fileURLToPath} from 'node:url';

const repoDir = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const pgbkBin = join(repoDir, 'bin', 'pgbk');
const PUSHES = Number(process.env.PGBK_PROFILE_PUSHES || 8);
const isRoot = process.getuid?.() === 0;
const log = (text) => process.stdout.write(`${text}\n`);

allowTsImports();

const asPg = (argv) => (isRoot ? ['runuser', '-u', 'postgres', '--', ...argv] : argv);
const sh = (argv, opts = {}) => execFileSync(argv[0], argv.slice(1), {encoding: 'utf8', cwd: '/', stdio: ['ignore', 'pipe', 'pipe'], ...opts});
const pgIds = isRoot ? sh(['getent', 'passwd', 'postgres']).trim().split(':').slice(2, 4).map(Number) : undefined;
const own = (path) => { if (pgIds) chownSync(path, pgIds[0], pgIds[1]); };

// ------------------------------------------------------------------------------------------------ classification

const SDK = /node_modules\/(@aws-sdk|@smithy|@aws-crypto|@aws\/|fast-xml-parser|strnum|tslib|bowser)/;
const LOADER_URL = /^node:internal\/modules|^node:internal\/vm/;
const LOADER_FN = /^(compileFunction|compileFunctionForCJSLoader|ModuleWrap|link|instantiate|evaluate|getModuleRequests|internalModuleStat|readPackageJSON|getNearestParentPackageJSON|getPackageScopeConfig)$/;
const packageOf = (url) => url.replace(/.*node_modules\/((@[^/]+\/)?[^/]+).*/, '$1');

/** What a sample (its stack, leaf first) is doing. */
function classify(stack) {
  const leaf = stack[0].callFrame;
  if (!leaf.url && leaf.functionName === '(idle)') return 'idle: waiting for S3, the disk or the thread pool (zstd runs there)';
  if (!leaf.url && leaf.functionName === '(garbage collector)') return 'garbage collection';
  if (!leaf.url && leaf.functionName === '(program)') return 'V8 and native code outside JS (start-up, parsing)';
  const urls = stack.map((n) => n.callFrame.url);
  if (stack.some((n) => LOADER_URL.test(n.callFrame.url) || (!n.callFrame.url && LOADER_FN.test(n.callFrame.functionName)))) {
    const mod = urls.find((u) => u && !u.startsWith('node:'));
    if (!mod) return 'module loading: resolve, read, compile (ESM graph)';
    if (SDK.test(mod)) return 'module loading: AWS SDK';
    if (/node_modules\//.test(mod)) return `module loading: ${packageOf(mod)}`;
    return 'module loading: pgbk (dist/) and what it imports';
  }
  if (stack.slice(0, 6).some((n) => /zlib/.test(n.callFrame.url))) return 'compression (node:zlib, main thread part)';
  if (stack.slice(0, 4).some((n) => /crypto/.test(n.callFrame.url) || (!n.callFrame.url && /^(update|digest)$/.test(n.callFrame.functionName)))) {
    return urls.some((u) => SDK.test(u)) ? 'hashing by the AWS SDK' : 'hashing by pgbk (sha256, md5)';
  }
  if (urls.some((u) => SDK.test(u))) return 'AWS SDK at run time (client, endpoint, serde, SigV4, http)';
  if (urls.some((u) => /node_modules\//.test(u))) return `${packageOf(urls.find((u) => /node_modules\//.test(u)))} at run time`;
  if (urls.some((u) => /node:(_tls|tls|https|_http|http|net)|internal\/(tls|http|net|stream)/.test(u))) return 'node tls/http/net/streams';
  if (urls.some((u) => /\/dist\//.test(u))) return 'pgbk code at run time';
  return 'other';
}

function summarize(files) {
  const totals = new Map();
  let wall = 0;
  for (const file of files) {
    const p = JSON.parse(readFileSync(file, 'utf8'));
    const byId = new Map(p.nodes.map((x) => [x.id, x]));
    const parent = new Map();
    for (const x of p.nodes) for (const c of x.children ?? []) parent.set(c, x.id);
    const cache = new Map();
    p.samples.forEach((id, i) => {
      let c = cache.get(id);
      if (!c) {
        const stack = [];
        for (let cur = id; cur !== undefined; cur = parent.get(cur)) stack.push(byId.get(cur));
        c = classify(stack);
        cache.set(id, c);
      }
      totals.set(c, (totals.get(c) ?? 0) + (p.timeDeltas[i] ?? 0));
    });
    wall += p.endTime - p.startTime;
  }
  const n = files.length;
  const rows = [...totals].map(([what, us]) => ({what, ms: us / n / 1000})).sort((a, b) => b.ms - a.ms);
  return {profiles: n, profiledMs: wall / n / 1000, rows};
}

// ------------------------------------------------------------------------------------------------ setup and run

const base = mkdtempSync(join(tmpdir(), 'pgbk-profile-'));
own(base);
let rgw;
let dataDir;
let binDir;
try {
  const {startRadosgw, radosgwAvailable} = await import(join(repoDir, 'test', 'helpers', 'radosgw.ts'));
  if (!radosgwAvailable()) throw new Error('radosgw is not installed (packages radosgw ceph-mon ceph-osd ceph-common)');
  rgw = await startRadosgw();
  const {S3Client, CreateBucketCommand} = await import('@aws-sdk/client-s3');
  const client = new S3Client({endpoint: rgw.endpoint, region: 'us-east-1', forcePathStyle: true, credentials: {accessKeyId: rgw.accessKeyId, secretAccessKey: rgw.secretAccessKey}});
  await client.send(new CreateBucketCommand({Bucket: 'profile'}));
  client.destroy();

  binDir = readdirSync('/usr/lib/postgresql').filter((v) => /^\d+$/.test(v)).sort((a, b) => Number(b) - Number(a)).map((v) => `/usr/lib/postgresql/${v}/bin`)[0];
  dataDir = join(base, 'data');
  sh(asPg([join(binDir, 'initdb'), '-D', dataDir, '-A', 'trust', '-U', 'postgres', '--no-sync']));
  const port = 20000 + Math.floor(Math.random() * 20000);
  appendFileSync(join(dataDir, 'postgresql.conf'), `\nport = ${port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '${base}'\nwal_level = replica\n`);
  sh(asPg([join(binDir, 'pg_ctl'), '-D', dataDir, '-l', join(base, 'server.log'), '-w', 'start']));
  const policy = join(base, 'policy.yaml');
  writeFileSync(policy, `strategy: pitr\npostgres:\n  url: postgresql://postgres@127.0.0.1:${port}/postgres\n  bin_dir: ${binDir}\nrepository:\n  url: s3://profile/p\n` +
    `  endpoint: ${rgw.endpoint}\n  region: us-east-1\n  force_path_style: true\n  access_key_id: "${rgw.accessKeyId}"\n  secret_access_key: "${rgw.secretAccessKey}"\n`, {mode: 0o600});
  own(policy);
  const env = ['env', 'AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED=true'];
  sh(asPg([...env, process.execPath, pgbkBin, 'init', '--policy', policy]));
  const psql = (sql) => sh(asPg([join(binDir, 'psql'), '-X', '-At', '-h', base, '-p', String(port), '-U', 'postgres', '-c', sql])).trim();
  for (let i = 0; i < PUSHES + 1; i++) {
    psql(`create table if not exists t${i} as select g, md5(g::text) as h, now() as at from generate_series(1, 250000) g`);
    psql('select pg_switch_wal()');
  }
  const current = psql('select pg_walfile_name(pg_current_wal_lsn())');
  const segDir = join(base, 'segments');
  mkdirSync(segDir);
  own(segDir);
  const segments = readdirSync(join(dataDir, 'pg_wal')).filter((n) => /^[0-9A-F]{24}$/.test(n) && n < current).sort().slice(-PUSHES);
  for (const name of segments) {
    copyFileSync(join(dataDir, 'pg_wal', name), join(segDir, name));
    own(join(segDir, name));
  }
  const profDir = join(base, 'profiles');
  mkdirSync(profDir);
  own(profDir);

  log(`pgbk cold archive-push profile: ${segments.length} segments, radosgw ${rgw.endpoint} (http), load average ${loadavg().map((l) => l.toFixed(1)).join(' ')}`);
  const timeIt = (argv) => {
    const t = process.hrtime.bigint();
    const r = spawnSync(argv[0], argv.slice(1), {cwd: '/', stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8'});
    if (r.status !== 0) throw new Error(`${argv.join(' ')}: exit ${r.status}\n${r.stderr}`);
    return Number(process.hrtime.bigint() - t) / 1e9;
  };
  const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const plain = [];
  for (const name of segments) plain.push(timeIt(asPg([...env, process.execPath, '--cpu-prof', `--cpu-prof-dir=${profDir}`, pgbkBin, 'archive-push', '--policy', policy, join(segDir, name)])));
  const files = readdirSync(profDir).filter((n) => n.endsWith('.cpuprofile')).map((n) => join(profDir, n));
  const summary = summarize(files);
  log(`wall per push (with the profiler): median ${median(plain).toFixed(3)}s (min ${Math.min(...plain).toFixed(3)}, max ${Math.max(...plain).toFixed(3)}); ` +
    `profiled part: mean ${summary.profiledMs.toFixed(0)} ms (Node's own start-up before the profiler is not in it)`);
  let loading = 0;
  for (const row of summary.rows) {
    if (row.what.startsWith('module loading')) loading += row.ms;
    if (row.ms >= 3) log(`${row.ms.toFixed(0).padStart(7)} ms  ${(100 * row.ms / summary.profiledMs).toFixed(0).padStart(3)}%  ${row.what}`);
  }
  log(`${loading.toFixed(0).padStart(7)} ms  ${(100 * loading / summary.profiledMs).toFixed(0).padStart(3)}%  = all module loading`);

  const bestOf = (argv, runs = 3) => Math.min(...Array.from({length: runs}, () => timeIt(argv)));
  log('\nstart-up and imports alone (best of 3, wall):');
  log(`  node -e ''            ${bestOf([process.execPath, '-e', '']).toFixed(3)}s`);
  log(`  pgbk --version        ${bestOf([process.execPath, pgbkBin, '--version']).toFixed(3)}s`);
  for (const m of ['@aws-sdk/client-s3', '@aws-sdk/lib-storage', 'zod', 'yaml', 'commander', './dist/policy/load.js', './dist/storage/s3/s3-repository.js']) {
    const ms = Math.min(...Array.from({length: 3}, () => Number(sh([process.execPath, '--input-type=module', '-e',
      `const t = performance.now(); await import(${JSON.stringify(m)}); console.log(performance.now() - t)`], {cwd: repoDir}).trim())));
    log(`  import ${m.padEnd(36)} ${(ms / 1000).toFixed(3)}s`);
  }
  if (process.env.PGBK_PROFILE_KEEP === '1') {
    const keep = mkdtempSync(join(tmpdir(), 'pgbk-profiles-'));
    for (const f of files) copyFileSync(f, join(keep, f.split('/').pop()));
    log(`\nprofiles kept in ${keep} (open them in Chrome DevTools > Performance)`);
  }
} finally {
  if (dataDir && binDir) {
    const stop = asPg([join(binDir, 'pg_ctl'), '-D', dataDir, '-m', 'immediate', '-w', 'stop']);
    spawnSync(stop[0], stop.slice(1), {cwd: '/', stdio: 'ignore'});
  }
  await rgw?.stop();
  rmSync(base, {recursive: true, force: true});
}
