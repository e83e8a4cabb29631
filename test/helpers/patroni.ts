// A real Patroni cluster on loopback for integration tests: one etcd (v3 API), Patroni nodes running PostgreSQL
// as the postgres OS user, and HAProxy routing a read-write port to the leader (GET /primary) and a read-only
// port to the replicas (GET /replica). Everything lives in one temp dir; every process runs in its own process
// group and is stopped (SIGTERM, then SIGKILL) by destroy(), on process exit, and the postmasters by the
// global teardown. Every wait is bounded.
//
// The Debian packages patroni, etcd-server and haproxy must be installed (.ci/run installs them): when they are
// not, requireHaBinaries() throws and the test fails saying so — it never skips.

import {spawn, execFileSync, type ChildProcess} from 'node:child_process';
import {chmodSync, closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync} from 'node:fs';
import {request as httpsRequest} from 'node:https';
import {join} from 'node:path';
import {stringify} from 'yaml';
import {killPostmasters, sleep, forgetDir} from './cleanup.js';
import {chownToPostgres, freePort, isRoot, makeTempDir, pgBinDir, runAsPostgres, waitFor, type ExecResult} from './cluster.js';
import {baseEnv, pgbkBin} from './cli.js';
import {processAlive} from '../../src/util/process.js';

export interface HaBinaries {
  patroni: string;
  patronictl: string;
  etcd: string;
  haproxy: string;
}

/** Finds patroni, patronictl, etcd and haproxy on PATH (or /usr/sbin); throws naming what is missing. */
export function requireHaBinaries(): HaBinaries {
  const find = (name: string): string | undefined => {
    for (const dir of [...(process.env.PATH ?? '').split(':'), '/usr/bin', '/usr/sbin', '/usr/local/bin']) {
      if (dir && existsSync(join(dir, name))) return join(dir, name);
    }
    return undefined;
  };
  const found = {patroni: find('patroni'), patronictl: find('patronictl'), etcd: find('etcd'), haproxy: find('haproxy')};
  const missing = Object.entries(found).filter(([, path]) => !path).map(([name]) => name);
  if (missing.length > 0) {
    throw new Error(`the Patroni test needs ${missing.join(', ')}, not found on PATH: install the Debian packages ` +
      '(apt-get install -y patroni etcd-server haproxy — .ci/run does this in CI)');
  }
  return found as HaBinaries;
}

interface Managed {
  name: string;
  child: ChildProcess;
  log: string;
}

const running = new Set<Managed>();


function signalGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // gone
  }
}

/** SIGTERM the process group, wait up to graceMs, then SIGKILL it. */
async function stopManaged(proc: Managed, graceMs: number): Promise<void> {
  const pid = proc.child.pid;
  running.delete(proc);
  if (!pid) return;
  signalGroup(pid, 'SIGTERM');
  const deadline = Date.now() + graceMs;
  while (processAlive(pid) && proc.child.exitCode === null && proc.child.signalCode === null && Date.now() < deadline) await sleep(100);
  signalGroup(pid, 'SIGKILL');
}

process.once('exit', () => {
  for (const proc of running) if (proc.child.pid) signalGroup(proc.child.pid, 'SIGKILL');
});

/** Starts a long-running program in its own process group, output appended to `log`. */
function startManaged(name: string, file: string, args: string[], log: string, opts: {asPostgres?: boolean; env?: Record<string, string>; cwd?: string} = {}): Managed {
  const fd = openSync(log, 'a');
  if (opts.asPostgres) chownToPostgres(log);
  const [cmd, argv] = opts.asPostgres && isRoot ? ['runuser', ['-u', 'postgres', '--', file, ...args]] : [file, args];
  const child = spawn(cmd, argv, {detached: true, stdio: ['ignore', fd, fd], env: opts.env ?? {...baseEnv()}, cwd: opts.cwd});
  closeSync(fd);
  child.on('error', () => undefined);
  const proc = {name, child, log};
  running.add(proc);
  return proc;
}

/** GET over https verified against `ca`: status and JSON body (text when not JSON), undefined when unreachable. */
function httpsGet(url: string, ca: Buffer): Promise<{status: number; body: any} | undefined> {
  return new Promise((resolve) => {
    const req = httpsRequest(url, {ca, timeout: 3000}, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let body: unknown;
        try {
          body = JSON.parse(text);
        } catch {
          body = text;
        }
        resolve({status: res.statusCode ?? 0, body});
      });
      res.on('error', () => resolve(undefined));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(undefined));
    req.end();
  });
}

