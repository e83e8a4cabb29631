// A throwaway single-node Ceph cluster with the RADOS Gateway (radosgw) for the integration tests:
// one monitor, one memstore OSD (data in memory) and radosgw's S3 API on 127.0.0.1, every path
// (config, data, pid files, logs, admin sockets) in one temp dir. Nothing in /etc/ceph is read or
// written. Unlike s3rver it checks SigV4 signatures, never lists a half-written object, and has
// conditional writes, versioning and Object Lock. Start-up takes ~1.5–2 s here.
//
// Facts about Debian's radosgw 16.2.15 this relies on:
// - auth `none` everywhere; radosgw then needs `ms mon client mode = crc secure` (else it loops on
//   "get_initial_auth_request returned -13" for 300 s);
// - `ceph-osd --mkfs` must get the uuid given to `ceph osd new` (else the monitor refuses its boot:
//   "clashes with existing osd: different fsid");
// - the paxos/objecter settings cut start-up from ~12 s to ~1.5 s; `tcp_nodelay=1` saves ~44 ms per
//   small response;
// - a graceful stop can hang for 120 s and the data is throwaway: stop() SIGKILLs by PID.
// If the test process dies without calling stop() (SIGKILL, crash), a detached watchdog started
// with the cluster kills the daemons and removes the dir once that process is gone.
import {execFile, spawn} from 'node:child_process';
import {accessSync, constants, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync} from 'node:fs';
import {tmpdir} from 'node:os';
import {delimiter, join} from 'node:path';
import {randomBytes, randomUUID} from 'node:crypto';
import {freeLoopbackPort} from '../../src/util/net.js';
import {processAlive} from '../../src/util/process.js';

const BINARIES = ['monmaptool', 'ceph-mon', 'ceph-osd', 'ceph', 'radosgw', 'radosgw-admin'] as const;
const STEP_TIMEOUT_MS = 60_000;
const HTTP_TIMEOUT_MS = 60_000;

export interface Radosgw {
  /** http://127.0.0.1:<port> */
  readonly endpoint: string;
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  /** The temp dir holding everything (ceph.conf, mon/, osd/, run/, log/). */
  readonly dir: string;
  /** Start-up time in ms (mkdtemp to a user with keys). */
  readonly startMs: number;
  /** PIDs of the running daemons (ceph-mon, ceph-osd, radosgw). */
  pids(): number[];
  /** SIGKILL every daemon (by PID), wait for them to exit, remove the dir. Idempotent. */
  stop(): Promise<void>;
}

/** Path of `name` on PATH (plus /usr/sbin, /sbin), or undefined. */
function which(name: string): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/local/bin', '/usr/bin', '/usr/sbin', '/sbin'];
  for (const dir of dirs) {
    if (!dir) continue;
    const path = join(dir, name);
    try {
      accessSync(path, constants.X_OK);
      return path;
    } catch {
      // not here
    }
  }
  return undefined;
}

/** Every binary startRadosgw needs is installed (packages ceph-mon ceph-osd radosgw ceph-common). */
export function radosgwAvailable(): boolean {
  return BINARIES.every((name) => which(name) !== undefined);
}

function run(file: string, args: string[], cwd: string): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(file, args, {cwd, timeout: STEP_TIMEOUT_MS, killSignal: 'SIGKILL', maxBuffer: 16 << 20}, (err, stdout, stderr) => {
      if (err) {
        const why = err.killed ? `no answer within ${STEP_TIMEOUT_MS} ms` : err.message;
        reject(new Error(`${file} ${args.join(' ')}: ${why}\n${String(stderr).slice(-4096)}`));
      } else {
        resolve(String(stdout));
      }
    });
  });
}

function config(dir: string, fsid: string, monPort: number, rgwPort: number): string {
  return `[global]
fsid = ${fsid}
mon host = v2:127.0.0.1:${monPort}
public addr = 127.0.0.1
auth cluster required = none
auth service required = none
auth client required = none
auth allow insecure global id reclaim = true
ms mon client mode = crc secure
osd objectstore = memstore
memstore device bytes = ${4 * 1024 ** 3}
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon max pg per osd = 1000
mon data avail warn = 1
mon data avail crit = 0
paxos propose interval = 0.01
paxos min wait = 0.001
objecter tick interval = 0.5
run dir = ${dir}/run
admin socket = ${dir}/run/$name.asok
pid file = ${dir}/run/$name.pid
log file = ${dir}/log/$name.log
mon data = ${dir}/mon
osd data = ${dir}/osd
osd journal size = 0

[client.rgw]
rgw frontends = beast endpoint=127.0.0.1:${rgwPort} tcp_nodelay=1
rgw data = ${dir}/rgw
rgw enable usage log = false
`;
}

/** PIDs from <dir>/run/*.pid whose process still runs with this dir's config. */
function daemonPids(dir: string): number[] {
  const runDir = join(dir, 'run');
  let names: string[];
  try {
    names = readdirSync(runDir).filter((name) => name.endsWith('.pid'));
  } catch {
    return [];
  }
  const pids: number[] = [];
  for (const name of names) {
    let pid: number;
    try {
      pid = Number.parseInt(readFileSync(join(runDir, name), 'utf8'), 10);
    } catch {
      continue;
    }
    if (!Number.isInteger(pid) || pid <= 0) continue;
    try {
      if (!readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(dir)) continue;
    } catch {
      continue; // gone
    }
    pids.push(pid);
  }
  return pids;
}

