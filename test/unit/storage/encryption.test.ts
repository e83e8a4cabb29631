import {createHash, randomBytes} from 'node:crypto';
import {mkdtemp, readFile, rm, writeFile} from 'node:fs/promises';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import {Readable} from 'node:stream';
import {buffer} from 'node:stream/consumers';
import {afterAll, beforeAll, describe, expect, it} from 'vitest';
import {CorruptObjectError, RepositoryIdentityError} from '../../../src/errors.js';
import {newIdentity, readIdentity, serializeIdentity} from '../../../src/identity/identity.js';
import {
  CHUNK_BYTES, DecryptStream, EncryptStream, HEADER_BYTES, TAG_BYTES, cipherSize, decryptBuffer, encryptBuffer, plainSize,
} from '../../../src/storage/encryption/format.js';
import {EncryptedRepository} from '../../../src/storage/encrypted-repository.js';
import {LocalRepository} from '../../../src/storage/local/local-repository.js';

const dataKey = randomBytes(32);
const keyId = randomBytes(8);
const lookup = (id: Buffer) => (id.equals(keyId) ? dataKey : undefined);
const sealedChunk = CHUNK_BYTES + TAG_BYTES;

async function decryptStreamed(sealed: Buffer, key: string, pieces = 7919): Promise<Buffer> {
  const parts: Buffer[] = [];
  for (let at = 0; at < sealed.length; at += pieces) parts.push(sealed.subarray(at, at + pieces));
  return buffer(Readable.from(parts).pipe(new DecryptStream(lookup, key)));
}

async function encryptStreamed(plain: Buffer, key: string): Promise<{sealed: Buffer; sha256: string; plainBytes: number}> {
  const encrypt = new EncryptStream(dataKey, keyId, key);
  const parts: Buffer[] = [];
  for (let at = 0; at < plain.length; at += 65_536) parts.push(plain.subarray(at, at + 65_536));
  const sealed = await buffer(Readable.from(parts).pipe(encrypt));
  return {sealed, sha256: encrypt.sha256, plainBytes: encrypt.plainBytes};
}

