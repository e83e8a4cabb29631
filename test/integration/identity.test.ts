// Repository identity and safe failure (issue 8, items 1-6): one cluster per repository, nothing acknowledged
// outside it, archive-get's exit codes. Real clusters archiving through pgbk, on both repository drivers.

import {copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync} from 'node:fs';
import {join} from 'node:path';
import {gzipSync} from 'node:zlib';
import {randomBytes} from 'node:crypto';
import {DeleteObjectCommand, GetObjectCommand, ListObjectsV2Command, PutObjectCommand} from '@aws-sdk/client-s3';
import {afterAll, beforeAll, describe, expect, inject, it} from 'vitest';
import {chownToPostgres, createCluster, makeTempDir, pgBinDir, type Cluster} from '../helpers/cluster.js';
import {runPgbk} from '../helpers/cli.js';
import {restoreAndStart, repositorySection, setupArchiving, snapshot, switchAndWaitArchived, writePolicy, type ArchivingSetup} from '../helpers/pitr.js';
import {createS3Client} from '../helpers/s3.js';
import {systemIdOf} from '../helpers/wal.js';

describe.each(['local', 's3'] as const)('repository identity (%s repository)', (kind) => {
  const s3 = inject('s3');
  let a: ArchivingSetup;
  let b: Cluster;
  let section: Record<string, unknown>;
  let policyB: string;
  let systemA: string;
  let systemB: string;

  /** Every key in the repository, relative to its root. */
  async function repoKeys(repository: Record<string, unknown>): Promise<string[]> {
    const url = String(repository.url);
    if (url.startsWith('file://')) {
      const root = url.slice('file://'.length);
      return existsSync(root) ? readdirSync(root, {recursive: true, withFileTypes: true}).filter((e) => e.isFile())
        .map((e) => join(e.parentPath, e.name).slice(root.length + 1)).sort() : [];
    }
    const prefix = `${url.replace(`s3://${s3.bucket}/`, '')}/`;
    const client = createS3Client(s3);
    try {
      const keys: string[] = [];
      let token: string | undefined;
      do {
        const page = await client.send(new ListObjectsV2Command({Bucket: s3.bucket, Prefix: prefix, ContinuationToken: token}));
        keys.push(...(page.Contents ?? []).map((o) => o.Key!.slice(prefix.length)));
        token = page.IsTruncated ? page.NextContinuationToken : undefined;
      } while (token);
      return keys.sort();
    } finally {
      client.destroy();
    }
  }

  /** Replaces, copies or removes a stored object (as a disk fault, a buggy tool or an operator would). */
  async function writeObject(repository: Record<string, unknown>, key: string, body: Buffer | undefined): Promise<void> {
    const url = String(repository.url);
    if (url.startsWith('file://')) {
      const path = join(url.slice('file://'.length), key);
      if (body === undefined) rmSync(path);
      else {
        mkdirSync(join(path, '..'), {recursive: true});
        writeFileSync(path, body);
        chownToPostgres(path);
      }
      return;
    }
    const client = createS3Client(s3);
    const full = `${url.replace(`s3://${s3.bucket}/`, '')}/${key}`;
    try {
      if (body === undefined) await client.send(new DeleteObjectCommand({Bucket: s3.bucket, Key: full}));
      else await client.send(new PutObjectCommand({Bucket: s3.bucket, Key: full, Body: body}));
    } finally {
      client.destroy();
    }
  }

  async function readObject(repository: Record<string, unknown>, key: string): Promise<Buffer> {
    const url = String(repository.url);
    if (url.startsWith('file://')) return readFileSync(join(url.slice('file://'.length), key));
    const client = createS3Client(s3);
    try {
      const got = await client.send(new GetObjectCommand({Bucket: s3.bucket, Key: `${url.replace(`s3://${s3.bucket}/`, '')}/${key}`}));
      return Buffer.from(await got.Body!.transformToByteArray());
    } finally {
      client.destroy();
    }
  }

  const walKey = async (repository: Record<string, unknown>, walFile: string) => {
    const keys = (await repoKeys(repository)).filter((key) => key.includes(`/${walFile}-`));
    expect(keys).toHaveLength(1);
    return keys[0]!;
  };

  /** Switches `cluster` to a new segment after writing something; returns the completed segment's name. */
  async function completeSegment(cluster: Cluster): Promise<string> {
    await cluster.query(`create table if not exists t_switch (x int); insert into t_switch values (1)`);
    const [row] = await cluster.query<{wal: string}>(`select pg_walfile_name(pg_switch_wal()) as wal`);
    return row!.wal;
  }

  beforeAll(async () => {
    a = await setupArchiving(kind, s3);
    section = JSON.parse(JSON.stringify((await import('yaml')).parse(readFileSync(a.policyFile, 'utf8')).repository));
    systemA = systemIdOf(a.cluster.dataDir);
    b = await createCluster({conf: {wal_level: 'replica', archive_mode: 'off'}});
    systemB = systemIdOf(b.dataDir);
    policyB = writePolicy(a.dir, 'other', {
      strategy: 'pitr', repository: section,
      postgres: {url: `postgresql://postgres@127.0.0.1:${b.port}/postgres`, bin_dir: pgBinDir()},
    });
    await a.cluster.query(`create table items (id int primary key, note text)`);
    await a.cluster.query(`insert into items select g, 'row ' || g from generate_series(1, 1000) g`);
    const backup = await a.pgbk(['backup']);
    expect(backup.exitCode, backup.stderr).toBe(0);
  });

  afterAll(async () => {
    await b?.destroy();
    await a?.destroy();
  });

  it('init is idempotent for the same cluster', async () => {
    const again = await a.pgbk(['init']);
    expect(again.exitCode).toBe(0);
    expect(again.stdout).toMatch(new RegExp(`already initialised for database system ${systemA}`));
  });

  it('two clusters, one repository: nothing of B is written, A is untouched, a restore gives A\'s rows', async () => {
    expect(systemA).not.toBe(systemB);
    const before = await repoKeys(section);
    const init = await runPgbk(['init', '--policy', policyB]);
    expect(init.exitCode).toBe(2);
    expect(init.stderr).toContain(systemA);
    expect(init.stderr).toContain(systemB);
    const backup = await runPgbk(['backup', '--policy', policyB]);
    expect(backup.exitCode).toBe(2);
    expect(backup.stderr).toMatch(new RegExp(`database system ${systemB}, but .* belongs to database system ${systemA}`));
    // B's completed segment, pushed as B's archive_command would.
    const segment = await completeSegment(b);
    const copy = join(makeTempDir('pgbk-b-wal-'), segment);
    copyFileSync(join(b.dataDir, 'pg_wal', segment), copy);
    chownToPostgres(copy);
    const push = await runPgbk(['archive-push', copy, '--policy', policyB]);
    expect(push.exitCode).not.toBe(0);
    expect(push.stderr).toMatch(new RegExp(`refusing to archive ${segment}: ${segment} belongs to database system ${systemB}, the repository to ${systemA}`));
    const check = await runPgbk(['check', '--policy', policyB, '--wait', '5']);
    expect(check.exitCode).toBe(1);
    expect(check.stdout).toMatch(/FAIL {2}identity .*belongs to database system/);
    expect(await repoKeys(section)).toEqual(before);
    // A goes on archiving, and a restore brings back exactly A's rows.
    await a.cluster.query(`insert into items select g, 'late ' || g from generate_series(1001, 1500) g`);
    const expected = await snapshot(a.cluster.url);
    await switchAndWaitArchived(a.cluster);
    const [archiver] = await a.cluster.query<{failed: string}>(`select failed_count::text as failed from pg_stat_archiver`);
    expect(archiver!.failed).toBe('0');
    const restored = await restoreAndStart(a, ['--latest'], ['--archive-mode', 'off']);
    try {
      expect(await snapshot(restored.url)).toEqual(expected);
    } finally {
      await restored.stop();
    }
  });

  it('a damaged stored copy is not taken for "already archived": it is replaced, and archive-get serves it', async () => {
    const segment = await switchAndWaitArchived(a.cluster);
    const copy = join(makeTempDir('pgbk-a-wal-'), segment);
    copyFileSync(join(a.cluster.dataDir, 'pg_wal', segment), copy);
    chownToPostgres(copy);
    const key = await walKey(section, segment);
    const stored = await readObject(section, key);
    for (const damage of [gzipSync(randomBytes(1024 * 1024)), stored.subarray(0, Math.floor(stored.length / 2))]) {
      await writeObject(section, key, damage);
      expect((await readObject(section, key)).equals(damage), 'the damage is stored').toBe(true);
      const push = await a.pgbk(['archive-push', copy]);
      expect(push.exitCode, push.stderr).toBe(0);
      // s3rver (the fallback mock) ignores If-None-Match: there the push simply writes the same bytes again.
      if (kind === 'local' || s3.kind !== 's3rver') {
        expect(push.stderr, `damage of ${damage.length} bytes, stored copy ${key}`).toMatch(new RegExp(`the archived copy of ${segment} was damaged .*; replaced it`));
      }
      const dest = join(makeTempDir('pgbk-get-'), 'seg');
      const got = await a.pgbk(['archive-get', segment, dest]);
      expect(got.exitCode, got.stderr).toBe(0);
      expect(readFileSync(dest).equals(readFileSync(copy))).toBe(true);
    }
    // An intact copy is confirmed by reading it back.
    const again = await a.pgbk(['archive-push', copy]);
    expect(again.exitCode).toBe(0);
    if (kind === 'local' || s3.kind !== 's3rver') expect(again.stderr).toMatch(/already archived with the same content \(read back and verified\)/);
  });

  it('archive-get: 1 only at the end of the archive; a gap, another cluster\'s segment or an unusable policy abort recovery (126); a standby gets 1', async () => {
    const archived = async () => {
      await a.cluster.query(`insert into items values ((select max(id) + 1 from items), 'more')`);
      return switchAndWaitArchived(a.cluster);
    };
    const first = await archived();
    const middle = await archived();
    const last = await archived();
    expect(first < middle && middle < last).toBe(true);
    const dir = makeTempDir('pgbk-get-');
    chownToPostgres(dir);
    const middleKey = await walKey(section, middle);
    const saved = await readObject(section, middleKey);
    await writeObject(section, middleKey, undefined);
    try {
      const gap = await a.pgbk(['archive-get', middle, join(dir, 'gap')]);
      expect(gap.exitCode).toBe(126);
      expect(gap.stderr).toMatch(new RegExp(`${middle} is missing from the archive .* later WAL of its timeline is there .*: a gap`));
      const standbyDir = makeTempDir('pgbk-standby-');
      writeFileSync(join(standbyDir, 'standby.signal'), '');
      chownToPostgres(standbyDir);
      expect((await a.pgbk(['archive-get', middle, join(standbyDir, 'seg')], {cwd: standbyDir})).exitCode).toBe(1);
    } finally {
      await writeObject(section, middleKey, saved);
    }
    const nextName = `${last.slice(0, 16)}${(Number.parseInt(last.slice(16), 16) + 1).toString(16).toUpperCase().padStart(8, '0')}`;
    const end = await a.pgbk(['archive-get', nextName, join(dir, 'end')]);
    expect(end.exitCode).toBe(1);
    expect(end.stderr).toBe('');

    // Another cluster's segment under one of this repository's names (copied in by hand: archive-push refuses it).
    // B's segment under a name A has not reached (beyond A's last archived segment).
    let foreignName = await completeSegment(b);
    while (foreignName <= nextName) foreignName = await completeSegment(b);
    const otherRepo = repositorySection(kind, makeTempDir('pgbk-other-repo-'), s3).section;
    const otherPolicy = writePolicy(a.dir, 'b-own', {strategy: 'pitr', repository: otherRepo, postgres: {url: `postgresql://postgres@127.0.0.1:${b.port}/postgres`, bin_dir: pgBinDir()}});
    expect((await runPgbk(['init', '--policy', otherPolicy])).exitCode).toBe(0);
    const copy = join(makeTempDir('pgbk-b-wal-'), foreignName);
    copyFileSync(join(b.dataDir, 'pg_wal', foreignName), copy);
    chownToPostgres(copy);
    expect((await runPgbk(['archive-push', copy, '--policy', otherPolicy])).exitCode).toBe(0);
    const foreignKey = await walKey(otherRepo, foreignName);
    expect((await repoKeys(section)).some((key) => key.includes(`/${foreignName}-`))).toBe(false);
    await writeObject(section, foreignKey, await readObject(otherRepo, foreignKey));
    try {
      const foreign = await a.pgbk(['archive-get', foreignName, join(dir, 'foreign')]);
      expect(foreign.exitCode).toBe(126);
      expect(foreign.stderr).toMatch(new RegExp(`is not this cluster's WAL: ${foreignName} belongs to database system ${systemB}`));
      expect(existsSync(join(dir, 'foreign'))).toBe(false);
    } finally {
      await writeObject(section, foreignKey, undefined);
    }

    // An unusable policy: an unset ${VAR}.
    const broken = writePolicy(a.dir, 'broken', {strategy: 'pitr', repository: {...section, url: '${PGBK_TEST_UNSET_VARIABLE}'}, postgres: {url: a.cluster.url}});
    const unusable = await runPgbk(['archive-get', first, join(dir, 'unusable'), '--policy', broken]);
    expect(unusable.exitCode).toBe(126);
    expect(unusable.stderr).toMatch(/PGBK_TEST_UNSET_VARIABLE/);
  });

  it('a look-ahead marker vouches only for the repository it was made for', async () => {
    // A backlog: archiving fails while four segments complete.
    await a.cluster.query(`alter system set archive_command = 'false'`);
    await a.cluster.query(`select pg_reload_conf()`);
    const backlog: string[] = [];
    for (let i = 0; i < 4; i++) backlog.push(await completeSegment(a.cluster));
    // The look-ahead pusher archives the backlog after the first into the current repository and marks each.
    const pusher = await runPgbk(['archive-push-ahead', backlog[0]!, '--policy', a.policyFile], {cwd: a.cluster.dataDir});
    expect(pusher.exitCode, pusher.stderr).toBe(0);
    const markers = readdirSync(join(a.cluster.dataDir, 'pg_wal', 'pgbk-spool', 'pushed')).filter((name) => /^[0-9A-F]{24}$/.test(name));
    expect(markers.sort()).toEqual(backlog.slice(1));
    // repository.url changes while the backlog drains.
    const next = repositorySection(kind, makeTempDir('pgbk-next-repo-'), s3).section;
    writePolicy(a.dir, 'it', {strategy: 'pitr', repository: next, postgres: {url: a.cluster.url, bin_dir: pgBinDir()}});
    expect((await a.pgbk(['init'])).exitCode).toBe(0);
    await a.cluster.query(`alter system reset archive_command`);
    await a.cluster.query(`select pg_reload_conf()`);
    await switchAndWaitArchived(a.cluster);
    const stored = await repoKeys(next);
    for (const segment of backlog) expect(stored.some((key) => key.includes(`/${segment}-`)), `${segment} in the new repository`).toBe(true);
  });
});

describe('a file:// repository that is not there', () => {
  it('is never created implicitly: archive-push fails, archive-get aborts recovery, init needs the parent', async () => {
    const setup = await setupArchiving('local', inject('s3'));
    try {
      const mount = join(setup.dir, 'not-mounted');
      const root = join(mount, 'repo');
      const policy = writePolicy(setup.dir, 'unmounted', {strategy: 'pitr', repository: {url: `file://${root}`}, postgres: {url: setup.cluster.url, bin_dir: pgBinDir()}});
      const segment = await switchAndWaitArchived(setup.cluster);
      const copy = join(makeTempDir('pgbk-wal-'), segment);
      copyFileSync(join(setup.cluster.dataDir, 'pg_wal', segment), copy);
      chownToPostgres(copy);
      const push = await runPgbk(['archive-push', copy, '--policy', policy]);
      expect(push.exitCode).not.toBe(0);
      expect(push.stderr).toMatch(new RegExp(`repository directory ${root} does not exist \\(not mounted\\?\\)`));
      expect(push.stderr, 'a message, not a crash').not.toMatch(/\n\s+at |Node\.js v/);
      expect(existsSync(mount)).toBe(false);
      const get = await runPgbk(['archive-get', segment, join(setup.dir, 'seg'), '--policy', policy]);
      expect(get.exitCode).toBe(126);
      const init = await runPgbk(['init', '--policy', policy]);
      expect(init.exitCode).not.toBe(0);
      expect(init.stderr).toMatch(/its parent .*not-mounted does not exist/);
      expect(existsSync(mount)).toBe(false);
      // The mount is back: init creates the last directory only.
      mkdirSync(mount);
      chownToPostgres(mount);
      const created = await runPgbk(['init', '--policy', policy]);
      expect(created.exitCode, created.stderr).toBe(0);
      expect((await runPgbk(['archive-push', copy, '--policy', policy])).exitCode).toBe(0);
    } finally {
      await setup.destroy();
    }
  });

  it('a repository of an earlier pgbk (no identity) is refused until pgbk init adopts it', async () => {
    const setup = await setupArchiving('local', inject('s3'));
    try {
      await setup.cluster.query(`create table items (id int)`);
      expect((await setup.pgbk(['backup'])).exitCode).toBe(0);
      rmSync(join(setup.repoDir!, 'identity.json'));
      const list = await setup.pgbk(['list']);
      expect(list.exitCode).toBe(2);
      expect(list.stderr).toMatch(/is not an initialised pgbk repository/);
      const adopt = await setup.pgbk(['init']);
      expect(adopt.exitCode, adopt.stderr).toBe(0);
      expect(adopt.stdout).toMatch(/adopted .*: 1 backup\(s\) and the WAL checked/);
      expect((await setup.pgbk(['list'])).exitCode).toBe(0);
    } finally {
      await setup.destroy();
    }
  });
});
