// archive-push / archive-get semantics on both repository drivers: durable, idempotent, conflict-safe,
// never handing PostgreSQL a corrupt file, and never turning an outage into "segment missing".

import {randomBytes} from 'node:crypto';
import {existsSync, readFileSync, writeFileSync, readdirSync, statSync} from 'node:fs';
import {join} from 'node:path';
import zlib, {gzipSync} from 'node:zlib';

const zstdCompressSync = (data: Buffer): Buffer => (zlib as unknown as {zstdCompressSync(data: Buffer): Buffer}).zstdCompressSync(data);
import {PutObjectCommand, ListObjectsV2Command} from '@aws-sdk/client-s3';
import {beforeAll, describe, expect, inject, it} from 'vitest';
import {chownToPostgres, createCluster, makeTempDir, freePort, pgBinDir} from '../helpers/cluster.js';
import {systemIdOf, withPageHeader} from '../helpers/wal.js';
import {repositorySection, writePolicy} from '../helpers/pitr.js';
import {runPgbk} from '../helpers/cli.js';
import {createS3Client} from '../helpers/s3.js';

const SEGMENT = 16 * 1024 * 1024;

/** The database system the synthetic segments belong to (set by the suite's beforeAll). */
let systemId = '';

/** Writes a WAL file; segments and .partial files get a page header of `systemId` (unless `raw`). */
function walFile(dir: string, name: string, bytes: Buffer, raw = false): string {
  const path = join(dir, name);
  writeFileSync(path, !raw && /^[0-9A-F]{24}(\.partial)?$/.test(name) ? withPageHeader(bytes, name, systemId) : bytes);
  chownToPostgres(path);
  return path;
}

