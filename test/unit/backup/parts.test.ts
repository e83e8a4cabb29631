// Backups in pieces, on the local repository driver: cut, compressed, stored, and read back in order, exactly.
import {createHash, randomBytes} from 'node:crypto';
import {mkdtempSync, rmSync} from 'node:fs';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import {Readable} from 'node:stream';
import {pipeline} from 'node:stream/promises';
import {afterEach, beforeEach, describe, expect, it} from 'vitest';
import {PartedUpload, partName, rawBytesPerPart, tarsOf} from '../../../src/backup/parts.js';
import {concatenatedParts} from '../../../src/restore/fetch-parts.js';
import {LocalRepository} from '../../../src/storage/local/local-repository.js';
import {CorruptObjectError, ObjectNotFoundError} from '../../../src/errors.js';
import {ZSTD_AVAILABLE, type Codec} from '../../../src/util/codec.js';

let dir: string;
let repo: LocalRepository;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'pgbk-parts-'));
  repo = new LocalRepository(dir);
});
afterEach(() => rmSync(dir, {recursive: true, force: true}));

const MiB = 1024 * 1024;

/** Half random (incompressible), half repetitive, in uneven chunks. */
function data(bytes: number): Buffer[] {
  const chunks: Buffer[] = [];
  for (let left = bytes, index = 0; left > 0; index++) {
    const size = Math.min(left, 1000 + ((index * 7919) % 90_000));
    chunks.push(index % 2 === 0 ? randomBytes(size) : Buffer.alloc(size, index % 251));
    left -= size;
  }
  return chunks;
}

async function readBack(objects: PartedUpload['objects']): Promise<Buffer> {
  const out: Buffer[] = [];
  for await (const chunk of concatenatedParts(repo, objects, {concurrency: 3, bufferBytes: 256 * 1024})) out.push(chunk);
  return Buffer.concat(out);
}

describe.each((ZSTD_AVAILABLE ? ['zstd', 'gzip', 'none'] : ['gzip', 'none']) as Codec[])('pieces with %s', (codec) => {
  it('cuts a stream into pieces within the size cap, and reads them back exactly', async () => {
    const chunks = data(9 * MiB);
    const upload = new PartedUpload({repo, backupId: '20261130T010000Z', tar: 'base', compression: {codec, level: 1}, maxObjectBytes: 2 * MiB});
    await pipeline(Readable.from(chunks), upload);
    const objects = upload.objects;
    expect(objects.length).toBe(Math.ceil(9 * MiB / rawBytesPerPart(2 * MiB)));
    expect(objects.map((object) => object.part)).toEqual(objects.map((_object, index) => index + 1));
    expect(objects[0]!.key).toBe(`backups/20261130T010000Z/${partName('base', 1, codec)}`);
    expect(objects[1]!.name).toBe(partName('base', 2, codec));
    for (const object of objects) {
      const stored = await repo.stat(object.key);
      expect(stored?.sizeBytes).toBe(object.sizeBytes);
      expect(object.sizeBytes).toBeLessThanOrEqual(2 * MiB);
    }
    const original = Buffer.concat(chunks);
    const back = await readBack(objects);
    expect(createHash('sha256').update(back).digest('hex')).toBe(createHash('sha256').update(original).digest('hex'));
  });
});

