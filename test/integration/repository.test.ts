// The repository contract on both drivers (local dir, S3 endpoint from global-setup), checked against
// the raw store (filesystem; the minio client), plus the S3 driver's retries through a faulty proxy.
import {mkdir, readdir, rm, stat, writeFile} from 'node:fs/promises';
import {createServer, request as httpRequest, type IncomingMessage, type Server} from 'node:http';
import type {Socket} from 'node:net';
import {dirname, join, relative, sep} from 'node:path';
import {Readable} from 'node:stream';
import * as Minio from 'minio';
import {afterAll, beforeAll, describe, expect, inject, it} from 'vitest';
import {ObjectNotFoundError, RepositoryError} from '../../src/errors.js';
import {openRepository} from '../../src/storage/open.js';
import type {Repository} from '../../src/storage/repository.js';
import {freePort, makeTempDir} from '../helpers/cluster.js';
import {listKeys, readAll, runRepositoryContract, sha256, type RawView} from '../helpers/repository-contract.js';
import {CreateMultipartUploadCommand, UploadPartCommand} from '@aws-sdk/client-s3';
import {createS3Client, uniquePrefix, type S3TestEndpoint} from '../helpers/s3.js';

const MiB = 1024 * 1024;

// ---------------------------------------------------------------------------------------------
// Local driver

function localRawView(root: string): RawView {
  return {
    async size(key) {
      try {
        const info = await stat(join(root, ...key.split('/')));
        return info.isFile() ? info.size : undefined;
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'ENOENT' || (error as NodeJS.ErrnoException).code === 'ENOTDIR') return undefined;
        throw error;
      }
    },
    async names() {
      let entries;
      try {
        entries = await readdir(root, {recursive: true, withFileTypes: true});
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
        throw error;
      }
      return entries
        .filter((entry) => !entry.isDirectory())
        .map((entry) => relative(root, join(entry.parentPath, entry.name)).split(sep).join('/'));
    },
  };
}

runRepositoryContract('local', async () => {
  const dir = makeTempDir('pgbk-repo-contract-');
  // The root is made by create() (pgbk init): the driver never creates it implicitly.
  const root = join(dir, 'repo');
  const repo = await openRepository({url: `file://${root}`});
  await repo.create();
  return {
    repo,
    raw: localRawView(root),
    enforcesConditionalWrites: true,
    config: {url: `file://${root}`},
    async startIncompleteUpload(key) {
      const path = join(root, ...key.split('/'));
      await mkdir(dirname(path), {recursive: true});
      await writeFile(`${path}.pgbk-tmp-999999-deadbeef`, 'half written');
    },
    async cleanup() {
      await repo.close();
      await rm(dir, {recursive: true, force: true});
    },
  };
});

// ---------------------------------------------------------------------------------------------
// S3 driver

const s3 = inject('s3');

function minioClient(endpoint: S3TestEndpoint): Minio.Client {
  const url = new URL(endpoint.endpoint);
  const useSSL = url.protocol === 'https:';
  return new Minio.Client({
    endPoint: url.hostname,
    port: url.port ? Number(url.port) : useSSL ? 443 : 80,
    useSSL,
    accessKey: endpoint.accessKeyId,
    secretKey: endpoint.secretAccessKey,
    region: endpoint.region,
    pathStyle: true,
  });
}

/** The raw view of `prefix/` in the bucket, through the minio client (not the driver's AWS SDK). */
function minioRawView(minio: Minio.Client, prefix: string): RawView {
  return {
    async size(key) {
      try {
        return (await minio.statObject(s3.bucket, `${prefix}/${key}`)).size;
      } catch (error) {
        const code = (error as {code?: string}).code;
        if (code === 'NotFound' || code === 'NoSuchKey') return undefined;
        throw error;
      }
    },
    async names() {
      const names: string[] = [];
      for await (const item of minio.listObjectsV2(s3.bucket, `${prefix}/`, true) as AsyncIterable<{name?: string}>) {
        if (item.name) names.push(item.name.slice(prefix.length + 1));
      }
      return names;
    },
  };
}

