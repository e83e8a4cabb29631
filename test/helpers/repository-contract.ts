// The Repository contract (src/storage/repository.ts), run unchanged on every driver (cf. WAL-G
// storage.RunFolderTest): put/get/stat/list/remove, errors, paging past 1000 keys, large streamed puts,
// and atomicity (a failed put leaves nothing visible, not even to a get/stat racing it).
import {execFile} from 'node:child_process';
import {createHash, randomBytes} from 'node:crypto';
import {fileURLToPath} from 'node:url';
import {promisify} from 'node:util';
import {PassThrough, Readable} from 'node:stream';
import {afterAll, beforeAll, describe, expect, it} from 'vitest';
import {ObjectNotFoundError, PreconditionFailedError} from '../../src/errors.js';
import type {RepositoryConfig} from '../../src/policy/types.js';
import type {Repository, StoredObject} from '../../src/storage/repository.js';

/** What the store holds, seen without the driver (filesystem, or another S3 client). */
export interface RawView {
  /** Size of the stored object under `key` (relative to the repository), or undefined. */
  size(key: string): Promise<number | undefined>;
  /** Every name stored under the repository, temp files and leftovers included, relative to it. */
  names(): Promise<string[]>;
}

export interface ContractTarget {
  repo: Repository;
  cleanup(): Promise<void>;
  /** When given, results are also checked independently of the driver. */
  raw?: RawView;
  /** Driver-specific checks of paging, run while `keys` (> 1000, in order) are stored under `folder`. */
  checkPaging?(folder: string, keys: string[]): Promise<void>;
  /**
   * Whether the store must enforce conditional writes itself (conditionalWrites() must say so): true for the
   * local driver, radosgw, MinIO and AWS; false for s3rver, which ignores the headers (the safe path applies).
   */
  enforcesConditionalWrites: boolean;
  /** The same repository for other processes (the cross-process races run the built driver from dist/). */
  config?: RepositoryConfig;
  /**
   * Begins an upload of `key` that never completes (local: a temp file as a dying put leaves it; S3: a
   * multipart upload with one part), for cleanUpIncomplete(). Absent where the store cannot list them
   * (s3rver has no ListMultipartUploads).
   */
  startIncompleteUpload?(key: string): Promise<void>;
}

const CAS_WRITER = fileURLToPath(new URL('./cas-writer.mjs', import.meta.url));

/** Runs cas-writer.mjs in `processes` processes at once; their JSON summaries. */
async function raceProcesses(config: RepositoryConfig, key: string, mode: 'create' | 'increment', processes: number, count = 1):
Promise<{id: string; wins: number; retries: number}[]> {
  const startAt = Date.now() + 1500;
  return Promise.all(Array.from({length: processes}, async (_, index) => {
    const id = `writer-${index}`;
    const {stdout} = await promisify(execFile)(process.execPath, [CAS_WRITER, JSON.stringify({config, key, mode, count, id, startAt})],
      {timeout: 120_000});
    return JSON.parse(stdout) as {id: string; wins: number; retries: number};
  }));
}

const KiB = 1024;
const MiB = 1024 * KiB;

export function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

/** Reads a stream to the end. */
export async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as Uint8Array));
  return Buffer.concat(chunks);
}

/** Every key under `prefix`, in the order the driver yields them. */
export async function listKeys(repo: Repository, prefix: string): Promise<string[]> {
  const keys: string[] = [];
  for await (const object of repo.list(prefix)) keys.push(object.key);
  return keys;
}

async function listObjects(repo: Repository, prefix: string): Promise<StoredObject[]> {
  const objects: StoredObject[] = [];
  for await (const object of repo.list(prefix)) objects.push(object);
  return objects;
}

/** Byte order, as S3 sorts keys (UTF-8 code units; the test keys are ASCII). */
function byteOrder(keys: string[]): string[] {
  return [...keys].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
}

/**
 * `sizeBytes` of deterministic, non-repeating data in chunks of an odd size (so chunk boundaries never
 * line up with part or buffer sizes); `failAfterBytes` makes the stream error once that much was read.
 */
