// Immutable backups on the real S3 gateway (radosgw, a bucket created with Object Lock): every object pgbk writes
// carries GOVERNANCE retention (single PUTs and streamed uploads alike), a locked version cannot be deleted,
// expire keeps locked backups and says until when, and check reads the bucket's Object Lock configuration.
import {
  DeleteObjectCommand, GetObjectRetentionCommand, HeadObjectCommand, ListObjectsV2Command, type S3Client,
} from '@aws-sdk/client-s3';
import {afterAll, beforeAll, describe, expect, inject, it} from 'vitest';
import {runPgbk} from '../helpers/cli.js';
import {setupArchiving, switchAndWaitArchived, writePolicy, type ArchivingSetup} from '../helpers/pitr.js';
import {createS3Client, repositoryPolicy, uniquePrefix} from '../helpers/s3.js';

const s3 = inject('s3');

describe.skipIf(!s3.lockBucket)('Object Lock (immutable backups)', () => {
  let setup: ArchivingSetup;
  let client: S3Client;
  const prefix = uniquePrefix('lock');
  const backups: string[] = [];

  beforeAll(async () => {
    client = createS3Client(s3);
    const repository = {
      ...repositoryPolicy(s3, prefix), url: `s3://${s3.lockBucket}/${prefix}`,
      object_lock: {mode: 'governance', days: 2}, storage_class: 'STANDARD',
    };
    setup = await setupArchiving('s3', s3, {policy: {repository, retention: {backups: 1}}});
    await setup.cluster.psql(`create table items (id int primary key)`);
    for (let round = 0; round < 2; round++) {
      await setup.cluster.psql(`insert into items select g from generate_series(${round * 100 + 1}, ${round * 100 + 100}) g`);
      const backup = await setup.pgbk(['backup']);
      expect(backup.exitCode, backup.stderr).toBe(0);
      backups.push(backup.stdout.trim());
      await switchAndWaitArchived(setup.cluster);
    }
  });

  afterAll(async () => {
    await setup?.destroy();
    client?.destroy();
  });

  it('writes every object with GOVERNANCE retention of the policy\'s days', async () => {
    const page = await client.send(new ListObjectsV2Command({Bucket: s3.lockBucket!, Prefix: `${prefix}/`}));
    const keys = (page.Contents ?? []).map((object) => object.Key!).filter((key) => !key.includes('capabilities.json'));
    expect(keys.some((key) => key.includes('/wal/'))).toBe(true);
    expect(keys.filter((key) => key.endsWith('/manifest.json'))).toHaveLength(2);
    for (const key of keys) {
      const retention = await client.send(new GetObjectRetentionCommand({Bucket: s3.lockBucket!, Key: key}));
      expect(retention.Retention?.Mode, key).toBe('GOVERNANCE');
      const days = (retention.Retention!.RetainUntilDate!.getTime() - Date.now()) / 86_400_000;
      expect(days, key).toBeGreaterThan(1.9);
      expect(days, key).toBeLessThanOrEqual(2);
    }
  });

  it('a locked version cannot be deleted', async () => {
    const key = `${prefix}/backups/${backups[0]}/manifest.json`;
    const head = await client.send(new HeadObjectCommand({Bucket: s3.lockBucket!, Key: key}));
    expect(head.VersionId).toBeTruthy();
    await expect(client.send(new DeleteObjectCommand({Bucket: s3.lockBucket!, Key: key, VersionId: head.VersionId}))).rejects.toMatchObject({
      $metadata: {httpStatusCode: 403},
    });
  });

  it('expire keeps the locked backup and its WAL, and says until when', async () => {
    const first = await setup.pgbk(['expire', '--json']);
    expect(first.exitCode, first.stderr).toBe(0);
    const {outcome} = JSON.parse(first.stdout);
    expect(outcome.backups).toEqual([]);
    expect(outcome.locked.map((entry: {id: string}) => entry.id)).toEqual([backups[0]]);
    const until = new Date(outcome.locked[0].until).getTime();
    expect(until).toBeGreaterThan(Date.now() + 1.9 * 86_400_000);
    expect(outcome.wal.removedFiles).toBe(0);
    expect(outcome.wal.lockedFiles).toBeGreaterThan(0);
    const human = await setup.pgbk(['expire']);
    expect(human.stdout).toMatch(new RegExp(`locked ${backups[0]} base .*under Object Lock until \\d{4}-`));
    const list = await setup.pgbk(['list', '--json']);
    expect(JSON.parse(list.stdout).backups.map((backup: {id: string}) => backup.id)).toEqual(backups);
  });

  it('check: ok on the Object Lock bucket, a clear failure on a bucket without it', async () => {
    const check = await setup.pgbk(['check', '--json', '--wait', '30']);
    const results = JSON.parse(check.stdout).policies[0].checks as Array<{name: string; status: string; detail: string}>;
    expect(results.find((result) => result.name === 'object lock')?.status).toBe('ok');
    const plain = writePolicy(setup.dir, 'unlocked', {
      strategy: 'pitr', postgres: {url: setup.cluster.url},
      repository: {...repositoryPolicy(s3, uniquePrefix('unlocked')), object_lock: {mode: 'governance', days: 2}},
    });
    const refused = await runPgbk(['check', '--policy', plain, '--json']);
    expect(refused.exitCode).not.toBe(0);
    const entry = (JSON.parse(refused.stdout).policies[0].checks as Array<{name: string; status: string}>).find((result) => result.name === 'object lock');
    expect(entry?.status).toBe('fail');
    expect(JSON.stringify(entry)).toMatch(/does not have Object Lock enabled/);
  });
});
