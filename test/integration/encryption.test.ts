// Client-side encryption on the real S3 gateway: nothing readable in the bucket (raw, gunzipped, zstd-decoded),
// a restore with the key brings the rows back, a wrong key is refused before anything is written, and a manifest
// with one flipped byte is refused.
import {existsSync} from 'node:fs';
import {join} from 'node:path';
import {gunzipSync, zstdDecompressSync} from 'node:zlib';
import {GetObjectCommand, ListObjectsV2Command, PutObjectCommand, type S3Client} from '@aws-sdk/client-s3';
import {afterAll, beforeAll, describe, expect, inject, it} from 'vitest';
import {makeTempDir} from '../helpers/cluster.js';
import {runPgbk} from '../helpers/cli.js';
import {restoreAndStart, setupArchiving, snapshot, switchAndWaitArchived, writePolicy, type ArchivingSetup, type RowSnapshot} from '../helpers/pitr.js';
import {createS3Client, repositoryPolicy, uniquePrefix} from '../helpers/s3.js';

const s3 = inject('s3');
const KEY = 'pgbk-test passphrase 6d1f0c9e';
const WRONG = 'pgbk-test passphrase WRONG-0000';
const CANARY = 'CANARY-a81c5e-row-text';

async function bucketObjects(client: S3Client, prefix: string): Promise<Map<string, string>> {
  const found = new Map<string, string>();
  let token: string | undefined;
  do {
    const page = await client.send(new ListObjectsV2Command({Bucket: s3.bucket, Prefix: `${prefix}/`, ContinuationToken: token}));
    for (const object of page.Contents ?? []) found.set(object.Key!, object.ETag!);
    token = page.NextContinuationToken;
  } while (token);
  return found;
}

async function bytesOf(client: S3Client, key: string): Promise<Buffer> {
  const response = await client.send(new GetObjectCommand({Bucket: s3.bucket, Key: key}));
  return Buffer.from(await response.Body!.transformToByteArray());
}

function decodings(bytes: Buffer): Buffer[] {
  const views = [bytes];
  for (const decode of [gunzipSync, zstdDecompressSync]) {
    try {
      views.push(decode(bytes));
    } catch {
      // not in that format: nothing more to look at
    }
  }
  return views;
}