function generatedStream(sizeBytes: number, opts: {failAfterBytes?: number; seed?: Buffer} = {}): {
  stream: Readable;
  sha256: string;
  error: Error;
} {
  const block = opts.seed ?? randomBytes(MiB);
  const chunkBytes = 64 * KiB + 7;
  const error = new Error('source stream failed midway (injected by the contract test)');
  function chunkAt(offset: number): Buffer {
    const length = Math.min(chunkBytes, sizeBytes - offset);
    const chunk = Buffer.allocUnsafe(length);
    for (let done = 0; done < length;) {
      const at = (offset + done) % block.length;
      done += block.copy(chunk, done, at, Math.min(block.length, at + length - done));
    }
    if (length >= 4) chunk.writeUInt32BE(offset >>> 0, 0); // no two chunks alike, even when the block repeats
    return chunk;
  }
  const hash = createHash('sha256');
  for (let offset = 0; offset < sizeBytes; offset += chunkBytes) hash.update(chunkAt(offset));
  async function* produce(): AsyncGenerator<Buffer> {
    for (let offset = 0; offset < sizeBytes; offset += chunkBytes) {
      if (opts.failAfterBytes !== undefined && offset >= opts.failAfterBytes) throw error;
      yield chunkAt(offset);
    }
  }
  return {stream: Readable.from(produce(), {objectMode: false}), sha256: hash.digest('hex'), error};
}

/** The error and its causes, outermost first. */
function causeChain(error: unknown): unknown[] {
  const chain: unknown[] = [];
  for (let at: unknown = error; at !== undefined && chain.length < 10; at = (at as {cause?: unknown})?.cause) chain.push(at);
  return chain;
}

async function expectNotFound(promise: Promise<unknown>, key: string): Promise<void> {
  const error = await promise.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(error, `get(${key}) must reject`).toBeInstanceOf(ObjectNotFoundError);
  expect(error).toMatchObject({code: 'repo.not-found', key});
}

/** Runs in parallel batches of `batchSize`. */
async function inBatches<T>(items: T[], batchSize: number, run: (item: T) => Promise<unknown>): Promise<void> {
  for (let start = 0; start < items.length; start += batchSize) {
    await Promise.all(items.slice(start, start + batchSize).map(run));
  }
}

function until(condition: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  return new Promise((resolve, reject) => {
    const poll = () => {
      if (condition()) resolve();
      else if (Date.now() > deadline) reject(new Error(`timed out waiting for ${what}`));
      else setTimeout(poll, 5);
    };
    poll();
  });
}