describe('encrypted object format', () => {
  const sizes = [0, 1, 1000, CHUNK_BYTES - 1, CHUNK_BYTES, CHUNK_BYTES + 1, 3 * CHUNK_BYTES, 3 * CHUNK_BYTES + 12345];

  it.each(sizes)('a body of %i bytes round-trips, whole and streamed, with the size predicted', async (size) => {
    const plain = randomBytes(size);
    const whole = encryptBuffer(dataKey, keyId, 'wal/x', plain);
    expect(whole.length).toBe(cipherSize(size));
    expect(plainSize(whole.length)).toBe(size);
    expect((await decryptBuffer(lookup, 'wal/x', whole)).equals(plain)).toBe(true);
    expect((await decryptStreamed(whole, 'wal/x')).equals(plain)).toBe(true);
    const streamed = await encryptStreamed(plain, 'wal/x');
    expect(streamed.sealed.length).toBe(cipherSize(size));
    expect(streamed.plainBytes).toBe(size);
    expect(streamed.sha256).toBe(createHash('sha256').update(plain).digest('hex'));
    expect((await decryptBuffer(lookup, 'wal/x', streamed.sealed)).equals(plain)).toBe(true);
  });

  it('decrypts whatever the pieces: one byte at a time, and piped straight from the encrypting stream', async () => {
    const plain = randomBytes(CHUNK_BYTES + 999);
    const sealed = encryptBuffer(dataKey, keyId, 'k', plain);
    expect((await decryptStreamed(sealed.subarray(0, 200), 'k', 1).catch((error: Error) => error))).toBeInstanceOf(CorruptObjectError);
    const small = encryptBuffer(dataKey, keyId, 'k', Buffer.from('tiny'));
    expect((await decryptStreamed(small, 'k', 1)).toString()).toBe('tiny');
    const piped = await buffer(Readable.from([plain]).pipe(new EncryptStream(dataKey, keyId, 'k')).pipe(new DecryptStream(lookup, 'k')));
    expect(piped.equals(plain)).toBe(true);
    const empty = await buffer(Readable.from([]).pipe(new EncryptStream(dataKey, keyId, 'k')).pipe(new DecryptStream(lookup, 'k')));
    expect(empty.length).toBe(0);
  });

  it('holds no plaintext and never repeats itself: two encryptions of one body differ', () => {
    const plain = Buffer.from('canary-row-text '.repeat(100));
    const a = encryptBuffer(dataKey, keyId, 'k', plain);
    const b = encryptBuffer(dataKey, keyId, 'k', plain);
    expect(a.includes(Buffer.from('canary'))).toBe(false);
    expect(a.subarray(HEADER_BYTES).equals(b.subarray(HEADER_BYTES))).toBe(false);
  });

  const plain = randomBytes(3 * CHUNK_BYTES + 100);
  const sealed = encryptBuffer(dataKey, keyId, 'base/b1/data.tar.zst', plain);

  async function refused(bytes: Buffer, key = 'base/b1/data.tar.zst'): Promise<void> {
    await expect(decryptBuffer(lookup, key, bytes)).rejects.toThrow(CorruptObjectError);
    await expect(decryptStreamed(bytes, key)).rejects.toThrow(CorruptObjectError);
  }

  it('refuses one flipped bit anywhere: header, a chunk, a tag', async () => {
    for (const at of [3, 10, 20, HEADER_BYTES, HEADER_BYTES + 5000, HEADER_BYTES + sealedChunk - 1, sealed.length - 1]) {
      const damaged = Buffer.from(sealed);
      damaged[at]! ^= 0x01;
      await refused(damaged);
    }
  });

  it('refuses truncation: at a chunk boundary, inside a chunk, down to the header', async () => {
    await refused(sealed.subarray(0, HEADER_BYTES + 2 * sealedChunk));
    await refused(sealed.subarray(0, HEADER_BYTES + sealedChunk));
    await refused(sealed.subarray(0, sealed.length - 1));
    await refused(sealed.subarray(0, HEADER_BYTES + 10));
    await refused(sealed.subarray(0, HEADER_BYTES));
    await refused(sealed.subarray(0, 20));
  });

  it('refuses chunks reordered, dropped or repeated, and bytes appended', async () => {
    const header = sealed.subarray(0, HEADER_BYTES);
    const chunk = (i: number) => sealed.subarray(HEADER_BYTES + i * sealedChunk, HEADER_BYTES + (i + 1) * sealedChunk);
    await refused(Buffer.concat([header, chunk(1), chunk(0), chunk(2), chunk(3)]));
    await refused(Buffer.concat([header, chunk(0), chunk(2), chunk(3)]));
    await refused(Buffer.concat([header, chunk(0), chunk(0), chunk(1), chunk(2), chunk(3)]));
    await refused(Buffer.concat([sealed, Buffer.from('x')]));
    await refused(Buffer.concat([sealed, chunk(3)]));
  });

  it('refuses an object moved to another key, or spliced from two objects', async () => {
    await refused(sealed, 'base/b2/data.tar.zst');
    const other = encryptBuffer(dataKey, keyId, 'base/b1/data.tar.zst', randomBytes(3 * CHUNK_BYTES + 100));
    await refused(Buffer.concat([sealed.subarray(0, HEADER_BYTES + sealedChunk), other.subarray(HEADER_BYTES + sealedChunk)]));
  });

  it('refuses under a wrong key, and names an unknown key id', async () => {
    const wrong = (id: Buffer) => (id.equals(keyId) ? randomBytes(32) : undefined);
    await expect(decryptBuffer(wrong, 'base/b1/data.tar.zst', sealed)).rejects.toThrow(/fails authentication/);
    await expect(decryptBuffer(() => undefined, 'base/b1/data.tar.zst', sealed)).rejects.toThrow(/neither repository.encryption.key nor one of/);
    await expect(decryptBuffer(lookup, 'x', Buffer.from('{"plain": "json manifest of some length here"}'))).rejects.toThrow(/not an encrypted pgbk object/);
  });
});

