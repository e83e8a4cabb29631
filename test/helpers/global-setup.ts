// vitest globalSetup for the integration project: one S3 endpoint for the whole run, and a run
// directory where helpers record their temp dirs so leftovers are cleaned up at the end.
//
// PGBK_TEST_S3_ENDPOINT set  → use that service (MinIO, AWS, ...) with PGBK_TEST_S3_ACCESS_KEY_ID /
//   PGBK_TEST_S3_SECRET_ACCESS_KEY (default minioadmin/minioadmin), PGBK_TEST_S3_BUCKET (default
//   pgbk-test, created if missing) and PGBK_TEST_S3_REGION (default us-east-1); optionally
//   PGBK_TEST_S3_LOCK_BUCKET, an existing bucket with Object Lock enabled.
// radosgw installed         → start a throwaway Ceph cluster with radosgw on 127.0.0.1 (radosgw.ts),
//   with the bucket and an Object Lock bucket (<bucket>-lock).
// otherwise                 → fall back to s3rver (a mock: no signature checks, no conditional
//   writes, no Object Lock) on 127.0.0.1, free port, in a temp dir.
// PGBK_TEST_S3=s3rver forces the fallback. One line on stdout says which S3 the run uses.
// Tests read it with `inject('s3')` (see s3.ts).
import {spawn, type ChildProcess} from 'node:child_process';
import {mkdtempSync, rmSync} from 'node:fs';
import {tmpdir} from 'node:os';
import {dirname, join} from 'node:path';
import {fileURLToPath} from 'node:url';
import {CreateBucketCommand, HeadBucketCommand} from '@aws-sdk/client-s3';
import type {TestProject} from 'vitest/node';
import {cleanupRecordedDirs, RUN_DIR_ENV} from './cleanup.js';
import {startRadosgw, radosgwAvailable} from './radosgw.js';
import {createS3Client, type S3TestEndpoint} from './s3.js';

const here = dirname(fileURLToPath(import.meta.url));
const START_TIMEOUT_MS = 20_000;

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const runDir = mkdtempSync(join(tmpdir(), 'pgbk-test-run-'));
  process.env[RUN_DIR_ENV] = runDir;
  project.provide('runDir', runDir);

  let s3: S3TestEndpoint;
  let stopS3 = async (): Promise<void> => {};
  const external = process.env.PGBK_TEST_S3_ENDPOINT;
  if (external) {
    s3 = {
      endpoint: external.replace(/\/+$/, ''),
      bucket: process.env.PGBK_TEST_S3_BUCKET || 'pgbk-test',
      accessKeyId: process.env.PGBK_TEST_S3_ACCESS_KEY_ID || 'minioadmin',
      secretAccessKey: process.env.PGBK_TEST_S3_SECRET_ACCESS_KEY || 'minioadmin',
      region: process.env.PGBK_TEST_S3_REGION || 'us-east-1',
      kind: 'external',
    };
    await ensureBucket(s3);
    const lockBucket = process.env.PGBK_TEST_S3_LOCK_BUCKET;
    if (lockBucket) s3.lockBucket = lockBucket;
    console.log(`pgbk tests: S3 is ${s3.endpoint} (external, PGBK_TEST_S3_ENDPOINT), bucket ${s3.bucket}`);
  } else if (process.env.PGBK_TEST_S3 !== 's3rver' && radosgwAvailable()) {
    const bucket = process.env.PGBK_TEST_S3_BUCKET || 'pgbk-test';
    const rgw = await startRadosgw().catch((err: unknown) => {
      throw new Error(`could not start radosgw for the tests (PGBK_TEST_S3=s3rver runs them against the s3rver mock instead): ${String(err)}`);
    });
    stopS3 = () => rgw.stop();
    try {
      s3 = {
        endpoint: rgw.endpoint,
        bucket,
        accessKeyId: rgw.accessKeyId,
        secretAccessKey: rgw.secretAccessKey,
        region: 'us-east-1',
        kind: 'radosgw',
        lockBucket: `${bucket}-lock`,
      };
      await createBuckets(s3);
    } catch (err) {
      await rgw.stop();
      throw err;
    }
    console.log(`pgbk tests: S3 is radosgw ${s3.endpoint} (throwaway Ceph cluster in ${rgw.dir}, started in ${(rgw.startMs / 1000).toFixed(1)} s)`);
  } else {
    const directory = mkdtempSync(join(tmpdir(), 'pgbk-s3rver-'));
    const bucket = process.env.PGBK_TEST_S3_BUCKET || 'pgbk-test';
    try {
      const {child, port} = await startS3rver(directory, bucket);
      s3 = {
        endpoint: `http://127.0.0.1:${port}`,
        bucket,
        // s3rver only knows the access key id S3RVER (it does not check SigV4 signatures, so the
        // secret is not verified, but an unknown key id is refused with InvalidAccessKeyId).
        accessKeyId: 'S3RVER',
        secretAccessKey: 'S3RVER',
        region: 'us-east-1',
        kind: 's3rver',
      };
      stopS3 = async () => {
        await stopChild(child);
        rmSync(directory, {recursive: true, force: true});
      };
    } catch (err) {
      rmSync(directory, {recursive: true, force: true});
      throw err;
    }
    const why = process.env.PGBK_TEST_S3 === 's3rver' ? 'PGBK_TEST_S3=s3rver' : 'radosgw not installed';
    console.log(`pgbk tests: S3 is s3rver ${s3.endpoint} (mock; ${why})`);
  }
  project.provide('s3', s3);

  return async () => {
    try {
      await cleanupRecordedDirs(runDir);
    } finally {
      await stopS3();
      rmSync(runDir, {recursive: true, force: true});
    }
  };
}