async function killDaemons(dir: string): Promise<void> {
  const pids = daemonPids(dir);
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone
    }
  }
  const deadline = Date.now() + 10_000;
  while (pids.some(processAlive) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
}

/**
 * Detached shell that outlives us: once `ownerPid` is gone (or the dir is removed by stop()), it
 * SIGKILLs the daemons named in <dir>/run/*.pid (only processes whose command line names the dir)
 * and removes the dir.
 */
function startWatchdog(dir: string, ownerPid: number): void {
  const script = `
trap '' INT TERM HUP
owner=$1 dir=$2
while kill -0 "$owner" 2>/dev/null && [ -d "$dir" ]; do sleep 1; done
[ -d "$dir" ] || exit 0
for f in "$dir"/run/*.pid; do
  [ -f "$f" ] || continue
  pid=$(cat "$f" 2>/dev/null) || continue
  if [ -n "$pid" ] && grep -aqF "$dir" "/proc/$pid/cmdline" 2>/dev/null; then kill -9 "$pid" 2>/dev/null; fi
done
sleep 1
rm -rf "$dir"
`;
  const child = spawn('/bin/sh', ['-c', script, 'pgbk-radosgw-watchdog', String(ownerPid), dir], {
    detached: true,
    stdio: 'ignore',
  });
  child.unref();
}

async function waitForHttp(endpoint: string, dir: string): Promise<void> {
  const deadline = Date.now() + HTTP_TIMEOUT_MS;
  let last = '';
  let missingSince: number | undefined;
  while (Date.now() < deadline) {
    try {
      const response = await fetch(`${endpoint}/`, {signal: AbortSignal.timeout(2000)});
      await response.arrayBuffer();
      if (response.status < 500) return;
      last = `HTTP ${response.status}`;
    } catch (err) {
      last = String((err as Error).cause ?? err);
    }
    // mon, osd and rgw each write a pid file once daemonized; one missing for 2 s means it died.
    if (daemonPids(dir).length < 3) {
      missingSince ??= Date.now();
      if (Date.now() - missingSince > 2000) {
        last = `a daemon exited (pid files: ${readdirSync(join(dir, 'run')).filter((n) => n.endsWith('.pid')).join(', ')}; ${last})`;
        break;
      }
    } else {
      missingSince = undefined;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  let log = '';
  try {
    log = readFileSync(join(dir, 'log', 'client.rgw.log'), 'utf8').slice(-4096);
  } catch {
    // no log
  }
  throw new Error(`radosgw at ${endpoint} did not answer: ${last}\n${log}`);
}

export interface StartRadosgwOptions {
  /** Where the temp dir goes (default: the OS temp dir). */
  parent?: string;
  /** The daemons are killed and the dir removed once this process is gone (default: this process). */
  ownerPid?: number;
}

/**
 * Start a single-node cluster and radosgw in a new temp dir, with a user whose keys are random.
 * Buckets are the caller's (see global-setup.ts).
 */
export async function startRadosgw(opts: StartRadosgwOptions = {}): Promise<Radosgw> {
  const started = Date.now();
  const dir = mkdtempSync(join(opts.parent ?? tmpdir(), 'pgbk-radosgw-'));
  startWatchdog(dir, opts.ownerPid ?? process.pid);
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    await killDaemons(dir);
    rmSync(dir, {recursive: true, force: true});
  };
  try {
    for (const sub of ['run', 'log', 'mon', 'osd', 'rgw']) mkdirSync(join(dir, sub));
    const fsid = randomUUID();
    const monPort = await freeLoopbackPort();
    let rgwPort = await freeLoopbackPort();
    while (rgwPort === monPort) rgwPort = await freeLoopbackPort();
    const conf = join(dir, 'ceph.conf');
    writeFileSync(conf, config(dir, fsid, monPort, rgwPort));
    const c = ['-c', conf];

    await run('monmaptool', ['--create', '--fsid', fsid, '--addv', 'a', `[v2:127.0.0.1:${monPort}]`, join(dir, 'monmap')], dir);
    await run('ceph-mon', [...c, '--mkfs', '-i', 'a', '--monmap', join(dir, 'monmap')], dir);
    await run('ceph-mon', [...c, '-i', 'a'], dir); // daemonizes once listening
    const osdUuid = randomUUID();
    const osdId = (await run('ceph', [...c, 'osd', 'new', osdUuid], dir)).trim();
    if (!/^\d+$/.test(osdId)) throw new Error(`ceph osd new answered ${JSON.stringify(osdId)}`);
    await run('ceph-osd', [...c, '-i', osdId, '--mkfs', '--osd-uuid', osdUuid], dir);
    await run('ceph-osd', [...c, '-i', osdId], dir);
    await run('radosgw', [...c, '-n', 'client.rgw'], dir);
    const endpoint = `http://127.0.0.1:${rgwPort}`;
    await waitForHttp(endpoint, dir);

    const accessKeyId = `PGBK${randomBytes(8).toString('hex').toUpperCase()}`;
    const secretAccessKey = randomBytes(30).toString('base64url');
    await run(
      'radosgw-admin',
      [...c, 'user', 'create', '--uid=pgbk-test', '--display-name=pgbk test', `--access-key=${accessKeyId}`, `--secret-key=${secretAccessKey}`],
      dir,
    );
    return {endpoint, accessKeyId, secretAccessKey, dir, startMs: Date.now() - started, pids: () => daemonPids(dir), stop};
  } catch (err) {
    await stop();
    throw err;
  }
}