describe('reading pieces back', () => {
  async function stored(): Promise<PartedUpload['objects']> {
    const upload = new PartedUpload({repo, backupId: '20261130T020000Z', tar: 'base', compression: {codec: 'gzip', level: 1}, maxObjectBytes: MiB});
    await pipeline(Readable.from(data(4 * MiB)), upload);
    expect(upload.objects.length).toBeGreaterThan(3);
    return upload.objects;
  }

  it('refuses a damaged piece, naming it', async () => {
    const objects = await stored();
    const victim = objects[2]!;
    const bytes = Buffer.from(await (await import('node:stream/consumers')).buffer(await repo.get(victim.key)));
    bytes[100] ^= 0xff;
    await repo.put(victim.key, bytes);
    const error = await readBack(objects).catch((caught: Error) => caught);
    expect(error).toBeInstanceOf(CorruptObjectError);
    expect((error as Error).message).toContain(victim.key);
  });

  it('fetches a piece again when its connection broke while it waited for its turn', async () => {
    const upload = new PartedUpload({repo, backupId: '20261130T040000Z', tar: 'base', compression: {codec: 'gzip', level: 1}, maxObjectBytes: MiB});
    const chunks = data(4 * MiB);
    await pipeline(Readable.from(chunks), upload);
    const victim = upload.objects[2]!.key;
    let broken = 0;
    // The local driver, with the first read of the third piece (opened ahead) cut by a reset.
    const flaky = Object.create(repo) as LocalRepository;
    flaky.get = async (key: string) => {
      if (key === victim && broken++ === 0) {
        return new Readable({read() { this.destroy(Object.assign(new Error('read ECONNRESET'), {code: 'ECONNRESET'})); }});
      }
      return repo.get(key);
    };
    const out: Buffer[] = [];
    for await (const chunk of concatenatedParts(flaky, upload.objects, {concurrency: 3})) out.push(chunk);
    expect(broken).toBe(2);
    expect(Buffer.concat(out).equals(Buffer.concat(chunks))).toBe(true);
  });

  it('refuses a missing piece, naming it', async () => {
    const objects = await stored();
    await repo.remove([objects[3]!.key]);
    const error = await readBack(objects).catch((caught: Error) => caught);
    expect(error).toBeInstanceOf(ObjectNotFoundError);
    expect((error as Error).message).toContain(objects[3]!.key);
  });

  it('a failed upload leaves its keys listed for removal', async () => {
    const upload = new PartedUpload({repo, backupId: '20261130T030000Z', tar: 'base', compression: {codec: 'none', level: 0}, maxObjectBytes: MiB});
    async function* failing() {
      for (const chunk of data(3 * MiB)) yield chunk;
      await new Promise((resolve) => setTimeout(resolve, 50)); // pieces finished meanwhile: they must go too
      throw new Error('pg_basebackup died');
    }
    await expect(pipeline(failing(), upload)).rejects.toThrow(/pg_basebackup died/);
    // As the backup does: let every upload finish failing or landing, then remove what was started.
    await new Promise((resolve) => (upload.closed ? resolve(undefined) : upload.once('close', resolve)));
    expect(upload.keys.length).toBeGreaterThanOrEqual(1);
    await repo.remove(upload.keys);
    const left: string[] = [];
    for await (const object of repo.list('backups/20261130T030000Z/')) left.push(object.key);
    expect(left).toEqual([]);
  });
});

describe('tarsOf', () => {
  const piece = (part: number | undefined, tar?: string) => ({name: `p${part}`, key: `backups/X/p${part}`, sizeBytes: 1, sha256: 'a'.repeat(64), compression: 'zstd' as const, ...(tar ? {tar} : {}), ...(part ? {part} : {})});
  const manifest = (objects: ReturnType<typeof piece>[]) => ({id: 'X', objects} as unknown as Parameters<typeof tarsOf>[0]);

  it('groups pieces by tar in order; a backup from before pieces is one object of base', () => {
    expect([...tarsOf(manifest([piece(undefined)])).keys()]).toEqual(['base']);
    const tars = tarsOf(manifest([piece(1, 'base'), piece(2, 'base'), piece(1, '16384')]));
    expect(tars.get('base')!.map((object) => object.part)).toEqual([1, 2]);
    expect(tars.get('16384')!.map((object) => object.part)).toEqual([1]);
  });

  it('refuses a manifest whose pieces skip, repeat or reorder', () => {
    expect(() => tarsOf(manifest([piece(1, 'base'), piece(3, 'base')]))).toThrow(/lists the pieces of base\.tar out of order \(backups\/X\/p3 as piece 2\)/);
    expect(() => tarsOf(manifest([piece(2, 'base'), piece(1, 'base')]))).toThrow(CorruptObjectError);
    expect(() => tarsOf(manifest([piece(undefined), piece(undefined)]))).toThrow(/out of order/);
  });
});