describe('EncryptedRepository over a local repository', () => {
  let dir: string;
  const identity = newIdentity({systemId: '7300000000000000001', pgVersionNum: 150000, walSegmentSize: 16 << 20}, 'init', new Date());
  const open = (key: string, oldKeys: string[] = []) => new EncryptedRepository(new LocalRepository(dir), {key, oldKeys});

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'pgbk-enc-'));
  });
  afterAll(async () => {
    await rm(dir, {recursive: true, force: true});
  });

  it('seals the identity, checks the key up front, authenticates the identity, rotates keys', async () => {
    const repo = open('correct horse battery staple');
    await repo.put('identity.json', serializeIdentity(identity));
    const stored = JSON.parse(await readFile(join(dir, 'identity.json'), 'utf8'));
    expect(stored.encryption.keyIds).toHaveLength(1);
    expect(JSON.stringify(stored)).not.toContain('correct horse');
    expect((await readIdentity(open('correct horse battery staple')))?.repositoryId).toBe(identity.repositoryId);

    const body = Buffer.from('manifest {"canary": "secret row"}');
    const put = await repo.put('backups/m.json', body);
    expect(put.sizeBytes).toBe(body.length);
    expect(put.sha256).toBe(createHash('sha256').update(body).digest('hex'));
    expect((await repo.stat('backups/m.json'))?.sizeBytes).toBe(body.length);
    expect((await readFile(join(dir, 'backups/m.json'))).includes(Buffer.from('canary'))).toBe(false);
    const streamed = await repo.put('base/big', Readable.from([randomBytes(CHUNK_BYTES + 5)]), {sizeBytes: CHUNK_BYTES + 5});
    expect(streamed.sizeBytes).toBe(CHUNK_BYTES + 5);
    const listed = [];
    for await (const object of repo.list('base/')) listed.push(object.sizeBytes);
    expect(listed).toEqual([CHUNK_BYTES + 5]);

    // A wrong key: refused at the identity, and by the first write.
    const wrong = open('not the right passphrase');
    await expect(readIdentity(wrong)).rejects.toThrow(RepositoryIdentityError);
    await expect(wrong.put('backups/n.json', Buffer.from('x'))).rejects.toThrow(/key check failed/);
    await expect(readFile(join(dir, 'backups/n.json'))).rejects.toThrow(/ENOENT/);
    // No key: refused.
    await expect(readIdentity(new LocalRepository(dir))).rejects.toThrow(/is encrypted, but the policy sets no repository.encryption.key/);

    // The identity altered (checksum recomputed, so only the MAC can tell): refused.
    const forged = {...stored, systemId: '7300000000000000002'};
    const {withChecksum} = await import('../../../src/identity/identity.js');
    await writeFile(join(dir, 'identity.json'), JSON.stringify(withChecksum(forged)));
    await expect(readIdentity(open('correct horse battery staple'))).rejects.toThrow(/fails authentication/);
    await writeFile(join(dir, 'identity.json'), JSON.stringify(stored));

    // Rotation: the new key adopted in the identity (as re-encrypt does), old objects read through old_keys.
    const rotating = open('a brand new passphrase', ['correct horse battery staple']);
    await expect(readIdentity(rotating)).rejects.toThrow(/not the key of/);
    await rotating.put('identity.json', Buffer.from(JSON.stringify(stored)));
    expect((await readIdentity(rotating))?.encryption?.keyIds).toHaveLength(2);
    expect((await rotating.getVersioned('backups/m.json')).body).toEqual(body);
    await rotating.put('backups/new.json', Buffer.from('new'));
    const newOnly = open('a brand new passphrase');
    expect((await newOnly.getVersioned('backups/new.json')).body.toString()).toBe('new');
    await expect(newOnly.getVersioned('backups/m.json')).rejects.toThrow(/neither repository.encryption.key nor one of repository.encryption.old_keys/);
    // The old key alone is refused now (the repository's key changed).
    await expect(readIdentity(open('correct horse battery staple'))).rejects.toThrow(/earlier key/);
  }, 30_000);
});
