// The radosgw helper itself: a cluster starts, serves S3 with the keys it made, and leaves nothing
// behind — neither after stop() nor when the process that started it dies without stopping it.
import {spawn} from 'node:child_process';
import {existsSync} from 'node:fs';
import {HeadBucketCommand, PutObjectCommand, GetObjectCommand, CreateBucketCommand} from '@aws-sdk/client-s3';
import {describe, expect, it} from 'vitest';
import {processAlive} from '../../src/util/process.js';
import {radosgwAvailable, startRadosgw} from '../helpers/radosgw.js';
import {createS3Client} from '../helpers/s3.js';

async function waitFor(condition: () => boolean, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 100));
  }
  return true;
}

describe.skipIf(!radosgwAvailable())('radosgw helper', () => {
  it('starts a cluster that serves S3 with its keys; stop() kills every daemon and removes the dir', async () => {
    const rgw = await startRadosgw();
    const pids = rgw.pids();
    try {
      expect(pids).toHaveLength(3);
      expect(rgw.startMs).toBeLessThan(30_000);
      const client = createS3Client({...rgw, bucket: 'bkt', region: 'us-east-1', kind: 'radosgw'});
      try {
        await client.send(new CreateBucketCommand({Bucket: 'bkt'}));
        await client.send(new HeadBucketCommand({Bucket: 'bkt'}));
        await client.send(new PutObjectCommand({Bucket: 'bkt', Key: 'k', Body: 'v'}));
        const got = await client.send(new GetObjectCommand({Bucket: 'bkt', Key: 'k'}));
        expect(await got.Body!.transformToString()).toBe('v');
      } finally {
        client.destroy();
      }
    } finally {
      await rgw.stop();
    }
    expect(pids.filter(processAlive)).toEqual([]);
    expect(existsSync(rgw.dir)).toBe(false);
  });

  it('is cleaned up by its watchdog when the owning process dies without stopping it', async () => {
    const owner = spawn('sleep', ['300'], {stdio: 'ignore'});
    const rgw = await startRadosgw({ownerPid: owner.pid!});
    const pids = rgw.pids();
    try {
      expect(pids).toHaveLength(3);
      owner.kill('SIGKILL');
      // The watchdog polls once a second, then SIGKILLs and removes the dir.
      expect(await waitFor(() => pids.every((pid) => !processAlive(pid)) && !existsSync(rgw.dir), 15_000)).toBe(true);
    } finally {
      owner.kill('SIGKILL');
      await rgw.stop();
    }
  });
});
