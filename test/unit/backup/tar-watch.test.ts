import {execFileSync} from 'node:child_process';
import {mkdtempSync, mkdirSync, rmSync, writeFileSync} from 'node:fs';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import {Readable, Writable} from 'node:stream';
import {pipeline} from 'node:stream/promises';
import {afterAll, beforeAll, describe, expect, it} from 'vitest';
import {parseManifestWalRanges} from '../../../src/backup/label.js';
import {TarWatcher} from '../../../src/backup/tar-watch.js';

const LABEL = 'START WAL LOCATION: 0/3000028 (file 000000010000000000000003)\n'
  + 'CHECKPOINT LOCATION: 0/3000060\nBACKUP METHOD: streamed\nBACKUP FROM: primary\n'
  + 'START TIME: 2026-11-26 13:02:59 UTC\nLABEL: test\nSTART TIMELINE: 1\n';
const KEEP = 64 * 1024;
const DEEP_DIR = `pg_tblspc/${'d'.repeat(60)}/PG_16_202307071/${'e'.repeat(30)}`;
const DEEP_FILE = `${DEEP_DIR}/deep_file_name`;

/** A deterministic PRNG (mulberry32), so failures reproduce. */
function prng(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function manifestText(): string {
  const lines = ['{ "PostgreSQL-Backup-Manifest-Version": 1,', '"Files": ['];
  for (let index = 0; lines.join('\n').length < 600 * 1024; index++) {
    lines.push(`{ "Path": "base/5/${16384 + index}", "Size": ${8192 * (index % 7)}, "Last-Modified": "2026-11-26 13:02:5${index % 10} GMT", "Checksum-Algorithm": "CRC32C", "Checksum": "${(index * 2654435761 >>> 0).toString(16).padStart(8, '0')}" },`);
  }
  lines.push('{ "Path": "global/pg_control", "Size": 8192, "Last-Modified": "2026-11-26 13:02:59 GMT", "Checksum-Algorithm": "CRC32C", "Checksum": "0badc0de" }');
  lines.push('],', '"WAL-Ranges": [', '{ "Timeline": 1, "Start-LSN": "0/3000028", "End-LSN": "0/3000100" }', '],');
  lines.push('"Manifest-Checksum": "5a6b1e7c0b4b8fd1e6b1a0a1cbd7a9f6b0e4f1c2d3a4b5c6d7e8f90123456789"}');
  return `${lines.join('\n')}\n`;
}

let dir: string;
const MANIFEST = Buffer.from(manifestText());
const tars = new Map<string, Buffer>();

function buildTar(format: 'gnu' | 'ustar' | 'posix', entries: string[]): Buffer {
  return execFileSync('tar', ['--create', '--file', '-', `--format=${format}`, '--owner=0', '--group=0', '--numeric-owner', '-C', dir, ...entries], {
    maxBuffer: 64 * 1024 * 1024,
  });
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'pgbk-unit-tar-'));
  const random = prng(42);
  const bytes = (size: number) => Buffer.from(Array.from({length: size}, () => Math.floor(random() * 256)));
  mkdirSync(join(dir, 'base', '5'), {recursive: true});
  mkdirSync(join(dir, 'global'));
  mkdirSync(join(dir, DEEP_DIR), {recursive: true});
  writeFileSync(join(dir, 'PG_VERSION'), '16\n');
  writeFileSync(join(dir, 'backup_label'), LABEL);
  writeFileSync(join(dir, 'tablespace_map'), '');
  writeFileSync(join(dir, 'base', '5', '1259'), bytes(3 * 8192));
  writeFileSync(join(dir, 'base', '5', '16384'), bytes(1000)); // not a multiple of 512
  writeFileSync(join(dir, 'global', 'pg_control'), bytes(8192));
  writeFileSync(join(dir, 'global', 'backup_label'), 'not the top-level one\n');
  writeFileSync(join(dir, DEEP_FILE), 'deep\n');
  writeFileSync(join(dir, 'backup_manifest'), MANIFEST);
  // pg_basebackup writes backup_label first and backup_manifest last; the label also appears after other files here.
  tars.set('gnu', buildTar('gnu', ['PG_VERSION', 'backup_label', 'tablespace_map', 'base', 'global', 'backup_manifest']));
  tars.set('ustar', buildTar('ustar', ['base', 'backup_label', DEEP_FILE, 'global', 'tablespace_map', 'backup_manifest', 'PG_VERSION']));
  tars.set('posix', buildTar('posix', ['backup_label', 'base', 'global', 'backup_manifest']));
});

afterAll(() => {
  rmSync(dir, {recursive: true, force: true});
});

function splitFixed(data: Buffer, size: number, first = size): Buffer[] {
  const parts: Buffer[] = [data.subarray(0, first)];
  for (let offset = first; offset < data.length; offset += size) parts.push(data.subarray(offset, offset + size));
  return parts;
}

function splitRandom(data: Buffer, seed: number, max: number): Buffer[] {
  const random = prng(seed);
  const parts: Buffer[] = [];
  for (let offset = 0; offset < data.length;) {
    const size = 1 + Math.floor(random() * max);
    parts.push(data.subarray(offset, offset + size));
    offset += size;
  }
  return parts;
}

async function watch(chunks: Buffer[], wanted: string[], keepBytes = KEEP): Promise<{watcher: TarWatcher; output: Buffer}> {
  const watcher = new TarWatcher(new Set(wanted), keepBytes);
  const received: Buffer[] = [];
  const sink = new Writable({write(chunk: Buffer, _encoding, callback) { received.push(chunk); callback(); }});
  await pipeline(Readable.from(chunks, {objectMode: false}), watcher, sink);
  return {watcher, output: Buffer.concat(received)};
}

