// Streamed WAL objects: their keys (never taken for archived WAL), the received length of a zero-padded segment,
// archive-get's rule for serving them (only at the end of the archive), and the uploader's round against a local
// repository (the newest object per segment only; settled and removed once archived with the same content).

import {mkdtemp, mkdir, readFile, rm, stat, writeFile, readdir} from 'node:fs/promises';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import {afterEach, beforeEach, describe, expect, it} from 'vitest';
import {LocalRepository} from '../../../src/storage/local/local-repository.js';
import {parseWalObjectKey, walObjectKey} from '../../../src/storage/layout.js';
import {findStreamed, parseStreamedKey, receivedBytes, streamedKey} from '../../../src/wal/receive-store.js';
import {getWalFile} from '../../../src/wal/get.js';
import {StreamUploader} from '../../../src/wal/receive.js';
import {WalGapError, WalNotFoundError} from '../../../src/errors.js';
import {sha256Hex} from '../../../src/util/streams.js';
import {withPageHeader} from '../../helpers/wal.js';
import type {Policy, WalStreamingConfig} from '../../../src/policy/types.js';

const SYSTEM = '7312345678901234567';
const SEGMENT_SIZE = 16 * 1024 * 1024;
const owner = {systemId: SYSTEM, walSegmentSize: SEGMENT_SIZE};
const SEG3 = '000000010000000000000003';
const SEG4 = '000000010000000000000004';

/** A zero-padded segment whose first `bytes` bytes hold "WAL" (a long page header, then non-zero bytes). */
function segment(name: string, bytes: number, size = SEGMENT_SIZE): Buffer {
  const data = Buffer.alloc(size);
  data.fill(0x5a, 40, bytes);
  return withPageHeader(data, name, SYSTEM);
}

let dir: string;
let repo: LocalRepository;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'pgbk-receive-'));
  await mkdir(join(dir, 'repo'));
  repo = new LocalRepository(join(dir, 'repo'));
});
afterEach(async () => {
  await repo.close();
  await rm(dir, {recursive: true, force: true});
});

async function putStreamed(name: string, data: Buffer): Promise<string> {
  const key = streamedKey(name, receivedBytes(data), sha256Hex(data), 'none');
  await repo.put(key, data);
  return key;
}

describe('streamed WAL keys', () => {
  it('round-trip, and are never read as archived WAL files', () => {
    const sha = 'ab'.repeat(32);
    const key = streamedKey(SEG3, 0x1234, sha, 'zstd');
    expect(key).toBe(`wal/00000001/0000000100000000/${SEG3}.stream-00001234-${sha}.zst`);
    expect(parseStreamedKey(key)).toEqual({segment: SEG3, endOffset: 0x1234, sha256: sha, codec: 'zstd', key});
    expect(parseWalObjectKey(key)).toBeUndefined();
    expect(parseStreamedKey(walObjectKey(SEG3, sha, 'zstd'))).toBeUndefined();
  });

  it('the received length is up to the last non-zero byte, rounded up to 8', () => {
    expect(receivedBytes(Buffer.alloc(64))).toBe(0);
    const data = Buffer.alloc(64);
    data[12] = 1;
    expect(receivedBytes(data)).toBe(16);
    expect(receivedBytes(Buffer.alloc(64, 1))).toBe(64);
  });
});

