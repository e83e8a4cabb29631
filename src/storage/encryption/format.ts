// The encrypted object format (client-side encryption, see README "Encryption"): every object is a 48-byte header
// and the body cut into chunks of 256 KiB, each sealed with AES-256-GCM.
//
//   header  = "PGBKENC" 0x01 | key id (8 bytes) | object salt (32 random bytes)
//   chunk i = AES-256-GCM(objectKey, nonce = i as 12 bytes big-endian, aad = header | i (8 bytes) | final (1 byte) | object key utf-8)
//             → ciphertext (≤ 256 KiB) | tag (16 bytes)
//
// The object's own AES key is HKDF-SHA256(data key, object salt): random per object, so a nonce (the chunk index)
// is never reused under one key. The chunk index and the final-chunk flag in the AAD make reordering, dropping or
// appending chunks fail authentication; the object key in the AAD makes an object moved (or copied) to another
// key fail. An empty body is one empty final chunk. Sizes are deterministic: see cipherSize()/plainSize().

import {createCipheriv, createDecipheriv, createHash, hkdfSync, randomBytes, type Hash} from 'node:crypto';
import {Transform, type TransformCallback} from 'node:stream';
import {CorruptObjectError} from '../../errors.js';

export const MAGIC = Buffer.from('PGBKENC\x01', 'latin1');
export const HEADER_BYTES = 48;
export const CHUNK_BYTES = 256 * 1024;
export const TAG_BYTES = 16;
const SEALED_CHUNK = CHUNK_BYTES + TAG_BYTES;

/** Resolves a key id (from an object's header) to its 32-byte data key, or undefined when no key given has it. */
export type KeyLookup = (keyId: Buffer) => Promise<Buffer | undefined> | Buffer | undefined;

export function cipherSize(plainBytes: number): number {
  const chunks = Math.max(1, Math.ceil(plainBytes / CHUNK_BYTES));
  return HEADER_BYTES + plainBytes + chunks * TAG_BYTES;
}

/** The body size of an encrypted object of `cipherBytes`, or undefined when no encrypted object has that size. */
export function plainSize(cipherBytes: number): number | undefined {
  if (cipherBytes < HEADER_BYTES + TAG_BYTES) return undefined;
  const chunks = Math.ceil((cipherBytes - HEADER_BYTES) / SEALED_CHUNK);
  return cipherBytes - HEADER_BYTES - chunks * TAG_BYTES;
}

function objectKeyOf(dataKey: Buffer, salt: Buffer): Buffer {
  return Buffer.from(hkdfSync('sha256', dataKey, salt, 'pgbk object key v1', 32));
}

function nonceOf(index: number): Buffer {
  const nonce = Buffer.alloc(12);
  nonce.writeBigUInt64BE(BigInt(index), 4);
  return nonce;
}

function aadOf(header: Buffer, index: number, final: boolean, key: string): Buffer {
  const position = Buffer.alloc(9);
  position.writeBigUInt64BE(BigInt(index), 0);
  position[8] = final ? 1 : 0;
  return Buffer.concat([header, position, Buffer.from(key, 'utf8')]);
}

function sealChunk(objectKey: Buffer, header: Buffer, index: number, final: boolean, key: string, plain: Buffer): Buffer {
  const cipher = createCipheriv('aes-256-gcm', objectKey, nonceOf(index));
  cipher.setAAD(aadOf(header, index, final, key));
  const body = cipher.update(plain);
  cipher.final();
  return Buffer.concat([body, cipher.getAuthTag()]);
}

function openChunk(objectKey: Buffer, header: Buffer, index: number, final: boolean, key: string, sealed: Buffer): Buffer | undefined {
  const decipher = createDecipheriv('aes-256-gcm', objectKey, nonceOf(index));
  decipher.setAAD(aadOf(header, index, final, key));
  decipher.setAuthTag(sealed.subarray(sealed.length - TAG_BYTES));
  const body = decipher.update(sealed.subarray(0, sealed.length - TAG_BYTES));
  try {
    decipher.final();
  } catch {
    return undefined;
  }
  return body;
}

function newHeader(keyId: Buffer): Buffer {
  return Buffer.concat([MAGIC, keyId, randomBytes(32)]);
}

/** Encrypts a whole body (small objects). */
export function encryptBuffer(dataKey: Buffer, keyId: Buffer, key: string, plain: Buffer): Buffer {
  const header = newHeader(keyId);
  const objectKey = objectKeyOf(dataKey, header.subarray(16));
  const parts = [header];
  const chunks = Math.max(1, Math.ceil(plain.length / CHUNK_BYTES));
  for (let index = 0; index < chunks; index++) {
    parts.push(sealChunk(objectKey, header, index, index === chunks - 1, key, plain.subarray(index * CHUNK_BYTES, (index + 1) * CHUNK_BYTES)));
  }
  return Buffer.concat(parts);
}

function damaged(key: string, what: string): CorruptObjectError {
  return new CorruptObjectError(
    `${key} fails authentication: ${what}; it was altered, truncated or replaced in the repository (or written under a key that is not this one)`,
    'nothing read from it was used; restore the object from a copy, or rely on another backup',
  );
}

/** Reads a header: the object's data key (by its key id) and the object key derived from its salt. */
async function keysOfHeader(header: Buffer, key: string, lookup: KeyLookup): Promise<Buffer> {
  if (!header.subarray(0, 8).equals(MAGIC)) {
    throw new CorruptObjectError(
      `${key} is not an encrypted pgbk object (no PGBKENC header): it was written without encryption, or altered`,
      'an encrypted repository holds only encrypted objects; nothing read from it was used',
    );
  }
  const dataKey = await lookup(header.subarray(8, 16));
  if (!dataKey) {
    throw new CorruptObjectError(
      `${key} was encrypted under key ${header.subarray(8, 16).toString('hex')}, which is neither repository.encryption.key nor one of repository.encryption.old_keys`,
      'add the key it was written with to repository.encryption.old_keys',
    );
  }
  return objectKeyOf(dataKey, header.subarray(16, HEADER_BYTES));
}