async function ensureBucket(s3: S3TestEndpoint): Promise<void> {
  const client = createS3Client(s3);
  try {
    await client.send(new HeadBucketCommand({Bucket: s3.bucket}));
  } catch (err) {
    const status = (err as {$metadata?: {httpStatusCode?: number}}).$metadata?.httpStatusCode;
    if (status !== 404) {
      throw new Error(`S3 endpoint ${s3.endpoint}: cannot check bucket ${s3.bucket}: ${String(err)}`);
    }
    await client.send(new CreateBucketCommand({Bucket: s3.bucket}));
  } finally {
    client.destroy();
  }
}

/** The run's bucket, and the Object Lock bucket (versioning comes with Object Lock). */
async function createBuckets(s3: S3TestEndpoint): Promise<void> {
  const client = createS3Client(s3);
  try {
    await client.send(new CreateBucketCommand({Bucket: s3.bucket}));
    if (s3.lockBucket) {
      await client.send(new CreateBucketCommand({Bucket: s3.lockBucket, ObjectLockEnabledForBucket: true}));
    }
  } finally {
    client.destroy();
  }
}

function startS3rver(directory: string, bucket: string): Promise<{child: ChildProcess; port: number}> {
  const child = spawn(
    process.execPath,
    [join(here, 's3rver-child.mjs'), JSON.stringify({directory, bucket, address: '127.0.0.1', port: 0})],
    {stdio: ['pipe', 'pipe', 'pipe']},
  );
  return new Promise((resolve, reject) => {
    let stdout = '';
    let stderr = '';
    const fail = (why: string) => {
      clearTimeout(timer);
      child.kill('SIGKILL');
      reject(new Error(`s3rver did not start: ${why}${stderr ? `\n${stderr}` : ''}`));
    };
    const timer = setTimeout(() => fail(`no answer within ${START_TIMEOUT_MS} ms`), START_TIMEOUT_MS);
    child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
      // Keep a bounded tail for error messages (s3rver's logger may write here for the whole run).
      stderr = (stderr + chunk).slice(-8192);
    });
    child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
      stdout += chunk;
      const newline = stdout.indexOf('\n');
      if (newline < 0) return;
      clearTimeout(timer);
      try {
        const {port} = JSON.parse(stdout.slice(0, newline)) as {port: number};
        resolve({child, port});
      } catch {
        fail(`unexpected output ${JSON.stringify(stdout)}`);
      }
    });
    child.on('error', (err) => fail(err.message));
    child.on('exit', (code, signal) => fail(`exited (${signal ?? code})`));
  });
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(timer);
}