describe('client-side encryption on S3', () => {
  let setup: ArchivingSetup;
  let client: S3Client;
  const prefix = uniquePrefix('enc');
  let repository: Record<string, unknown>;
  let rows: RowSnapshot;

  beforeAll(async () => {
    client = createS3Client(s3);
    repository = {...repositoryPolicy(s3, prefix), encryption: {key: KEY}};
    setup = await setupArchiving('s3', s3, {conf: {archive_timeout: 0}, policy: {repository, compression: {codec: 'zstd'}}});
    await setup.cluster.psql(`create table items (id int primary key, label text not null)`);
    await setup.cluster.psql(`insert into items select g, '${CANARY} ' || g from generate_series(1, 500) g`);
    const backup = await setup.pgbk(['backup']);
    expect(backup.stderr).toBe('');
    expect(backup.exitCode).toBe(0);
    await setup.cluster.psql(`insert into items select g, '${CANARY} after ' || g from generate_series(501, 700) g`);
    rows = (await snapshot(setup.cluster.url)) as RowSnapshot;
    await switchAndWaitArchived(setup.cluster);
  });

  afterAll(async () => {
    await setup?.destroy();
    client?.destroy();
  });

  it('stores nothing readable: no object holds the canary, raw, gunzipped or zstd-decoded', async () => {
    const objects = await bucketObjects(client, prefix);
    const keys = [...objects.keys()];
    expect(keys.some((key) => key.includes('/wal/'))).toBe(true);
    expect(keys.some((key) => key.endsWith('/manifest.json'))).toBe(true);
    expect(keys.some((key) => /\/base\/|\.tar/.test(key))).toBe(true);
    for (const key of keys) {
      const bytes = await bytesOf(client, key);
      for (const view of decodings(bytes)) {
        expect(view.includes(Buffer.from(CANARY)), key).toBe(false);
        expect(view.includes(Buffer.from(KEY)), key).toBe(false);
      }
      if (key.endsWith('/identity.json')) {
        expect(JSON.parse(bytes.toString()).encryption.keyIds).toHaveLength(1);
      } else if (!key.includes('capabilities.json')) {
        expect(bytes.subarray(0, 8).toString('latin1'), key).toBe('PGBKENC\x01');
      }
    }
  });

  it('restores the rows with the key', async () => {
    const restored = await restoreAndStart(setup, ['--latest'], ['--archive-mode', 'off']);
    try {
      expect(await snapshot(restored.url)).toEqual(rows);
    } finally {
      await restored.stop();
    }
  });

  it('refuses a wrong key or no key (exit 2) before anything is written, and never prints the key', async () => {
    const before = await bucketObjects(client, prefix);
    const wrong = writePolicy(setup.dir, 'wrong', {
      strategy: 'pitr', postgres: {url: setup.cluster.url}, repository: {...repository, encryption: {key: '${PGBK_REPOSITORY_KEY}'}},
    });
    const none = writePolicy(setup.dir, 'none', {strategy: 'pitr', postgres: {url: setup.cluster.url}, repository: repositoryPolicy(s3, prefix)});
    const target = join(makeTempDir('pgbk-enc-'), 'data');
    const env = {PGBK_REPOSITORY_KEY: WRONG};
    for (const args of [['backup'], ['restore', '--to', target, '--latest'], ['expire'], ['list', '--json']]) {
      for (const policy of [wrong, none]) {
        const run = await runPgbk([...args, '--policy', policy], {env});
        expect(run.exitCode, `${args.join(' ')} ${policy}: ${run.stderr}`).toBe(2);
        expect(run.stderr).toMatch(policy === wrong ? /key check failed/ : /is encrypted, but the policy sets no repository.encryption.key/);
        expect(`${run.stdout}${run.stderr}`).not.toContain(WRONG);
        expect(`${run.stdout}${run.stderr}`).not.toContain(KEY);
      }
    }
    // archive_command with a wrong key: refused (2) before the segment is written.
    const [segment] = await setup.cluster.query<{name: string}>(`select pg_walfile_name(pg_current_wal_lsn()) as name`);
    const push = await runPgbk(['archive-push', join(setup.cluster.dataDir, 'pg_wal', segment!.name), '--policy', wrong], {env});
    expect(push.exitCode, push.stderr).toBe(2);
    expect(push.stderr).toMatch(/key check failed/);
    const status = await runPgbk(['status', '--policy', wrong, '--json'], {env});
    expect(`${status.stdout}${status.stderr}`).not.toContain(WRONG);
    const check = await runPgbk(['check', '--policy', wrong, '--json'], {env});
    expect(check.exitCode).not.toBe(0);
    expect(`${check.stdout}${check.stderr}`).not.toContain(WRONG);
    expect(existsSync(target)).toBe(false);
    expect(await bucketObjects(client, prefix)).toEqual(before);
  });

  it('refuses a manifest with one flipped byte', async () => {
    const manifest = [...(await bucketObjects(client, prefix)).keys()].find((key) => key.endsWith('/manifest.json'))!;
    const original = await bytesOf(client, manifest);
    const flipped = Buffer.from(original);
    flipped[Math.floor(flipped.length / 2)]! ^= 0x04;
    await client.send(new PutObjectCommand({Bucket: s3.bucket, Key: manifest, Body: flipped}));
    try {
      const target = join(makeTempDir('pgbk-enc-'), 'data');
      const restore = await setup.pgbk(['restore', '--to', target, '--latest']);
      expect(restore.exitCode).not.toBe(0);
      expect(restore.stderr).toMatch(/manifest\.json fails authentication/);
      expect(existsSync(join(target, 'PG_VERSION'))).toBe(false);
      const verify = await setup.pgbk(['verify']);
      expect(verify.exitCode).not.toBe(0);
      expect(`${verify.stdout}${verify.stderr}`).toMatch(/fails authentication/);
    } finally {
      await client.send(new PutObjectCommand({Bucket: s3.bucket, Key: manifest, Body: original}));
    }
  });

  it('rotates the key: re-encrypt rewrites every object under the new key, the old key alone is then refused', async () => {
    const NEW = 'pgbk-test passphrase rotated 77aa';
    const policyWith = (name: string, encryption: Record<string, unknown>) => writePolicy(setup.dir, name, {
      strategy: 'pitr', postgres: {url: setup.cluster.url}, repository: {...repository, encryption},
    });
    const rotating = policyWith('rotating', {key: NEW, old_keys: [KEY]});
    const headerIds = async () => {
      const ids = new Set<string>();
      for (const key of (await bucketObjects(client, prefix)).keys()) {
        if (key.endsWith('/identity.json') || key.includes('capabilities.json')) continue;
        ids.add((await bytesOf(client, key)).subarray(8, 16).toString('hex'));
      }
      return ids;
    };
    const oldIds = await headerIds();
    expect(oldIds.size).toBe(1);
    // Before the rotation, the new key alone is not the repository's key.
    expect((await runPgbk(['list', '--policy', policyWith('new-early', {key: NEW})])).exitCode).toBe(2);
    const run = await runPgbk(['re-encrypt', '--policy', rotating, '--json']);
    expect(run.exitCode, run.stderr).toBe(0);
    const result = JSON.parse(run.stdout);
    expect(result.adopted).toBe(true);
    expect(result.rewritten).toBeGreaterThan(3);
    expect(result.skipped).toEqual([]);
    const newIds = await headerIds();
    expect(newIds).toEqual(new Set([result.keyId]));
    expect(newIds.has([...oldIds][0]!)).toBe(false);
    const again = JSON.parse((await runPgbk(['re-encrypt', '--policy', rotating, '--json'])).stdout);
    expect(again).toMatchObject({adopted: false, rewritten: 0});
    const verify = await runPgbk(['verify', '--policy', policyWith('new-only', {key: NEW})]);
    expect(verify.exitCode, verify.stderr + verify.stdout).toBe(0);
    const old = await runPgbk(['list', '--policy', policyWith('old-only', {key: KEY})]);
    expect(old.exitCode).toBe(2);
    expect(old.stderr).toMatch(/not the key of|earlier key/);
  });
});