describe('archive-get and streamed WAL', () => {
  it('serves the newest streamed copy of a segment missing at the end of the archive, padded to the segment size', async () => {
    const short = segment(SEG3, 5000, 8192); // shorter than its segment: padded on the way out
    await putStreamed(SEG3, segment(SEG3, 100));
    await putStreamed(SEG3, short);
    const dest = join(dir, 'out');
    await getWalFile(repo, SEG3, dest, {owner, detectGap: true});
    expect((await stat(dest)).size).toBe(SEGMENT_SIZE);
    expect((await readFile(dest)).subarray(0, 8192).equals(short)).toBe(true);
  });

  it('never serves it past a gap, on a standby, past --end-of-archive, or over an archived copy', async () => {
    const streamed = segment(SEG3, 5000);
    await putStreamed(SEG3, streamed);
    // End of archive deliberately set before it (a target before a known gap): not served.
    await expect(getWalFile(repo, SEG3, join(dir, 'a'), {owner, detectGap: true, endOfArchive: SEG3})).rejects.toBeInstanceOf(WalNotFoundError);
    // A standby (no gap detection, no streamed copies): not served.
    await expect(getWalFile(repo, SEG3, join(dir, 'b'), {owner, detectGap: false})).rejects.toBeInstanceOf(WalNotFoundError);
    // An archived copy wins over the streamed one.
    const archived = segment(SEG3, 9000);
    await repo.put(walObjectKey(SEG3, sha256Hex(archived), 'none'), archived);
    await getWalFile(repo, SEG3, join(dir, 'c'), {owner, detectGap: true});
    expect(sha256Hex(await readFile(join(dir, 'c')))).toBe(sha256Hex(archived));
    // A later segment archived while this one is missing is a gap, streamed copy or not.
    const later = segment(SEG4, 100);
    await repo.remove([walObjectKey(SEG3, sha256Hex(archived), 'none')]);
    await repo.put(walObjectKey(SEG4, sha256Hex(later), 'none'), later);
    await expect(getWalFile(repo, SEG3, join(dir, 'd'), {owner, detectGap: true})).rejects.toBeInstanceOf(WalGapError);
  });
});

describe('the receiver\'s uploads', () => {
  function uploader(spoolDir: string): {uploader: StreamUploader; log: Array<Record<string, unknown>>} {
    const log: Array<Record<string, unknown>> = [];
    const walStreaming: WalStreamingConfig = {enabled: true, slot: 's', flushIntervalSeconds: 1, spoolDir};
    const policy = {name: 'p', compression: {codec: 'gzip', level: 1}, walStreaming} as unknown as Policy & {walStreaming: WalStreamingConfig};
    const identity = {systemId: SYSTEM, walSegmentSize: SEGMENT_SIZE} as never;
    return {uploader: new StreamUploader({policy, repo, identity, log: (entry) => log.push(entry)}), log};
  }

  it('keeps only the newest streamed object of the growing segment, and settles a complete one with the archive', async () => {
    const spool = join(dir, 'spool');
    await mkdir(spool);
    const {uploader: up, log} = uploader(spool);
    await writeFile(join(spool, `${SEG3}.partial`), segment(SEG3, 1000));
    await up.round();
    await writeFile(join(spool, `${SEG3}.partial`), segment(SEG3, 3000));
    await up.round();
    const objects = await findStreamed(repo, SEG3);
    expect(objects.map((object) => object.endOffset)).toEqual([3000]);

    // pg_receivewal completes the segment: uploaded whole while archive_command has not shipped it.
    const complete = segment(SEG3, SEGMENT_SIZE);
    await rm(join(spool, `${SEG3}.partial`));
    await writeFile(join(spool, SEG3), complete);
    await up.round();
    expect((await findStreamed(repo, SEG3)).map((object) => object.endOffset)).toEqual([SEGMENT_SIZE]);
    expect(await readdir(spool)).toEqual([SEG3]);

    // archive_command ships the same content: checksums agree, the streamed copies and the local file go.
    await repo.put(walObjectKey(SEG3, sha256Hex(complete), 'none'), complete);
    await up.round();
    expect(await findStreamed(repo, SEG3)).toEqual([]);
    expect(await readdir(spool)).toEqual([]);
    expect(log.filter((entry) => entry.event === 'segment-agrees').map((entry) => entry.segment)).toEqual([SEG3]);
  });

  it('refuses to upload another cluster\'s WAL', async () => {
    const spool = join(dir, 'spool');
    await mkdir(spool);
    const {uploader: up} = uploader(spool);
    await writeFile(join(spool, `${SEG3}.partial`), withPageHeader(Buffer.alloc(8192, 1), SEG3, '42'));
    await expect(up.round()).rejects.toThrow(/belongs to database system 42/);
    expect(await findStreamed(repo, SEG3)).toEqual([]);
  });
});