function openS3(prefix: string, endpoint = s3.endpoint): Promise<Repository> {
  return openRepository({
    url: `s3://${s3.bucket}/${prefix}`,
    endpoint,
    region: s3.region,
    forcePathStyle: true,
    accessKeyId: s3.accessKeyId,
    secretAccessKey: s3.secretAccessKey,
  });
}

async function removePrefix(minio: Minio.Client, prefix: string): Promise<void> {
  const names: string[] = [];
  for await (const item of minio.listObjectsV2(s3.bucket, `${prefix}/`, true) as AsyncIterable<{name?: string}>) {
    if (item.name) names.push(item.name);
  }
  for (let start = 0; start < names.length; start += 1000) await minio.removeObjects(s3.bucket, names.slice(start, start + 1000));
}

runRepositoryContract('s3', async () => {
  const prefix = uniquePrefix('repo-contract');
  const repo = await openS3(prefix);
  const minio = minioClient(s3);
  return {
    repo,
    raw: minioRawView(minio, prefix),
    // s3rver ignores If-None-Match / If-Match; radosgw, MinIO and AWS enforce them.
    enforcesConditionalWrites: s3.kind !== 's3rver',
    config: {
      url: `s3://${s3.bucket}/${prefix}`, endpoint: s3.endpoint, region: s3.region, forcePathStyle: true,
      accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey,
    },
    startIncompleteUpload: s3.kind === 's3rver' ? undefined : async (key) => {
      const client = createS3Client(s3);
      try {
        const {UploadId} = await client.send(new CreateMultipartUploadCommand({Bucket: s3.bucket, Key: `${prefix}/${key}`}));
        await client.send(new UploadPartCommand({Bucket: s3.bucket, Key: `${prefix}/${key}`, UploadId, PartNumber: 1, Body: 'half written'}));
      } finally {
        client.destroy();
      }
    },
    // Through a counting proxy: one ListObjectsV2 per page of 1000, and the first page's objects are
    // yielded before the second page is asked for.
    async checkPaging(folder, keys) {
      const proxy = await startFaultProxy(s3.endpoint);
      const proxied = await openS3(prefix, proxy.endpoint);
      try {
        const seen: string[] = [];
        let requestsAtFirst = 0;
        for await (const object of proxied.list(folder)) {
          if (seen.push(object.key) === 1) requestsAtFirst = proxy.requests.length;
        }
        expect(seen).toEqual(keys);
        expect(requestsAtFirst).toBe(1);
        expect(proxy.requests.map((request) => request.method)).toEqual(['GET', 'GET']);
        expect(proxy.requests[1]?.url).toContain('continuation-token=');
      } finally {
        await proxied.close();
        await proxy.close();
      }
    },
    async cleanup() {
      await repo.close();
      await removePrefix(minio, prefix);
    },
  };
});

// ---------------------------------------------------------------------------------------------
// S3 driver: retries, through a proxy that fails chosen requests

type Fault = 'slow-down' | 'internal-error' | 'reset';

interface ProxiedRequest {
  method: string;
  url: string;
  fault?: Fault;
}

interface FaultProxy {
  readonly endpoint: string;
  readonly requests: ProxiedRequest[];
  /** Fail the next requests, one fault each, in order. */
  failNext(faults: Fault[]): void;
  /** Decides for each request not taken by failNext (default: forward). */
  decide: (request: IncomingMessage) => Fault | undefined;
  close(): Promise<void>;
}

const ERROR_XML: Record<Exclude<Fault, 'reset'>, [number, string]> = {
  'slow-down': [503, '<Code>SlowDown</Code><Message>Please reduce your request rate.</Message>'],
  'internal-error': [500, '<Code>InternalError</Code><Message>We encountered an internal error. Please try again.</Message>'],
};

