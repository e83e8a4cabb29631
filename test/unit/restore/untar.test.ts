import {existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync, statSync} from 'node:fs';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import {Readable} from 'node:stream';
import {pipeline} from 'node:stream/promises';
import {afterEach, beforeEach, describe, expect, it} from 'vitest';
import {CorruptObjectError} from '../../../src/errors.js';
import {TarExtractor} from '../../../src/restore/untar.js';
import {tarMember, tarOf, type CraftedMember} from '../../helpers/tar.js';

let base: string;
let root: string;
beforeEach(() => {
  base = mkdtempSync(join(tmpdir(), 'pgbk-untar-'));
  root = join(base, 'data');
  mkdirSync(root);
});
afterEach(() => rmSync(base, {recursive: true, force: true}));

/** Unpacks `archive` fed in chunks of `chunk` bytes (headers and data split anywhere). */
async function unpack(archive: Buffer, chunk = 65536, options: {symlinkTarget?: (name: string, link: string) => string; tablespace?: boolean} = {}): Promise<TarExtractor> {
  const chunks: Buffer[] = [];
  for (let offset = 0; offset < archive.length; offset += chunk) chunks.push(archive.subarray(offset, offset + chunk));
  const extractor = new TarExtractor({root, what: 'backup T', ...options});
  await pipeline(Readable.from(chunks), extractor);
  return extractor;
}

const honest: CraftedMember[] = [
  {name: 'PG_VERSION', data: '15\n'},
  {name: 'base/', type: '5'},
  {name: 'base/1/', type: '5'},
  {name: 'base/1/1259', data: Buffer.alloc(20_000, 7)},
  {name: 'global/pg_control', data: 'control'},
  {name: 'pg_tblspc/', type: '5'},
  {name: 'pg_tblspc/16384', type: '2', linkname: '/srv/ts1'},
  {name: 'empty', data: ''},
];

describe('TarExtractor', () => {
  it.each([1, 7, 512, 100_000])('unpacks a plain archive fed in %i-byte chunks', async (chunk) => {
    const extractor = await unpack(tarOf(honest), chunk);
    expect(extractor.members).toBe(honest.length);
    expect(readFileSync(join(root, 'PG_VERSION'), 'utf8')).toBe('15\n');
    expect(readFileSync(join(root, 'base/1/1259'))).toEqual(Buffer.alloc(20_000, 7));
    expect(readFileSync(join(root, 'global/pg_control'), 'utf8')).toBe('control');
    expect(readFileSync(join(root, 'empty'), 'utf8')).toBe('');
    expect(readlinkSync(join(root, 'pg_tblspc/16384'))).toBe('/srv/ts1');
    expect(statSync(join(root, 'base/1/1259')).mode & 0o7777).toBe(0o600);
  });

  it('redirects a tablespace symlink where asked', async () => {
    await unpack(tarOf(honest), 65536, {symlinkTarget: (name, link) => (name === 'pg_tblspc/16384' ? `/new${link}` : link)});
    expect(readlinkSync(join(root, 'pg_tblspc/16384'))).toBe('/new/srv/ts1');
  });

  it('drops setuid, setgid and sticky bits', async () => {
    const extractor = await unpack(tarOf([{name: 'suid', mode: 0o4755, data: '#!/bin/sh\n'}, {name: 'sgid', mode: 0o2750, data: 'x'}, {name: 'tmp', type: '5', mode: 0o1777}]));
    expect(statSync(join(root, 'suid')).mode & 0o7777).toBe(0o755);
    expect(statSync(join(root, 'sgid')).mode & 0o7777).toBe(0o750);
    expect(statSync(join(root, 'tmp')).mode & 0o7777).toBe(0o777);
    expect(extractor.strippedModes).toBe(3);
  });

  it.each([
    ['a ../ name', {name: '../escape', data: 'x'}, /tar member "\.\.\/escape" climbs out of the target/],
    ['a ../ name deeper down', {name: 'base/../../escape', data: 'x'}, /climbs out of the target/],
    ['an absolute name', {name: '/tmp/pgbk-untar-absolute', data: 'x'}, /has an absolute name/],
    ['a symlink outside pg_tblspc', {name: 'base/evil', type: '2', linkname: '/etc'}, /is a symlink \(to "\/etc"\); PostgreSQL puts symlinks only at pg_tblspc\/<oid> and pg_wal/],
    ['a character device', {name: 'dev', type: '3'}, /is of tar type "3" \(character device\)/],
    ['a fifo', {name: 'fifo', type: '6'}, /is of tar type "6" \(fifo\)/],
    ['a hard link', {name: 'hard', type: '1', linkname: 'PG_VERSION'}, /is of tar type "1" \(hard link\)/],
    ['a pax header', {name: 'pax', type: 'x', data: '30 path=../../etc/passwd\n'}, /pax header/],
  ] as Array<[string, CraftedMember, RegExp]>)('refuses %s, writing nothing outside', async (_what, member, message) => {
    const error = await unpack(Buffer.concat([tarMember({name: 'PG_VERSION', data: '15\n'}), tarOf([member])])).catch((caught: Error) => caught);
    expect(error).toBeInstanceOf(CorruptObjectError);
    expect((error as Error).message).toMatch(message);
    expect(existsSync(join(base, 'escape'))).toBe(false);
    expect(existsSync('/tmp/pgbk-untar-absolute')).toBe(false);
    for (const name of ['dev', 'fifo', 'hard', 'base/evil']) expect(existsSync(join(root, name))).toBe(false);
  });

  it('never writes through a symlink the archive made', async () => {
    const outside = join(base, 'outside');
    mkdirSync(outside);
    const archive = tarOf([{name: 'pg_tblspc/16384', type: '2', linkname: outside}, {name: 'pg_tblspc/16384/PG_15/evil', data: 'x'}]);
    await expect(unpack(archive)).rejects.toThrow(/tar member "pg_tblspc\/16384\/PG_15\/evil" lies under the symlink pg_tblspc\/16384/);
    expect(existsSync(join(outside, 'PG_15'))).toBe(false);
    expect(lstatSync(join(root, 'pg_tblspc/16384')).isSymbolicLink()).toBe(true);
  });

  it('refuses a truncated archive and a damaged header', async () => {
    const archive = tarOf(honest);
    await expect(unpack(archive.subarray(0, 2048 + 700))).rejects.toThrow(/backup T is not a valid tar archive: it ends inside member "base\/1\/1259"/);
    await expect(unpack(archive.subarray(0, archive.length - 1024))).rejects.toThrow(/ends before the end-of-archive marker/);
    const damaged = Buffer.from(archive);
    damaged[5] ^= 0x01;
    await expect(unpack(damaged)).rejects.toThrow(/backup T is not a valid tar archive: a header's checksum/);
  });

  it('a tablespace tar: members only in the version directory PG_<major>_<catalog version>', async () => {
    await unpack(tarOf([{name: 'PG_15_202209061/', type: '5'}, {name: 'PG_15_202209061/5/16390', data: 'heap'}]), 65536, {tablespace: true});
    expect(readFileSync(join(root, 'PG_15_202209061', '5', '16390'), 'utf8')).toBe('heap');
    rmSync(root, {recursive: true});
    mkdirSync(root);
    for (const name of ['authorized_keys', 'pg_wal/x', 'PG_15/x']) {
      await expect(unpack(tarOf([{name, data: 'x'}]), 65536, {tablespace: true})).rejects.toThrow(`tar member "${name}" lies outside PostgreSQL's version directory`);
      expect(existsSync(join(root, name.split('/')[0]!))).toBe(false);
    }
  });
});
