// Stream helpers: hash and count bytes on the way through, verify a checksum at the end.

import {createHash, type Hash} from 'node:crypto';
import {Transform, type TransformCallback} from 'node:stream';
import {CorruptObjectError} from '../errors.js';

/** Passes bytes through unchanged while hashing (SHA-256) and counting them. */
export class HashCounter extends Transform {
  private readonly hash: Hash = createHash('sha256');
  bytes = 0;
  private digestHex?: string;

  constructor(private readonly onProgress?: (bytes: number) => void) {
    super();
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.hash.update(chunk);
    this.bytes += chunk.length;
    this.onProgress?.(this.bytes);
    callback(null, chunk);
  }

  /** Hex SHA-256 of everything that passed; call once the stream has ended. */
  digest(): string {
    this.digestHex ??= this.hash.digest('hex');
    return this.digestHex;
  }
}

/**
 * Passes bytes through and fails the stream at its end when their SHA-256 differs from `expected`,
 * so a consumer writing to a temp file never renames a corrupt result into place.
 */
export class ChecksumVerifier extends Transform {
  private readonly hash = createHash('sha256');
  bytes = 0;

  /** `onMismatch` runs before the stream fails, e.g. to kill a consumer before it sees end-of-input. */
  constructor(private readonly expected: string, private readonly what: string, private readonly onMismatch?: () => void) {
    super();
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.hash.update(chunk);
    this.bytes += chunk.length;
    callback(null, chunk);
  }

  override _flush(callback: TransformCallback): void {
    const actual = this.hash.digest('hex');
    if (actual !== this.expected) {
      this.onMismatch?.();
      callback(new CorruptObjectError(
        `checksum mismatch for ${this.what}: expected sha256 ${this.expected}, got ${actual}`,
        'the stored object is corrupt; restore from another backup or re-archive the file from its source',
      ));
      return;
    }
    callback();
  }
}

export function sha256Hex(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}