/** An HTTP proxy on 127.0.0.1 in front of `upstream`; the Host header is kept, so SigV4 signatures stay valid. */
async function startFaultProxy(upstream: string): Promise<FaultProxy> {
  const target = new URL(upstream);
  const queued: Fault[] = [];
  const sockets = new Set<Socket>();
  const proxy: FaultProxy = {
    endpoint: '',
    requests: [],
    failNext: (faults) => void queued.push(...faults),
    decide: () => undefined,
    close: () => new Promise<void>((resolve) => {
      for (const socket of sockets) socket.destroy();
      server.close(() => resolve());
    }),
  };
  const server: Server = createServer((req, res) => {
    const fault = queued.shift() ?? proxy.decide(req);
    proxy.requests.push({method: req.method ?? '', url: req.url ?? '', fault});
    if (fault === 'reset') {
      req.socket.destroy();
      return;
    }
    if (fault) {
      const [status, xml] = ERROR_XML[fault];
      req.resume();
      req.on('end', () => {
        res.writeHead(status, {'content-type': 'application/xml'});
        res.end(req.method === 'HEAD' ? undefined
          : `<?xml version="1.0" encoding="UTF-8"?>\n<Error>${xml}<RequestId>proxy</RequestId></Error>`);
      });
      return;
    }
    const headers = {...req.headers};
    delete headers.expect; // this server already answered "100 Continue"
    const forward = httpRequest(
      {host: target.hostname, port: target.port, method: req.method, path: req.url, headers},
      (upstreamRes) => {
        res.writeHead(upstreamRes.statusCode ?? 502, upstreamRes.headers);
        upstreamRes.pipe(res);
      },
    );
    forward.on('error', () => res.destroy());
    req.pipe(forward);
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  (proxy as {endpoint: string}).endpoint = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
  return proxy;
}

describe('S3 driver: retries and outages', () => {
  const prefix = uniquePrefix('repo-retry');
  const minio = minioClient(s3);
  let proxy: FaultProxy;
  let repo: Repository;
  beforeAll(async () => {
    proxy = await startFaultProxy(s3.endpoint);
    repo = await openS3(prefix, proxy.endpoint);
  });
  afterAll(async () => {
    await repo?.close();
    await proxy?.close();
    await removePrefix(minio, prefix);
  });

  /** The requests since `from`, as "METHOD fault" strings. */
  function since(from: number): string[] {
    return proxy.requests.slice(from).map((request) => `${request.method} ${request.fault ?? 'ok'}`);
  }

  it('retries 503 SlowDown and dropped connections on put, get, stat, list and remove', async () => {
    const key = 'wal/00000001/0000000100000000/000000010000000000000001-abcd.gz';
    const data = Buffer.from('retried through a flaky endpoint');

    let from = proxy.requests.length;
    proxy.failNext(['slow-down', 'reset']);
    expect(await repo.put(key, data)).toMatchObject({sizeBytes: data.length, sha256: sha256(data)});
    expect(since(from)).toEqual(['PUT slow-down', 'PUT reset', 'PUT ok']);
    expect((await minio.statObject(s3.bucket, `${prefix}/${key}`)).size).toBe(data.length);

    from = proxy.requests.length;
    proxy.failNext(['slow-down', 'reset']);
    expect(await readAll(await repo.get(key))).toEqual(data);
    expect(since(from)).toEqual(['GET slow-down', 'GET reset', 'GET ok']);

    from = proxy.requests.length;
    proxy.failNext(['slow-down', 'reset']);
    expect(await repo.stat(key)).toMatchObject({sizeBytes: data.length});
    expect(since(from)).toEqual(['HEAD slow-down', 'HEAD reset', 'HEAD ok']);

    from = proxy.requests.length;
    proxy.failNext(['slow-down', 'reset']);
    expect(await listKeys(repo, 'wal/')).toEqual([key]);
    expect(since(from)).toEqual(['GET slow-down', 'GET reset', 'GET ok']);

    // A stream of unknown length (buffered, then one PUT: the SDK can resend it).
    const streamed = Buffer.concat([Buffer.from('streamed '), Buffer.alloc(100_000, 7)]);
    from = proxy.requests.length;
    proxy.failNext(['slow-down', 'reset']);
    expect(await repo.put('streamed', Readable.from([streamed.subarray(0, 9), streamed.subarray(9)]))).toMatchObject({
      sizeBytes: streamed.length,
      sha256: sha256(streamed),
    });
    expect(since(from)).toEqual(['PUT slow-down', 'PUT reset', 'PUT ok']);
    expect((await minio.statObject(s3.bucket, `${prefix}/streamed`)).size).toBe(streamed.length);

    from = proxy.requests.length;
    proxy.failNext(['slow-down', 'reset']);
    await repo.remove([key, 'streamed']);
    expect(since(from)).toEqual(['POST slow-down', 'POST reset', 'POST ok']);
    await expect(minio.statObject(s3.bucket, `${prefix}/${key}`)).rejects.toMatchObject({code: 'NotFound'});
    await expect(minio.statObject(s3.bucket, `${prefix}/streamed`)).rejects.toMatchObject({code: 'NotFound'});
  });

  it('retries a failed part and a failed completion of a multipart upload', async () => {
    const key = 'backups/20260821T020000Z/base.tar.gz';
    const data = Buffer.alloc(17 * MiB + 3);
    for (let offset = 0; offset + 4 <= data.length; offset += 4) data.writeUInt32BE(offset, offset);
    const failed = new Set<string>();
    proxy.decide = (request) => {
      // Once each: drop the connection sending part 2, and throttle the CompleteMultipartUpload.
      const which = request.method === 'PUT' && request.url?.includes('partNumber=2') ? 'part 2'
        : request.method === 'POST' && request.url?.includes('uploadId=') ? 'complete' : undefined;
      if (!which || failed.has(which)) return undefined;
      failed.add(which);
      return which === 'part 2' ? 'reset' : 'slow-down';
    };
    try {
      const chunks = Array.from({length: Math.ceil(data.length / MiB)}, (_, index) => data.subarray(index * MiB, (index + 1) * MiB));
      expect(await repo.put(key, Readable.from(chunks))).toMatchObject({sizeBytes: data.length, sha256: sha256(data)});
    } finally {
      proxy.decide = () => undefined;
    }
    expect([...failed].sort()).toEqual(['complete', 'part 2']);
    expect((await minio.statObject(s3.bucket, `${prefix}/${key}`)).size).toBe(data.length);
    expect(sha256(await readAll(await minio.getObject(s3.bucket, `${prefix}/${key}`)))).toBe(sha256(data));
    await repo.remove([key]);
    await expect(minio.statObject(s3.bucket, `${prefix}/${key}`)).rejects.toMatchObject({code: 'NotFound'});
  });

  it('gives up with a RepositoryError after 6 attempts when every request fails', async () => {
    proxy.decide = () => 'internal-error';
    const from = proxy.requests.length;
    try {
      const results = await Promise.allSettled([repo.get('some/key'), repo.stat('some/key'), repo.put('some/key', Buffer.from('x'))]);
      for (const result of results) {
        expect(result.status).toBe('rejected');
        const error = (result as PromiseRejectedResult).reason as RepositoryError;
        expect(error).toBeInstanceOf(RepositoryError);
        expect(error).not.toBeInstanceOf(ObjectNotFoundError);
        expect(error).toMatchObject({code: 'repo.unavailable', exitCode: 1});
        expect(error.message).toMatch(/HTTP 500/);
        expect(error.message).toContain(prefix);
      }
    } finally {
      proxy.decide = () => undefined;
    }
    const attempts = since(from);
    expect(attempts.filter((attempt) => attempt === 'GET internal-error')).toHaveLength(6);
    expect(attempts.filter((attempt) => attempt === 'HEAD internal-error')).toHaveLength(6);
    expect(attempts.filter((attempt) => attempt === 'PUT internal-error')).toHaveLength(6);
    await expect(minio.statObject(s3.bucket, `${prefix}/some/key`)).rejects.toMatchObject({code: 'NotFound'});
  });

  it('reports an endpoint that is down as RepositoryError (not ObjectNotFoundError), in bounded time', async () => {
    const down = await openS3(prefix, `http://127.0.0.1:${await freePort()}`);
    const started = Date.now();
    try {
      const results = await Promise.allSettled([
        down.get('wal/000000010000000000000001'),
        down.stat('wal/000000010000000000000001'),
        down.put('wal/000000010000000000000001', Buffer.from('x')),
        down.put('backups/base.tar.gz', Readable.from([Buffer.from('y')])),
        listKeys(down, 'wal/'),
        down.remove(['wal/000000010000000000000001']),
      ]);
      for (const result of results) {
        expect(result.status).toBe('rejected');
        const error = (result as PromiseRejectedResult).reason as RepositoryError;
        expect(error).toBeInstanceOf(RepositoryError);
        expect(error).not.toBeInstanceOf(ObjectNotFoundError);
        expect(error).toMatchObject({code: 'repo.unavailable', hint: 'check that the S3 endpoint is reachable'});
        expect(error.message).toMatch(/ECONNREFUSED/);
      }
    } finally {
      await down.close();
    }
    // 6 attempts with backoff (100 ms base, doubling, full jitter): at most ~6 s; the connection is refused at once.
    expect(Date.now() - started).toBeLessThan(15_000);
  });
});

// s3rver accepts any secret for its key id; a real S3 checks the SigV4 signature.
describe.skipIf(s3.kind === 's3rver')('S3 driver: a wrong secret key', () => {
  const prefix = uniquePrefix('repo-secret');
  const minio = minioClient(s3);
  afterAll(async () => {
    await removePrefix(minio, prefix);
  });

  it('is refused on every call as RepositoryError naming the credentials, never as a missing object, without the secret', async () => {
    const wrongSecret = `${s3.secretAccessKey.slice(0, -4)}XXXX`;
    const good = await openS3(prefix);
    await good.put('wal/000000010000000000000001', Buffer.from('stored with the right key'));
    await good.close();
    const bad = await openRepository({
      url: `s3://${s3.bucket}/${prefix}`,
      endpoint: s3.endpoint,
      region: s3.region,
      forcePathStyle: true,
      accessKeyId: s3.accessKeyId,
      secretAccessKey: wrongSecret,
    });
    try {
      const results = await Promise.allSettled([
        bad.get('wal/000000010000000000000001'),
        bad.stat('wal/000000010000000000000001'),
        bad.stat('wal/000000010000000000000002'),
        bad.put('wal/000000010000000000000002', Buffer.from('x')),
        bad.put('backups/base.tar.gz', Readable.from([Buffer.from('y')])),
        listKeys(bad, 'wal/'),
        bad.remove(['wal/000000010000000000000001']),
      ]);
      for (const result of results) {
        expect(result.status).toBe('rejected');
        const error = (result as PromiseRejectedResult).reason as RepositoryError;
        expect(error).toBeInstanceOf(RepositoryError);
        expect(error).not.toBeInstanceOf(ObjectNotFoundError);
        expect(error.message).toMatch(/HTTP 403/);
        expect(error.hint).toMatch(/credentials/);
        expect(`${error.message} ${error.hint}`).not.toContain(wrongSecret);
        expect(`${error.message} ${error.hint}`).not.toContain(s3.secretAccessKey);
      }
    } finally {
      await bad.close();
    }
    // Nothing was written or removed with the wrong key.
    expect((await minio.statObject(s3.bucket, `${prefix}/wal/000000010000000000000001`)).size).toBe(25);
    await expect(minio.statObject(s3.bucket, `${prefix}/wal/000000010000000000000002`)).rejects.toMatchObject({code: 'NotFound'});
    await expect(minio.statObject(s3.bucket, `${prefix}/backups/base.tar.gz`)).rejects.toMatchObject({code: 'NotFound'});
  });
});