/** Decrypts a whole object (small objects: manifests, markers, leases). */
export async function decryptBuffer(lookup: KeyLookup, key: string, sealed: Buffer): Promise<Buffer> {
  if (sealed.length < HEADER_BYTES + TAG_BYTES) {
    if (sealed.length >= 8 && !sealed.subarray(0, 8).equals(MAGIC)) await keysOfHeader(sealed.subarray(0, HEADER_BYTES), key, lookup);
    throw damaged(key, `only ${sealed.length} bytes, shorter than any encrypted object`);
  }
  const header = sealed.subarray(0, HEADER_BYTES);
  const objectKey = await keysOfHeader(header, key, lookup);
  const parts: Buffer[] = [];
  const chunks = Math.ceil((sealed.length - HEADER_BYTES) / SEALED_CHUNK);
  for (let index = 0; index < chunks; index++) {
    const start = HEADER_BYTES + index * SEALED_CHUNK;
    const piece = sealed.subarray(start, Math.min(sealed.length, start + SEALED_CHUNK));
    if (piece.length < TAG_BYTES) throw damaged(key, `chunk ${index} is cut short`);
    const plain = openChunk(objectKey, header, index, index === chunks - 1, key, piece);
    if (!plain) throw damaged(key, `chunk ${index} of ${chunks}`);
    parts.push(plain);
  }
  return Buffer.concat(parts);
}

/** Encrypts a stream chunk by chunk; `sha256` and `plainBytes` describe the body once the stream has ended. */
export class EncryptStream extends Transform {
  private readonly header: Buffer;
  private readonly objectKey: Buffer;
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private index = 0;
  private readonly hash: Hash = createHash('sha256');
  plainBytes = 0;
  sha256 = '';

  constructor(dataKey: Buffer, keyId: Buffer, private readonly key: string) {
    super();
    this.header = newHeader(keyId);
    this.objectKey = objectKeyOf(dataKey, this.header.subarray(16));
    this.push(this.header);
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.hash.update(chunk);
    this.plainBytes += chunk.length;
    this.pending.push(chunk);
    this.pendingBytes += chunk.length;
    // A chunk is sealed once more data follows it: only then is it known not to be the final one.
    if (this.pendingBytes > CHUNK_BYTES) {
      let all = Buffer.concat(this.pending);
      while (all.length > CHUNK_BYTES) {
        this.push(sealChunk(this.objectKey, this.header, this.index++, false, this.key, all.subarray(0, CHUNK_BYTES)));
        all = all.subarray(CHUNK_BYTES);
      }
      this.pending = [Buffer.from(all)];
      this.pendingBytes = all.length;
    }
    callback();
  }

  override _flush(callback: TransformCallback): void {
    this.push(sealChunk(this.objectKey, this.header, this.index++, true, this.key, Buffer.concat(this.pending)));
    this.pending = [];
    this.sha256 = this.hash.digest('hex');
    callback();
  }
}

/** Decrypts a stream; a chunk's plaintext is passed on only once its tag has been checked. */
export class DecryptStream extends Transform {
  private header?: Buffer;
  private objectKey?: Buffer;
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private index = 0;

  constructor(private readonly lookup: KeyLookup, private readonly key: string) {
    super();
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.pending.push(chunk);
    this.pendingBytes += chunk.length;
    this.drain(false).then(() => callback(), (error: Error) => callback(error));
  }

  override _flush(callback: TransformCallback): void {
    this.drain(true).then(() => callback(), (error: Error) => callback(error));
  }

  private async drain(ended: boolean): Promise<void> {
    if (this.header && !ended && this.pendingBytes <= SEALED_CHUNK) return;
    let all = this.pending.length === 1 ? this.pending[0]! : Buffer.concat(this.pending);
    if (!this.header) {
      if (all.length < HEADER_BYTES + TAG_BYTES && !ended) {
        this.pending = [all];
        return;
      }
      if (all.length < HEADER_BYTES + TAG_BYTES) {
        await keysOfHeader(Buffer.concat([all, Buffer.alloc(HEADER_BYTES)]).subarray(0, HEADER_BYTES), this.key, this.lookup);
        throw damaged(this.key, `only ${all.length} bytes, shorter than any encrypted object`);
      }
      this.header = Buffer.from(all.subarray(0, HEADER_BYTES));
      this.objectKey = await keysOfHeader(this.header, this.key, this.lookup);
      all = all.subarray(HEADER_BYTES);
    }
    while (all.length > SEALED_CHUNK || (ended && all.length > 0)) {
      const final = all.length <= SEALED_CHUNK;
      const piece = all.subarray(0, Math.min(all.length, SEALED_CHUNK));
      if (piece.length < TAG_BYTES) throw damaged(this.key, `chunk ${this.index} is cut short`);
      const plain = openChunk(this.objectKey!, this.header, this.index, final, this.key, piece);
      if (!plain) throw damaged(this.key, `chunk ${this.index}${final ? ' (the last)' : ''}`);
      this.index++;
      this.push(plain);
      all = all.subarray(piece.length);
    }
    if (ended && this.index === 0) throw damaged(this.key, 'it holds no chunk');
    this.pending = all.length > 0 ? [Buffer.from(all)] : [];
    this.pendingBytes = all.length;
  }
}