describe.each(['local', 's3'] as const)('archive-push and archive-get (%s repository)', (kind) => {
  let dir: string;
  let policy: string;
  let section: Record<string, unknown>;
  let repoDir: string | undefined;
  const pgbk = (args: string[], cwd?: string) => runPgbk([...args, '--policy', policy], {cwd});

  beforeAll(async () => {
    dir = makeTempDir('pgbk-archive-');
    ({section, repoDir} = repositorySection(kind, dir, inject('s3')));
    // A cluster that never runs: `pgbk init` learns its identity from pg_controldata of postgres.data_dir.
    const cluster = await createCluster({start: false});
    systemId = systemIdOf(cluster.dataDir);
    policy = writePolicy(dir, 'archive', {
      strategy: 'pitr', repository: section,
      postgres: {url: 'postgresql://postgres@127.0.0.1:1/postgres', data_dir: cluster.dataDir, bin_dir: pgBinDir()},
    });
    const init = await pgbk(['init']);
    expect(init.stderr).toBe('');
    expect(init.stdout).toMatch(new RegExp(`initialised .* for database system ${systemId}`));
  });

  /** Replaces the stored object of `name` with `body` (as a disk fault or a buggy tool would). */
  async function tamper(name: string, body: Buffer | ((key: string) => Buffer)): Promise<void> {
    // Valid data of the stored object's own codec, when a function: only the checksum can tell.
    const bytes = (key: string) => (typeof body === 'function' ? body(key) : body);
    if (kind === 'local') {
      const files = readdirSync(repoDir!, {recursive: true}).map(String).filter((file) => file.includes(`${name}-`));
      expect(files).toHaveLength(1);
      writeFileSync(join(repoDir!, files[0]!), bytes(files[0]!));
      return;
    }
    const s3 = inject('s3');
    const client = createS3Client(s3);
    const prefix = String(section.url).replace(`s3://${s3.bucket}/`, '');
    const listed = await client.send(new ListObjectsV2Command({Bucket: s3.bucket, Prefix: `${prefix}/wal/`}));
    const key = (listed.Contents ?? []).map((object) => object.Key!).find((k) => k.includes(`${name}-`));
    expect(key).toBeDefined();
    await client.send(new PutObjectCommand({Bucket: s3.bucket, Key: key, Body: bytes(key!)}));
    client.destroy();
  }

  it('pushes a segment quietly and gets back the same bytes', async () => {
    const path = walFile(dir, '000000010000000000000042', randomBytes(SEGMENT));
    const bytes = readFileSync(path);
    const pushed = await pgbk(['archive-push', path]);
    expect(pushed.stderr).toBe('');
    expect(pushed.exitCode).toBe(0);
    const dest = join(dir, 'fetched');
    const got = await pgbk(['archive-get', '000000010000000000000042', dest]);
    expect(got.exitCode).toBe(0);
    expect(got.stderr).toBe('');
    expect(readFileSync(dest).equals(bytes)).toBe(true);
  });

  it('accepts the same segment again, refuses different content under the same name', async () => {
    const path = walFile(dir, '000000010000000000000043', Buffer.alloc(SEGMENT, 7));
    const bytes = readFileSync(path);
    expect((await pgbk(['archive-push', path])).exitCode).toBe(0);
    const again = await pgbk(['archive-push', path]);
    expect(again.exitCode).toBe(0);
    // s3rver (the fallback mock) ignores If-None-Match: there the same bytes are simply written again.
    if (kind === 'local' || inject('s3').kind !== 's3rver') expect(again.stderr).toMatch(/already archived with the same content \(read back and verified\)/);
    const other = walFile(makeTempDir('pgbk-other-'), '000000010000000000000043', Buffer.alloc(SEGMENT, 8));
    const conflict = await pgbk(['archive-push', other]);
    expect(conflict.exitCode).toBe(1);
    expect(conflict.stderr).toMatch(/000000010000000000000043 is already archived .* with different content/);
    expect(conflict.stderr).toMatch(/nothing was overwritten/);
    const dest = join(dir, 'fetched-43');
    expect((await pgbk(['archive-get', '000000010000000000000043', dest])).exitCode).toBe(0);
    expect(readFileSync(dest).equals(bytes)).toBe(true);
  });

  it('never overwrites a timeline history file', async () => {
    const first = walFile(dir, '00000002.history', Buffer.from('1\t0/3000158\tno recovery target specified\n'));
    expect((await pgbk(['archive-push', first])).exitCode).toBe(0);
    const second = walFile(makeTempDir('pgbk-other-'), '00000002.history', Buffer.from('1\t0/5000000\tbefore 2026-11-26\n'));
    expect((await pgbk(['archive-push', second])).exitCode).toBe(1);
    const dest = join(dir, 'history');
    expect((await pgbk(['archive-get', '00000002.history', dest])).exitCode).toBe(0);
    expect(readFileSync(dest, 'utf8')).toContain('0/3000158');
  });

  it('archives .partial and .backup files', async () => {
    for (const name of ['000000010000000000000044.partial', '000000010000000000000044.00000028.backup']) {
      const path = walFile(dir, name, Buffer.from(`content of ${name}`.padEnd(8192, '.')));
      expect((await pgbk(['archive-push', path])).exitCode).toBe(0);
      const dest = join(dir, `got-${name}`);
      expect((await pgbk(['archive-get', name, dest])).exitCode).toBe(0);
      expect(readFileSync(dest).equals(readFileSync(path))).toBe(true);
    }
  });

  it('answers 1, quietly, for a segment that is not archived', async () => {
    const dest = join(dir, 'missing');
    const result = await pgbk(['archive-get', '0000000100000000000000FF', dest]);
    expect(result.exitCode).toBe(1);
    expect(result.stderr).toBe('');
    expect(existsSync(dest)).toBe(false);
  });

  it('never hands over a corrupt segment: exit 126 aborts recovery, a standby gets 1', async () => {
    const path = walFile(dir, '000000010000000000000045', randomBytes(SEGMENT));
    expect((await pgbk(['archive-push', path])).exitCode).toBe(0);
    // Valid compressed data (the object's own codec) of other bytes: only the checksum can tell.
    await tamper('000000010000000000000045', (key) => (key.endsWith('.zst') ? zstdCompressSync(randomBytes(SEGMENT)) : gzipSync(randomBytes(SEGMENT))));
    const dest = join(dir, 'corrupt');
    const result = await pgbk(['archive-get', '000000010000000000000045', dest]);
    expect(result.exitCode).toBe(126);
    expect(result.stderr).toMatch(/checksum mismatch/);
    expect(existsSync(dest)).toBe(false);
    expect(readdirSync(dir).filter((file) => file.startsWith('corrupt'))).toEqual([]);
    // Not gzip at all.
    await tamper('000000010000000000000045', randomBytes(4096));
    expect((await pgbk(['archive-get', '000000010000000000000045', dest])).exitCode).toBe(126);
    // A standby falls back to streaming instead of aborting.
    const standbyDir = makeTempDir('pgbk-standby-');
    writeFileSync(join(standbyDir, 'standby.signal'), '');
    const standby = await pgbk(['archive-get', '000000010000000000000045', join(standbyDir, 'seg')], standbyDir);
    expect(standby.exitCode).toBe(1);
    expect(existsSync(join(standbyDir, 'seg'))).toBe(false);
  });

  it('refuses to push a file that is not a WAL file, or is not there', async () => {
    const notWal = walFile(dir, 'postgresql.conf', Buffer.from('x'), true);
    expect((await pgbk(['archive-push', notWal])).exitCode).toBe(2);
    expect((await pgbk(['archive-push', join(dir, '000000010000000000000099')])).exitCode).toBe(1);
  });
});

describe('repository outage', () => {
  it('archive-get exits 126 (not "missing") when the S3 endpoint is down, after retries, in bounded time', async () => {
    const dir = makeTempDir('pgbk-outage-');
    const port = await freePort();
    const policy = writePolicy(dir, 'down', {
      strategy: 'pitr', postgres: {url: 'postgresql://postgres@127.0.0.1:1/postgres'},
      repository: {url: 's3://bucket/prefix', endpoint: `http://127.0.0.1:${port}`, region: 'us-east-1', force_path_style: true, access_key_id: 'x', secret_access_key: 'y'},
    });
    const started = Date.now();
    const result = await runPgbk(['archive-get', '000000010000000000000001', join(dir, 'seg'), '--policy', policy]);
    expect(result.exitCode).toBe(126);
    expect(result.stderr).toMatch(/aborting recovery/);
    expect(Date.now() - started).toBeLessThan(60_000);
    const push = await runPgbk(['archive-push', walFile(dir, '000000010000000000000001', Buffer.alloc(1024), true), '--policy', policy]);
    expect(push.exitCode).toBe(1);
    expect(statSync(dir).isDirectory()).toBe(true);
  });
});