export function tail(path: string, lines = 60): string {
  try {
    return readFileSync(path, 'utf8').split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

export interface PatroniNode {
  name: string;
  dir: string;
  dataDir: string;
  configFile: string;
  log: string;
  pgPort: number;
  restPort: number;
  restUrl: string;
  /** postgresql://postgres@127.0.0.1:<pgPort>/postgres */
  url: string;
  proc?: Managed;
}

export interface PatroniTestCluster {
  dir: string;
  scope: string;
  policyFile: string;
  repoDir: string;
  etcdUrl: string;
  nodes: PatroniNode[];
  /** HAProxy: read-write (leader) and read-only (replicas) ports. */
  primaryPort: number;
  replicaPort: number;
  primaryUrl: string;
  replicaUrl: string;
  haproxyLog: string;
  bins: HaBinaries;
  startEtcd(): Promise<void>;
  startNode(node: PatroniNode): Promise<void>;
  stopNode(node: PatroniNode): Promise<void>;
  startHaproxy(): Promise<void>;
  patronictl(args: string[]): Promise<ExecResult>;
  /** GET <node REST>/<path>: status and JSON body (undefined when unreachable). */
  rest(node: PatroniNode, path: string): Promise<{status: number; body: any} | undefined>;
  /** Every log, for failure messages. */
  logs(): string;
  destroy(): Promise<void>;
}

export interface PatroniClusterOptions {
  nodes?: number;
  /** Extra policy keys. */
  policy?: Record<string, unknown>;
  /**
   * The REST API over https (restapi.certfile/keyfile, readable by postgres) with restapi.authentication; the
   * members' restUrl become https://, cluster.rest() verifies against cafile, HAProxy checks over TLS.
   */
  restapi?: {certfile: string; keyfile: string; cafile: string; username: string; password: string};
  /** Added to the environment of the Patroni processes (and so of PostgreSQL and its archive_command). */
  env?: Record<string, string>;
}

/**
 * A CA and a server certificate for 127.0.0.1 signed by it, made with openssl in `dir`, readable by postgres
 * (the key 0600, owned by postgres).
 */
export function makeTestCertificates(dir: string): {cafile: string; certfile: string; keyfile: string} {
  const ca = join(dir, 'ca.pem');
  const caKey = join(dir, 'ca.key');
  const certfile = join(dir, 'server.pem');
  const keyfile = join(dir, 'server.key');
  const csr = join(dir, 'server.csr');
  const ext = join(dir, 'server.ext');
  const openssl = (args: string[]) => execFileSync('openssl', args, {stdio: ['ignore', 'pipe', 'pipe'], timeout: 30_000});
  openssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=pgbk test CA', '-keyout', caKey, '-out', ca]);
  openssl(['req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=127.0.0.1', '-keyout', keyfile, '-out', csr]);
  writeFileSync(ext, 'subjectAltName = IP:127.0.0.1, DNS:localhost\nbasicConstraints = CA:FALSE\nkeyUsage = digitalSignature, keyEncipherment\nextendedKeyUsage = serverAuth\n');
  openssl(['x509', '-req', '-in', csr, '-CA', ca, '-CAkey', caKey, '-CAcreateserial', '-days', '2', '-extfile', ext, '-out', certfile]);
  for (const file of [ca, certfile, keyfile]) chownToPostgres(file);
  chmodSync(keyfile, 0o600);
  chmodSync(ca, 0o644);
  chmodSync(certfile, 0o644);
  return {cafile: ca, certfile, keyfile};
}

/**
 * Lays out (without starting anything) etcd, `nodes` Patroni members and HAProxy in a temp dir, with a local
 * repository and a patroni-strategy policy whose postgres.url goes through HAProxy's read-write port.
 */
export async function preparePatroniCluster(options: PatroniClusterOptions = {}): Promise<PatroniTestCluster> {
  const bins = requireHaBinaries();
  const dir = makeTempDir('pgbk-patroni-');
  const scope = `pgbk-it-${process.pid}-${Date.now().toString(36)}`;
  const repoDir = join(dir, 'repo');
  mkdirSync(repoDir);
  chownToPostgres(repoDir);
  const [etcdClient, etcdPeer, primaryPort, replicaPort] = [await freePort(), await freePort(), await freePort(), await freePort()];
  const etcdUrl = `http://127.0.0.1:${etcdClient}`;
  const nodes: PatroniNode[] = [];
  for (let index = 1; index <= (options.nodes ?? 2); index++) {
    const name = `n${index}`;
    const nodeDir = join(dir, name);
    mkdirSync(nodeDir, {mode: 0o700});
    chownToPostgres(nodeDir);
    const pgPort = await freePort();
    const restPort = await freePort();
    nodes.push({
      name, dir: nodeDir, dataDir: join(nodeDir, 'data'), configFile: join(nodeDir, 'patroni.yml'), log: join(nodeDir, 'patroni.log'),
      pgPort, restPort, restUrl: `${options.restapi ? 'https' : 'http'}://127.0.0.1:${restPort}`, url: `postgresql://postgres@127.0.0.1:${pgPort}/postgres`,
    });
  }
  const policyFile = join(dir, 'patroni.yaml');
  writeFileSync(policyFile, stringify({
    strategy: 'patroni',
    postgres: {url: `postgresql://postgres@127.0.0.1:${primaryPort}/postgres`, bin_dir: pgBinDir()},
    repository: {url: `file://${repoDir}`},
    patroni: {rest_api: nodes.map((node) => node.restUrl), maximum_lag_on_failover: 1048576},
    ...options.policy,
  }), {mode: 0o640});
  chownToPostgres(policyFile);

  const pgbk = `${process.execPath} ${pgbkBin}`;
  for (const node of nodes) {
    const config = {
      scope,
      namespace: '/pgbk-test/',
      name: node.name,
      log: {level: 'INFO'},
      restapi: {
        listen: `127.0.0.1:${node.restPort}`, connect_address: `127.0.0.1:${node.restPort}`,
        ...(options.restapi ? {
          certfile: options.restapi.certfile, keyfile: options.restapi.keyfile,
          authentication: {username: options.restapi.username, password: options.restapi.password},
        } : {}),
      },
      // Patroni's own calls to other members and patronictl verify the members' certificates against the test CA.
      ...(options.restapi ? {ctl: {cacert: options.restapi.cafile}} : {}),
      etcd3: {hosts: [`127.0.0.1:${etcdClient}`]},
      bootstrap: {
        dcs: {
          ttl: 20,
          loop_wait: 2,
          retry_timeout: 5,
          maximum_lag_on_failover: 1048576,
          postgresql: {
            use_pg_rewind: false,
            use_slots: true,
            parameters: {
              wal_level: 'replica',
              archive_mode: 'on',
              archive_command: `${pgbk} archive-push --policy ${policyFile} %p`,
              max_wal_senders: 10,
              max_replication_slots: 10,
              wal_keep_size: '128MB',
              hot_standby: 'on',
            },
          },
        },
        initdb: [{encoding: 'UTF8'}, {locale: 'C'}, 'data-checksums'],
      },
      postgresql: {
        listen: `127.0.0.1:${node.pgPort}`,
        connect_address: `127.0.0.1:${node.pgPort}`,
        data_dir: node.dataDir,
        bin_dir: pgBinDir(),
        pgpass: join(node.dir, 'pgpass'),
        authentication: {
          superuser: {username: 'postgres', password: 'pgbk-test-superuser'},
          replication: {username: 'replicator', password: 'pgbk-test-replicator'},
        },
        pg_hba: [
          'local all all trust',
          'host all all 127.0.0.1/32 trust',
          'host replication all 127.0.0.1/32 trust',
        ],
        parameters: {unix_socket_directories: node.dir},
        recovery_conf: {restore_command: `${pgbk} archive-get --policy ${policyFile} %f %p`},
        create_replica_methods: ['pgbk', 'basebackup'],
        pgbk: {command: `${pgbk} patroni-create-replica --policy ${policyFile}`, no_leader: true},
        basebackup: {checkpoint: 'fast'},
      },
      tags: {nofailover: false, noloadbalance: false, clonefrom: false, nosync: false},
    };
    writeFileSync(node.configFile, stringify(config), {mode: 0o600});
    chownToPostgres(node.configFile);
  }

  const haproxyConfig = join(dir, 'haproxy.cfg');
  const haproxyLog = join(dir, 'haproxy.log');
  const backend = (check: string) => [
    `  option httpchk GET ${check}`,
    '  http-check expect status 200',
    '  default-server inter 500ms fastinter 500ms downinter 1s fall 2 rise 1 on-marked-down shutdown-sessions',
    ...nodes.map((node) => `  server ${node.name} 127.0.0.1:${node.pgPort} check port ${node.restPort}${options.restapi ? ' check-ssl verify none' : ''}`),
  ];
  writeFileSync(haproxyConfig, [
    'global',
    '  maxconn 200',
    'defaults',
    '  mode tcp',
    '  retries 2',
    '  timeout connect 2s',
    '  timeout client 30m',
    '  timeout server 30m',
    '  timeout check 2s',
    'listen primary',
    `  bind 127.0.0.1:${primaryPort}`,
    ...backend('/primary'),
    'listen replicas',
    `  bind 127.0.0.1:${replicaPort}`,
    '  balance roundrobin',
    ...backend('/replica'),
    '',
  ].join('\n'));

  let etcd: Managed | undefined;
  let haproxy: Managed | undefined;
  const etcdLog = join(dir, 'etcd.log');

  const cluster: PatroniTestCluster = {
    dir, scope, policyFile, repoDir, etcdUrl, nodes, primaryPort, replicaPort, haproxyLog, bins,
    primaryUrl: `postgresql://postgres@127.0.0.1:${primaryPort}/postgres`,
    replicaUrl: `postgresql://postgres@127.0.0.1:${replicaPort}/postgres`,

    async startEtcd() {
      const dataDir = join(dir, 'etcd');
      etcd = startManaged('etcd', bins.etcd, [
        '--name', 'pgbk-test', '--data-dir', dataDir,
        '--listen-client-urls', etcdUrl, '--advertise-client-urls', etcdUrl,
        '--listen-peer-urls', `http://127.0.0.1:${etcdPeer}`, '--initial-advertise-peer-urls', `http://127.0.0.1:${etcdPeer}`,
        '--initial-cluster', `pgbk-test=http://127.0.0.1:${etcdPeer}`, '--initial-cluster-state', 'new',
        '--heartbeat-interval', '100', '--election-timeout', '1000',
      ], etcdLog);
      await waitFor(async () => {
        if (etcd!.child.exitCode !== null) throw new Error(`etcd exited (${etcd!.child.exitCode}):\n${tail(etcdLog)}`);
        const response = await fetch(`${etcdUrl}/health`, {signal: AbortSignal.timeout(2000)});
        return response.ok && ((await response.json()) as {health?: string}).health === 'true';
      }, {timeoutMs: 30_000, intervalMs: 250, what: `etcd on ${etcdUrl}`}).catch((error) => {
        throw new Error(`${(error as Error).message}\n--- etcd log ---\n${tail(etcdLog)}`);
      });
    },

    async startNode(node) {
      node.proc = startManaged(`patroni ${node.name}`, bins.patroni, [node.configFile], node.log,
        {asPostgres: true, cwd: node.dir, ...(options.env ? {env: {...baseEnv(), ...options.env}} : {})});
    },

    async stopNode(node) {
      if (node.proc) await stopManaged(node.proc, 30_000);
      node.proc = undefined;
    },

    async startHaproxy() {
      try {
        execFileSync(bins.haproxy, ['-c', '-f', haproxyConfig], {stdio: ['ignore', 'pipe', 'pipe'], timeout: 20_000});
      } catch (error) {
        const {stdout, stderr} = error as {stdout?: Buffer; stderr?: Buffer};
        throw new Error(`haproxy -c -f ${haproxyConfig} failed:\n${stdout ?? ''}${stderr ?? ''}`);
      }
      haproxy = startManaged('haproxy', bins.haproxy, ['-db', '-f', haproxyConfig], haproxyLog);
      await waitFor(async () => {
        if (haproxy!.child.exitCode !== null) throw new Error(`haproxy exited (${haproxy!.child.exitCode}):\n${tail(haproxyLog)}`);
        return true;
      }, {timeoutMs: 5_000, what: 'haproxy'});
    },

    patronictl(args) {
      return runAsPostgres(bins.patronictl, ['-c', nodes[0]!.configFile, ...args], {timeoutMs: 90_000, env: baseEnv()});
    },

    async rest(node, path) {
      if (options.restapi) return httpsGet(`${node.restUrl}${path}`, readFileSync(options.restapi.cafile));
      try {
        const response = await fetch(`${node.restUrl}${path}`, {signal: AbortSignal.timeout(3000)});
        const text = await response.text();
        let body: unknown;
        try {
          body = JSON.parse(text);
        } catch {
          body = text;
        }
        return {status: response.status, body};
      } catch {
        return undefined;
      }
    },

    logs() {
      return [
        ...nodes.map((node) => `--- ${node.name} (${node.log}) ---\n${tail(node.log, 40)}`),
        `--- etcd ---\n${tail(etcdLog, 15)}`,
        `--- haproxy ---\n${tail(haproxyLog, 15)}`,
      ].join('\n');
    },

    async destroy() {
      if (haproxy) await stopManaged(haproxy, 5_000);
      // Patroni stops its PostgreSQL on SIGTERM; the postmasters are stopped below in any case.
      await Promise.all(nodes.map((node) => cluster.stopNode(node)));
      await killPostmasters(nodes.map((node) => node.dataDir));
      if (etcd) await stopManaged(etcd, 10_000);
      rmSync(dir, {recursive: true, force: true});
      forgetDir(dir);
    },
  };
  chmodSync(dir, 0o755); // HAProxy and etcd (root) and the postgres user all work below it
  return cluster;
}