export function runRepositoryContract(name: string, open: () => Promise<ContractTarget>): void {
  describe(`Repository contract: ${name}`, () => {
    let target: ContractTarget;
    let repo: Repository;
    beforeAll(async () => {
      target = await open();
      repo = target.repo;
    });
    afterAll(async () => {
      await target?.cleanup();
    });

    /** The key is not visible through any method of the driver, nor (when available) in the raw store. */
    async function expectAbsent(key: string): Promise<void> {
      expect(await repo.stat(key), `stat(${key})`).toBeUndefined();
      await expectNotFound(repo.get(key), key);
      const listed = await listKeys(repo, key);
      expect(listed, `list(${key})`).not.toContain(key);
      if (target.raw) {
        expect(await target.raw.size(key), `raw size of ${key}`).toBeUndefined();
        // Nothing stored under names starting with the key but the objects listed (no temp files left behind).
        expect(byteOrder((await target.raw.names()).filter((stored) => stored.startsWith(key)))).toEqual(listed);
      }
    }

    async function expectStored(key: string, data: Buffer): Promise<void> {
      expect(await repo.stat(key)).toMatchObject({key, sizeBytes: data.length});
      expect(sha256(await readAll(await repo.get(key)))).toBe(sha256(data));
      if (target.raw) expect(await target.raw.size(key)).toBe(data.length);
    }

    it('starts empty, and a missing folder lists as empty', async () => {
      expect(await listKeys(repo, '')).toEqual([]);
      expect(await listKeys(repo, 'no/such/folder/')).toEqual([]);
    });

    it('puts a Buffer: size and sha256 of the stored bytes, then stat, get and the raw store agree', async () => {
      const key = 'put-buffer/backups/20260821T020000Z/manifest.json';
      const data = Buffer.from(JSON.stringify({hello: 'world', bytes: [...randomBytes(100)]}));
      const progress: number[] = [];
      const result = await repo.put(key, data, {onProgress: (bytes) => progress.push(bytes)});
      expect(result).toMatchObject({key, sizeBytes: data.length, sha256: sha256(data)});
      expect(progress.at(-1)).toBe(data.length);
      const info = await repo.stat(key);
      expect(info).toMatchObject({key, sizeBytes: data.length});
      expect(info?.modified).toBeInstanceOf(Date);
      expect(await readAll(await repo.get(key))).toEqual(data);
      if (target.raw) expect(await target.raw.size(key)).toBe(data.length);
    });

    it('puts a stream of unknown length (many chunks, binary)', async () => {
      const key = 'put-stream/wal/00000001/0000000100000000/000000010000000000000001.gz';
      const chunks = Array.from({length: 37}, (_, index) => randomBytes(1000 + index * 311));
      const data = Buffer.concat(chunks);
      const progress: number[] = [];
      const result = await repo.put(key, Readable.from(chunks), {onProgress: (bytes) => progress.push(bytes)});
      expect(result).toMatchObject({key, sizeBytes: data.length, sha256: sha256(data)});
      expect(progress.at(-1)).toBe(data.length);
      await expectStored(key, data);
      expect(await readAll(await repo.get(key))).toEqual(data);
    });

    it('puts empty objects, from a Buffer and from a stream', async () => {
      const empty = sha256(Buffer.alloc(0));
      expect(await repo.put('put-empty/buffer', Buffer.alloc(0))).toMatchObject({sizeBytes: 0, sha256: empty});
      expect(await repo.put('put-empty/stream', Readable.from([]))).toMatchObject({sizeBytes: 0, sha256: empty});
      for (const key of ['put-empty/buffer', 'put-empty/stream']) await expectStored(key, Buffer.alloc(0));
      expect(await listObjects(repo, 'put-empty/')).toMatchObject([
        {key: 'put-empty/buffer', sizeBytes: 0},
        {key: 'put-empty/stream', sizeBytes: 0},
      ]);
    });

    it('get of a missing key rejects with ObjectNotFoundError; stat gives undefined', async () => {
      await repo.put('missing/present/object', Buffer.from('x'));
      for (const key of ['missing/nothing-here', 'missing/present/objec', 'missing/present/object.gz', 'no-such-folder/at/all']) {
        await expectNotFound(repo.get(key), key);
        expect(await repo.stat(key)).toBeUndefined();
      }
    });

    it('treats a folder (a prefix of stored keys), or a key below an object, as no object', async () => {
      await repo.put('folder-key/inner/object', Buffer.from('x'));
      for (const key of ['folder-key', 'folder-key/inner', 'folder-key/inner/object/below']) {
        await expectNotFound(repo.get(key), key);
        expect(await repo.stat(key)).toBeUndefined();
      }
    });

    describe('list', () => {
      const timeline = 'list/wal/00000001/0000000100000000/';
      const walKeys = [
        `${timeline}000000010000000000000002`,
        `${timeline}000000010000000000000003-0123456789abcdef0123456789abcdef01234567.gz`,
        `${timeline}000000010000000000000003-fedcba9876543210fedcba9876543210fedcba98.gz`,
        `${timeline}000000010000000000000003.00000028.backup`,
        `${timeline}000000010000000000000004-aaaa.gz`,
        'list/wal/00000001/0000000200000000/000000010000000200000000-bbbb.gz',
        'list/wal/00000002.history',
      ];
      // Characters just below and above '/' (0x2f): key order must be byte order, not folder-first.
      const orderKeys = ['list/ord/a-1', 'list/ord/a.1', 'list/ord/a/1', 'list/ord/a/2/x', 'list/ord/a0', 'list/ord/a_1', 'list/ord/b'];
      const all = [...walKeys, ...orderKeys];

      beforeAll(async () => {
        // Put in reverse order: the listing must not depend on write order.
        for (const [index, key] of [...all].reverse().entries()) await repo.put(key, Buffer.alloc(index + 1, index));
      });

      it('lists everything under a folder prefix, in key order, with sizes', async () => {
        const objects = await listObjects(repo, 'list/');
        expect(objects.map((object) => object.key)).toEqual(byteOrder(all));
        const sizes = new Map([...all].reverse().map((key, index) => [key, index + 1]));
        for (const object of objects) expect(object.sizeBytes, object.key).toBe(sizes.get(object.key));
        expect(await listKeys(repo, 'list/wal/')).toEqual(byteOrder(walKeys));
        expect(await listKeys(repo, timeline)).toEqual(walKeys.slice(0, 5));
      });

      it('lists a prefix ending mid-name', async () => {
        expect(await listKeys(repo, `${timeline}000000010000000000000003-`)).toEqual(walKeys.slice(1, 3));
        expect(await listKeys(repo, `${timeline}000000010000000000000003`)).toEqual(walKeys.slice(1, 4));
        expect(await listKeys(repo, 'list/wal/00000001/00000001')).toEqual(walKeys.slice(0, 5));
        expect(await listKeys(repo, 'list/wal/0000000')).toEqual(byteOrder(walKeys));
        expect(await listKeys(repo, 'list/ord/a')).toEqual(byteOrder(orderKeys).slice(0, 6));
        expect(await listKeys(repo, 'list/ord/a/')).toEqual(['list/ord/a/1', 'list/ord/a/2/x']);
        expect(await listKeys(repo, 'lis')).toEqual(byteOrder(all));
      });

      it('lists an exact key as itself, and nothing for prefixes that match nothing', async () => {
        expect(await listKeys(repo, walKeys[0]!)).toEqual([walKeys[0]]);
        expect(await listKeys(repo, `${timeline}000000010000000000000009`)).toEqual([]);
        expect(await listKeys(repo, 'list/wal/00000003/')).toEqual([]);
        expect(await listKeys(repo, 'list/ord/b/')).toEqual([]);
        expect(await listKeys(repo, 'list/ord/c')).toEqual([]);
      });
    });

    describe('more than 1000 keys (S3 lists 1000 per page, deletes 1000 per request)', () => {
      const count = 1100;
      const folder = 'many/wal/00000001/0000000100000000/';
      const keys = Array.from({length: count}, (_, index) => `${folder}${String(index).padStart(6, '0')}`);

      beforeAll(async () => {
        await inBatches(keys, 50, (key) => repo.put(key, Buffer.from(key)));
      });

      it('lists all of them page by page, in order, without duplicates', async () => {
        const listed = await listObjects(repo, 'many/');
        expect(listed.length).toBe(count);
        expect(listed.map((object) => object.key)).toEqual(keys);
        expect(listed.every((object) => object.sizeBytes === object.key.length)).toBe(true);
        // A prefix selecting a range that straddles the first page boundary.
        expect(await listKeys(repo, `${folder}0009`)).toEqual(keys.slice(900, 1000));
        expect(await listKeys(repo, `${folder}0010`)).toEqual(keys.slice(1000, 1100));
      });

      it('yields the first objects before the listing is exhausted, and can stop early', async () => {
        const seen: string[] = [];
        for await (const object of repo.list(folder)) {
          seen.push(object.key);
          if (seen.length === 3) break;
        }
        expect(seen).toEqual(keys.slice(0, 3));
      });

      it('passes the driver-specific paging checks', async () => {
        await target.checkPaging?.(folder, keys);
      });

      it('removes them all in one call, missing keys included', async () => {
        const doomed = new Set([...keys, `${folder}not-there`, 'many/never/existed']);
        await repo.remove(doomed);
        expect(await listKeys(repo, 'many/')).toEqual([]);
        expect(await repo.stat(keys[0]!)).toBeUndefined();
        expect(await repo.stat(keys.at(-1)!)).toBeUndefined();
        if (target.raw) {
          expect(await target.raw.size(keys[0]!)).toBeUndefined();
          expect(await target.raw.size(keys[1050]!)).toBeUndefined();
          expect((await target.raw.names()).filter((stored) => stored.startsWith('many/'))).toEqual([]);
        }
      });
    });

    it('removes: a missing key is not an error, other keys stay, nothing is removed by prefix', async () => {
      const keep = ['remove/keep/a', 'remove/keep/ab', 'remove/gone/a.gz'];
      const gone = ['remove/gone/a', 'remove/gone/b'];
      for (const key of [...keep, ...gone]) await repo.put(key, Buffer.from(key));
      await repo.remove([]);
      await repo.remove(['remove/never/was', 'remove/also/never']);
      // Any iterable, e.g. a generator; 'remove/keep' is only a prefix and must not remove anything.
      function* doomed(): Generator<string> {
        yield* gone;
        yield 'remove/keep'; // a folder
        yield 'remove/keep/a/below'; // below an object
        yield 'remove/gone/c';
      }
      await repo.remove(doomed());
      for (const key of gone) await expectAbsent(key);
      for (const key of keep) await expectStored(key, Buffer.from(key));
      expect(await listKeys(repo, 'remove/')).toEqual(byteOrder(keep));
      await repo.remove(gone); // again: already gone
    });

    it('overwrites: the last put wins, for get, stat and list', async () => {
      const key = 'overwrite/backups/latest.json';
      const first = randomBytes(50_000);
      const second = Buffer.from('short');
      await repo.put(key, first);
      await expectStored(key, first);
      const result = await repo.put(key, Readable.from([second]));
      expect(result).toMatchObject({sizeBytes: second.length, sha256: sha256(second)});
      await expectStored(key, second);
      expect(await readAll(await repo.get(key))).toEqual(second);
      expect(await listObjects(repo, 'overwrite/')).toMatchObject([{key, sizeBytes: second.length}]);
      const third = randomBytes(70_000);
      await repo.put(key, third);
      expect(await readAll(await repo.get(key))).toEqual(third);
    });

    it('streams a large object of unknown length (~40 MiB) in and out unchanged', async () => {
      const key = 'large/backups/20260821T020000Z/base.tar.gz';
      const sizeBytes = 40 * MiB + 12_345;
      const source = generatedStream(sizeBytes);
      let reported = 0;
      const result = await repo.put(key, source.stream, {onProgress: (bytes) => (reported = bytes)});
      expect(result).toMatchObject({key, sizeBytes, sha256: source.sha256});
      expect(reported).toBe(sizeBytes);
      expect(await repo.stat(key)).toMatchObject({key, sizeBytes});
      if (target.raw) expect(await target.raw.size(key)).toBe(sizeBytes);
      const hash = createHash('sha256');
      let read = 0;
      let chunks = 0;
      for await (const chunk of await repo.get(key)) {
        hash.update(chunk as Buffer);
        read += (chunk as Buffer).length;
        chunks++;
      }
      expect(read).toBe(sizeBytes);
      expect(chunks).toBeGreaterThan(1); // streamed, not handed over as one buffer
      expect(hash.digest('hex')).toBe(source.sha256);
      await repo.remove([key]);
      await expectAbsent(key);
    });

    describe('atomicity', () => {
      // Small: fails inside the first S3 part / first file write. Large: fails after a multipart upload began.
      for (const [label, sizeBytes, failAfterBytes] of [
        ['early', 4 * MiB, 300 * KiB],
        ['after several MiB', 24 * MiB, 17 * MiB],
      ] as const) {
        it(`a put whose body errors (${label}) rejects and leaves nothing under the key`, async () => {
          const key = `atomic/${label.replace(/\W+/g, '-')}/base.tar.gz`;
          const source = generatedStream(sizeBytes, {failAfterBytes});
          const error = await repo.put(key, source.stream).then(
            () => undefined,
            (err: unknown) => err,
          );
          expect(error, 'put must reject').toBeInstanceOf(Error);
          expect(error).not.toBeInstanceOf(ObjectNotFoundError);
          // The source's error is kept (as the error or in its cause chain), not dropped.
          expect(causeChain(error).some((at) => at === source.error || (at as Error)?.message?.includes(source.error.message))).toBe(true);
          await expectAbsent(key);
          expect(await listKeys(repo, 'atomic/')).toEqual([]);
        });
      }

      it('a failed overwrite leaves the previous object intact', async () => {
        const key = 'atomic-overwrite/wal/000000010000000000000007';
        const previous = randomBytes(100_000);
        await repo.put(key, previous);
        const source = generatedStream(3 * MiB, {failAfterBytes: MiB});
        await expect(repo.put(key, source.stream)).rejects.toBeInstanceOf(Error);
        await expectStored(key, previous);
        expect(await readAll(await repo.get(key))).toEqual(previous);
        expect(await listObjects(repo, 'atomic-overwrite/')).toMatchObject([{key, sizeBytes: previous.length}]);
        if (target.raw) expect((await target.raw.names()).filter((stored) => stored.startsWith('atomic-overwrite/'))).toEqual([key]);
      });

      it('a put in progress, then failing, is never visible to a concurrent get, stat or list', async () => {
        const key = 'atomic-concurrent/fresh';
        const oldKey = 'atomic-concurrent/old';
        const previous = Buffer.from('the previous, complete version');
        await repo.put(oldKey, previous);
        for (const [putKey, before] of [[key, undefined], [oldKey, previous]] as const) {
          const body = new PassThrough();
          let received = 0;
          const pending = repo.put(putKey, body, {onProgress: (bytes) => (received = bytes)}).then(
            () => undefined,
            (err: unknown) => err,
          );
          const sent = 3 * 256 * KiB;
          for (let index = 0; index < 3; index++) body.write(randomBytes(256 * KiB));
          await until(() => received >= sent, `the driver to consume ${sent} bytes of ${putKey}`);
          // Mid-upload: only the complete previous version (or nothing) may be seen.
          const checks = async () => {
            if (before === undefined) {
              expect(await repo.stat(putKey)).toBeUndefined();
              await expectNotFound(repo.get(putKey), putKey);
              expect(await listKeys(repo, putKey)).toEqual([]);
            } else {
              expect(await repo.stat(putKey)).toMatchObject({sizeBytes: before.length});
              expect(await readAll(await repo.get(putKey))).toEqual(before);
              expect(await listObjects(repo, putKey)).toMatchObject([{key: putKey, sizeBytes: before.length}]);
            }
          };
          await checks();
          const failure = new Error('producer died (injected by the contract test)');
          body.destroy(failure);
          const error = await pending;
          expect(error, 'put must reject').toBeInstanceOf(Error);
          await checks();
          if (target.raw) {
            expect((await target.raw.names()).filter((stored) => stored.startsWith(putKey))).toEqual(before ? [putKey] : []);
          }
        }
        expect(await listKeys(repo, 'atomic-concurrent/')).toEqual([oldKey]);
      });
    });

    describe('conditional writes', () => {
      it('conditionalWrites() reports what the store enforces', async () => {
        const support = await repo.conditionalWrites();
        expect(support).toMatchObject({createOnly: target.enforcesConditionalWrites, compareAndSwap: target.enforcesConditionalWrites});
        // Learned once: asking again gives the same answer without probing again.
        expect(await repo.conditionalWrites()).toMatchObject({createOnly: support.createOnly, compareAndSwap: support.compareAndSwap});
      });

      it('create-only: a second put of the key fails with PreconditionFailedError and changes nothing', async () => {
        const key = 'cond/create/manifest.json';
        const first = Buffer.from('{"first":true}');
        const created = await repo.put(key, first, {ifNoneMatch: '*'});
        expect(created).toMatchObject({key, sizeBytes: first.length, sha256: sha256(first)});
        expect(typeof created.version).toBe('string');
        expect(created.version.length).toBeGreaterThan(0);
        for (const body of [Buffer.from('{"second":true}'), Readable.from([Buffer.from('{"third, streamed":true}')])]) {
          const error = await repo.put(key, body, {ifNoneMatch: '*'}).then(() => undefined, (err: unknown) => err);
          expect(error).toBeInstanceOf(PreconditionFailedError);
          expect(error).toMatchObject({code: 'repo.precondition-failed', key, condition: 'if-none-match', exitCode: 1});
        }
        await expectStored(key, first);
        expect((await repo.stat(key))?.version).toBe(created.version);
        // A streamed create of a new key works too, and leaves no temp files.
        const streamed = await repo.put('cond/create/streamed', Readable.from([Buffer.from('a'), Buffer.from('b')]), {ifNoneMatch: '*'});
        expect(streamed).toMatchObject({sizeBytes: 2});
        await expectStored('cond/create/streamed', Buffer.from('ab'));
        expect(await listKeys(repo, 'cond/create/')).toEqual(['cond/create/manifest.json', 'cond/create/streamed']);
      });

      it('compare-and-swap: replaces only the version read; a stale or wrong token fails and changes nothing', async () => {
        const key = 'cond/cas/locks/backup.json';
        const v1 = await repo.put(key, Buffer.from('{"holder":"a"}'));
        const read = await repo.getVersioned(key);
        expect(read.body.toString()).toBe('{"holder":"a"}');
        expect(read.version).toBe(v1.version);
        expect((await repo.stat(key))?.version).toBe(v1.version);
        const v2 = await repo.put(key, Buffer.from('{"holder":"b"}'), {ifMatch: v1.version});
        expect(v2.version).not.toBe(v1.version);
        // Same size, same second, new content: the stale token must not match.
        for (const stale of [v1.version, '"0123456789abcdef0123456789abcdef"', 'garbage']) {
          const error = await repo.put(key, Buffer.from('{"holder":"c"}'), {ifMatch: stale}).then(() => undefined, (err: unknown) => err);
          expect(error, stale).toBeInstanceOf(PreconditionFailedError);
          expect(error).toMatchObject({code: 'repo.precondition-failed', key, condition: 'if-match'});
        }
        expect((await repo.getVersioned(key)).body.toString()).toBe('{"holder":"b"}');
        // Rewriting identical bytes still makes a new version on the local driver; on S3 the ETag is the MD5,
        // so equal content is an equal version there: either way the token read stays usable once.
        const v3 = await repo.put(key, Buffer.from('{"holder":"d"}'), {ifMatch: v2.version});
        expect((await repo.getVersioned(key)).version).toBe(v3.version);
        // A missing key matches no token.
        const gone = await repo.put('cond/cas/missing', Buffer.from('x'), {ifMatch: v3.version}).then(() => undefined, (err: unknown) => err);
        expect(gone).toBeInstanceOf(PreconditionFailedError);
        expect(await repo.stat('cond/cas/missing')).toBeUndefined();
        await expectNotFound(repo.getVersioned('cond/cas/missing'), 'cond/cas/missing');
      });

      it('create-only holds for a streamed body bigger than one upload part (S3: multipart)', async () => {
        const key = 'cond/big/000000010000000000000009';
        const small = Buffer.from('the object that must stay');
        await repo.put(key, small);
        const source = generatedStream(33 * MiB + 5);
        const error = await repo.put(key, source.stream, {ifNoneMatch: '*'}).then(() => undefined, (err: unknown) => err);
        expect(error).toBeInstanceOf(PreconditionFailedError);
        await expectStored(key, small);
        // And a big conditional create of a new key works.
        const fresh = generatedStream(33 * MiB + 5);
        expect(await repo.put(`${key}.new`, fresh.stream, {ifNoneMatch: '*'})).toMatchObject({sizeBytes: 33 * MiB + 5, sha256: fresh.sha256});
        await repo.remove([key, `${key}.new`]);
      }, 120_000);

      it('two writers racing in one process: exactly one create wins', async (ctx) => {
        if (!target.enforcesConditionalWrites) ctx.skip(); // the safe path is not atomic (README)
        for (let round = 0; round < 5; round++) {
          const key = `cond/race/${round}`;
          const bodies = Array.from({length: 6}, (_, index) => Buffer.from(`writer ${index} of round ${round}`));
          const results = await Promise.allSettled(bodies.map((body) => repo.put(key, body, {ifNoneMatch: '*'})));
          const won = results.flatMap((result, index) => (result.status === 'fulfilled' ? [index] : []));
          expect(won, `round ${round}`).toHaveLength(1);
          for (const result of results) {
            if (result.status === 'rejected') expect(result.reason).toBeInstanceOf(PreconditionFailedError);
          }
          expect((await repo.getVersioned(key)).body).toEqual(bodies[won[0]!]);
        }
      });

      it('two processes racing: exactly one create wins, and compare-and-swap loses no update', async (ctx) => {
        if (!target.enforcesConditionalWrites || !target.config) ctx.skip();
        const createKey = 'cond/processes/created';
        const creators = await raceProcesses(target.config!, createKey, 'create', 4);
        expect(creators.filter((writer) => writer.wins === 1)).toHaveLength(1);
        const winner = creators.find((writer) => writer.wins === 1)!.id;
        expect((await repo.getVersioned(createKey)).body.toString()).toBe(winner);

        const counterKey = 'cond/processes/counter';
        await repo.put(counterKey, Buffer.from(JSON.stringify({n: 0})));
        const perProcess = 15;
        const writers = await raceProcesses(target.config!, counterKey, 'increment', 3, perProcess);
        expect(writers.map((writer) => writer.wins)).toEqual([perProcess, perProcess, perProcess]);
        // Every increment was applied once: a lost update would leave n short of 45.
        expect(JSON.parse((await repo.getVersioned(counterKey)).body.toString())).toMatchObject({n: 3 * perProcess});
        // They did contend (else the test proves nothing about the race).
        expect(writers.reduce((sum, writer) => sum + writer.retries, 0)).toBeGreaterThan(0);
      }, 180_000);

      it('cleanUpIncomplete() aborts uploads begun before the cut-off, and only those', async (ctx) => {
        if (!target.startIncompleteUpload) ctx.skip();
        const key = 'cond/incomplete/backups/20261130T010000Z/base.tar.gz';
        await repo.put('cond/incomplete/complete', Buffer.from('complete'));
        await target.startIncompleteUpload!(key);
        expect(await repo.stat(key)).toBeUndefined();
        expect(await listKeys(repo, 'cond/incomplete/')).toEqual(['cond/incomplete/complete']);
        // Begun after this cut-off: kept.
        expect((await repo.cleanUpIncomplete(new Date(Date.now() - 3_600_000))).map((upload) => upload.key)).not.toContain(key);
        const removed = await repo.cleanUpIncomplete(new Date(Date.now() + 60_000));
        expect(removed.map((upload) => upload.key)).toContain(key);
        expect(removed.find((upload) => upload.key === key)?.startedAt).toBeInstanceOf(Date);
        // Gone: a second clean-up finds nothing of it; the complete object stays.
        expect((await repo.cleanUpIncomplete(new Date(Date.now() + 60_000))).map((upload) => upload.key)).not.toContain(key);
        expect(await listKeys(repo, 'cond/incomplete/')).toEqual(['cond/incomplete/complete']);
        if (target.raw) expect((await target.raw.names()).filter((name) => name.startsWith('cond/incomplete/'))).toEqual(['cond/incomplete/complete']);
      });

      it('cleanUpIncomplete() removes nothing complete', async () => {
        const before = await listKeys(repo, '');
        const removed = await repo.cleanUpIncomplete(new Date(Date.now() + 60_000));
        expect(removed.filter((upload) => !upload.key.startsWith('atomic'))).toEqual([]);
        expect(await listKeys(repo, '')).toEqual(before);
      });

      afterAll(async () => {
        await repo.remove(await listKeys(repo, 'cond/'));
      });
    });

    it('tells its own time (serverTime): near this clock, with nothing left behind', async () => {
      await repo.put('clock/marker', Buffer.from('x'));
      const before = await listKeys(repo, '');
      const rawBefore = target.raw ? await target.raw.names() : undefined;
      const start = Date.now();
      const time = await repo.serverTime();
      expect(time).toBeInstanceOf(Date);
      // The store and this process share a clock here; S3's Date header has whole seconds.
      expect(Math.abs(time!.getTime() - start)).toBeLessThan(5_000);
      expect(await listKeys(repo, '')).toEqual(before);
      if (target.raw) expect(await target.raw.names()).toEqual(rawBefore);
      await repo.remove(['clock/marker']);
    });

    it('leaves no temp files or incomplete uploads behind', async () => {
      if (!target.raw) return;
      const raw = byteOrder(await target.raw.names());
      expect(raw).toEqual(await listKeys(repo, ''));
    });
  });
}
