// The fault proxy itself, against the suite's S3 endpoint with a plain HTTP client: each fault does what it says
// (so a fault test cannot pass because its fault never happened), and rules count matches as documented.
import {randomBytes} from 'node:crypto';
import {request as httpRequest} from 'node:http';
import {GetObjectCommand, HeadObjectCommand, PutObjectCommand, S3Client} from '@aws-sdk/client-s3';
import {afterAll, beforeAll, describe, expect, inject, it} from 'vitest';
import {s3ClientConfig, uniquePrefix} from '../helpers/s3.js';
import {startFaultProxy, type FaultProxy} from './proxy.js';

const s3 = inject('s3');

describe('fault proxy', () => {
  let proxy: FaultProxy;
  let direct: S3Client;
  let proxied: S3Client;
  const prefix = uniquePrefix('fault-proxy');
  const body = randomBytes(256 * 1024);

  beforeAll(async () => {
    proxy = await startFaultProxy(s3.endpoint);
    proxy.keyPrefix = `${prefix}/`;
    direct = new S3Client(s3ClientConfig(s3));
    proxied = new S3Client({...s3ClientConfig(s3), endpoint: proxy.endpoint, maxAttempts: 1});
    await direct.send(new PutObjectCommand({Bucket: s3.bucket, Key: `${prefix}/object`, Body: body}));
  });

  afterAll(async () => {
    direct?.destroy();
    proxied?.destroy();
    await proxy?.close();
  });

  /** GET of the test object through the proxy (SDK, no retries). */
  async function getThrough(): Promise<{status?: number; data?: Buffer; error?: string}> {
    try {
      const response = await proxied.send(new GetObjectCommand({Bucket: s3.bucket, Key: `${prefix}/object`}));
      return {status: response.$metadata.httpStatusCode, data: Buffer.from(await response.Body!.transformToByteArray())};
    } catch (error) {
      return {error: String((error as Error).name ?? error), status: (error as {$metadata?: {httpStatusCode?: number}}).$metadata?.httpStatusCode};
    }
  }

  it('forwards untouched requests with valid signatures, and strips the key prefix for rules', async () => {
    const from = proxy.requests.length;
    const got = await getThrough();
    expect(got.data?.equals(body)).toBe(true);
    expect(proxy.requests.slice(from)).toMatchObject([{method: 'GET', key: 'object', status: 200}]);
  });

  it('503/500 answer with S3 error documents and never reach the store', async () => {
    const rule = proxy.inject({method: 'PUT', key: 'never', fault: '503'});
    const put = await proxied.send(new PutObjectCommand({Bucket: s3.bucket, Key: `${prefix}/never`, Body: Buffer.from('x')})).catch((error) => error);
    expect(put.name).toBe('SlowDown');
    expect(rule.fired).toBe(1);
    await expect(direct.send(new HeadObjectCommand({Bucket: s3.bucket, Key: `${prefix}/never`}))).rejects.toMatchObject({name: 'NotFound'});
    proxy.inject({method: 'GET', key: 'object', fault: '500'});
    expect(await getThrough()).toMatchObject({status: 500, error: 'InternalError'});
  });

  it('nth and times pick exactly the matching requests', async () => {
    const rule = proxy.inject({method: 'GET', key: 'object', fault: '500', nth: 2, times: 2});
    const statuses = [];
    for (let index = 0; index < 4; index++) statuses.push((await getThrough()).status);
    expect(statuses).toEqual([200, 500, 500, 200]);
    expect([rule.matched, rule.fired]).toEqual([4, 2]);
    rule.remove();
  });

  it('short: a complete-looking answer with half the bytes; corrupt: same length, other bytes; truncate: an error', async () => {
    proxy.inject({method: 'GET', key: 'object', fault: 'short'});
    const short = await getThrough();
    expect(short.data?.length).toBe(body.length / 2);
    expect(short.data?.equals(body.subarray(0, body.length / 2))).toBe(true);
    proxy.inject({method: 'GET', key: 'object', fault: 'corrupt'});
    const corrupt = await getThrough();
    expect(corrupt.data?.length).toBe(body.length);
    expect(corrupt.data?.equals(body)).toBe(false);
    proxy.inject({method: 'GET', key: 'object', fault: 'truncate'});
    const truncated = await getThrough();
    expect(truncated.data, 'a truncated answer was read as complete').toBeUndefined();
    expect(truncated.error).toBeDefined();
  });

  it('reset-response: the store did the work (a PUT is stored), the client hears nothing', async () => {
    const rule = proxy.inject({method: 'PUT', key: 'stored-unheard', fault: 'reset-response'});
    const put = await proxied.send(new PutObjectCommand({Bucket: s3.bucket, Key: `${prefix}/stored-unheard`, Body: body})).catch((error) => error);
    expect(put).toBeInstanceOf(Error);
    expect(rule.fired).toBe(1);
    const head = await direct.send(new HeadObjectCommand({Bucket: s3.bucket, Key: `${prefix}/stored-unheard`}));
    expect(head.ContentLength).toBe(body.length);
  });

  it('stall-request holds the request (hit resolves), release() drops it; afterBytes < 0 forwards nothing', async () => {
    for (const afterBytes of [undefined, -1]) {
      const key = `held-${afterBytes ?? 'half'}`;
      const rule = proxy.inject({method: 'PUT', key, fault: 'stall-request', afterBytes});
      const put = proxied.send(new PutObjectCommand({Bucket: s3.bucket, Key: `${prefix}/${key}`, Body: body})).catch((error) => error);
      expect((await rule.hit).key).toBe(key);
      proxy.release();
      expect(await put).toBeInstanceOf(Error);
      // s3rver stores a PUT cut off mid-body as an object; a real S3 never does.
      if (afterBytes === -1 || s3.kind !== 's3rver') {
        await expect(direct.send(new HeadObjectCommand({Bucket: s3.bucket, Key: `${prefix}/${key}`}))).rejects.toMatchObject({name: 'NotFound'});
      }
    }
  });

  it('stall-response with then: deliver is a slow store: the answer arrives after the hold', async () => {
    const rule = proxy.inject({method: 'GET', key: 'object', fault: 'stall-response', then: 'deliver', ms: 500});
    const started = Date.now();
    const got = await getThrough();
    expect(Date.now() - started).toBeGreaterThanOrEqual(450);
    expect(got.data?.equals(body)).toBe(true);
    expect(rule.fired).toBe(1);
  });

  it('reset-request drops the connection before the store sees a whole request', async () => {
    const rule = proxy.inject({method: 'PUT', key: 'cut', fault: 'reset-request'});
    const status = await new Promise<string>((resolve) => {
      const req = httpRequest(`${proxy.endpoint}/${s3.bucket}/${prefix}/cut`, {method: 'PUT', headers: {'content-length': String(body.length)}});
      req.on('response', (res) => resolve(`answered ${res.statusCode}`));
      req.on('error', (error) => resolve(`error ${(error as NodeJS.ErrnoException).code}`));
      req.end(body);
    });
    expect(status).toMatch(/^error /);
    expect(rule.fired).toBe(1);
  });
});