const SPLITS: Array<[string, (data: Buffer) => Buffer[]]> = [
  ['whole', (data) => [data]],
  ['1 byte', (data) => splitFixed(data, 1)],
  ['511 bytes', (data) => splitFixed(data, 511)],
  ['512 bytes', (data) => splitFixed(data, 512)],
  ['513 bytes', (data) => splitFixed(data, 513)],
  ['7919 bytes', (data) => splitFixed(data, 7919)],
  ['64 KiB', (data) => splitFixed(data, 65536)],
  ['100 bytes then 512', (data) => splitFixed(data, 512, 100)],
  ['1 byte then 4096', (data) => splitFixed(data, 4096, 1)],
  ['600 bytes then 1024', (data) => splitFixed(data, 1024, 600)],
  ['random up to 16', (data) => splitRandom(data, 1, 16)],
  ['random up to 1000', (data) => splitRandom(data, 2, 1000)],
  ['random up to 10000', (data) => splitRandom(data, 3, 10000)],
  ['random up to 100000', (data) => splitRandom(data, 4, 100000)],
];

describe.each(['gnu', 'ustar', 'posix'])('TarWatcher on a %s tar from the system tar', (format) => {
  it.each(SPLITS)('split: %s', {timeout: 60_000}, async (_what, split) => {
    const tar = tars.get(format)!;
    const chunks = split(tar);
    expect(Buffer.concat(chunks).equals(tar)).toBe(true);
    const maxChunk = chunks.reduce((max, chunk) => Math.max(max, chunk.length), 0);
    const wanted = ['backup_label', 'backup_manifest', 'tablespace_map', 'no_such_file', DEEP_FILE];
    const {watcher, output} = await watch(chunks, wanted);

    expect(output.equals(tar)).toBe(true);
    expect(watcher.bytes).toBe(tar.length);

    const label = watcher.files.get('backup_label')!;
    expect(label).toBeDefined();
    expect(label.name).toBe('backup_label');
    expect(label.sizeBytes).toBe(LABEL.length);
    expect(label.content.toString()).toBe(LABEL);

    const manifest = watcher.files.get('backup_manifest')!;
    expect(manifest.sizeBytes).toBe(MANIFEST.length);
    expect(manifest.content.length).toBeGreaterThanOrEqual(KEEP);
    expect(manifest.content.length).toBeLessThan(Math.max(KEEP + maxChunk, KEEP + 1));
    // with chunks smaller than the file, only its tail is kept
    if (maxChunk < MANIFEST.length - KEEP) expect(manifest.content.length).toBeLessThan(MANIFEST.length);
    if (maxChunk === 1) expect(manifest.content.length).toBe(KEEP);
    // the kept bytes are exactly the end of the file
    expect(manifest.content.equals(MANIFEST.subarray(MANIFEST.length - manifest.content.length))).toBe(true);
    expect(parseManifestWalRanges(manifest.content.toString())).toEqual([{timeline: 1, startLsn: 0x3000028n, endLsn: 0x3000100n}]);

    expect(watcher.files.has('no_such_file')).toBe(false);
    expect(watcher.files.has('global/pg_control')).toBe(false);
    // only the top-level backup_label, not global/backup_label
    expect([...watcher.files.keys()].filter((name) => name.endsWith('backup_label'))).toEqual(['backup_label']);
    if (format !== 'posix') {
      expect(watcher.files.get('tablespace_map')).toEqual({name: 'tablespace_map', sizeBytes: 0, content: Buffer.alloc(0)});
    }
    if (format === 'ustar') {
      // a path longer than 100 characters is split into the ustar prefix and name fields
      expect(DEEP_FILE.length).toBeGreaterThan(100);
      expect(watcher.files.get(DEEP_FILE)?.content.toString()).toBe('deep\n');
    }
  });
});

describe('TarWatcher', () => {
  it('keeps a whole file smaller than keepBytes, and nothing of unwatched files', async () => {
    const tar = tars.get('ustar')!;
    const {watcher} = await watch(splitFixed(tar, 777), ['backup_manifest', 'base/5/16384'], 1024 * 1024);
    expect(watcher.files.get('backup_manifest')!.content.equals(MANIFEST)).toBe(true);
    expect(watcher.files.get('base/5/16384')!.sizeBytes).toBe(1000);
    expect(watcher.files.get('base/5/16384')!.content.length).toBe(1000);
    expect(watcher.files.size).toBe(2);
  });

  it('passes bytes after the end-of-archive marker through untouched', async () => {
    const tar = tars.get('gnu')!;
    const trailer = Buffer.from('trailing garbage that is not a tar header'.repeat(20));
    const input = Buffer.concat([tar, trailer]);
    const {watcher, output} = await watch(splitFixed(input, 1000), ['backup_label']);
    expect(output.equals(input)).toBe(true);
    expect(watcher.bytes).toBe(input.length);
    expect(watcher.files.get('backup_label')!.content.toString()).toBe(LABEL);
  });

  it('reads a GNU base-256 size field', async () => {
    // a hand-made header claiming 1000 bytes in base-256, followed by the data and the end marker
    const header = Buffer.alloc(512);
    header.write('big_file', 0);
    header[124] = 0x80;
    header.writeUInt16BE(1000, 134);
    header.write('0', 156);
    const data = Buffer.alloc(1000, 7);
    const input = Buffer.concat([header, data, Buffer.alloc(24), Buffer.alloc(1024)]);
    const {watcher} = await watch(splitFixed(input, 300), ['big_file']);
    expect(watcher.files.get('big_file')).toEqual({name: 'big_file', sizeBytes: 1000, content: data});
  });
});
