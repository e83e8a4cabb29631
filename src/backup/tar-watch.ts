// Watches a tar stream as it passes (pg_basebackup -Ft output) and keeps the few small files pgbk needs to read:
// backup_label (start LSN, timeline, start time) and the end of backup_manifest (WAL-Ranges). Chunks may split
// headers and files anywhere.

import {Transform, type TransformCallback} from 'node:stream';
import {cString, tarNumber} from '../util/tar-fields.js';

const BLOCK = 512;
const EMPTY = Buffer.alloc(0);

export interface WatchedFile {
  name: string;
  sizeBytes: number;
  /** The file's content, or its last `keepBytes` when larger. */
  content: Buffer;
}

export class TarWatcher extends Transform {
  readonly files = new Map<string, WatchedFile>();
  private header = Buffer.alloc(0);
  /** Bytes of the current entry's data (plus padding) still to pass. */
  private remaining = 0;
  private padding = 0;
  /** `chunks` from index `head` on are kept (dropping by index: Array.shift is linear, quadratic with small chunks). */
  private current?: {name: string; sizeBytes: number; chunks: Buffer[]; head: number; kept: number};
  private ended = false;
  /** Bytes that passed through (the uncompressed size of the archive). */
  bytes = 0;

  constructor(private readonly wanted: Set<string>, private readonly keepBytes = 256 * 1024) {
    super();
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.bytes += chunk.length;
    try {
      this.consume(chunk);
    } catch (error) {
      callback(error as Error);
      return;
    }
    callback(null, chunk);
  }

  private consume(chunk: Buffer): void {
    let offset = 0;
    while (offset < chunk.length && !this.ended) {
      if (this.remaining > 0) {
        const take = Math.min(this.remaining, chunk.length - offset);
        this.collect(chunk.subarray(offset, offset + take));
        this.remaining -= take;
        offset += take;
        if (this.remaining === 0) this.finishEntry();
        continue;
      }
      if (this.padding > 0) {
        const take = Math.min(this.padding, chunk.length - offset);
        this.padding -= take;
        offset += take;
        continue;
      }
      const need = BLOCK - this.header.length;
      const take = Math.min(need, chunk.length - offset);
      this.header = Buffer.concat([this.header, chunk.subarray(offset, offset + take)]);
      offset += take;
      if (this.header.length === BLOCK) {
        this.startEntry(this.header);
        this.header = Buffer.alloc(0);
      }
    }
  }

  private startEntry(block: Buffer): void {
    if (block.every((byte) => byte === 0)) {
      this.ended = true; // end-of-archive marker
      return;
    }
    const name = cString(block.subarray(0, 100));
    const prefix = cString(block.subarray(345, 500));
    const fullName = prefix ? `${prefix}/${name}` : name;
    const sizeBytes = tarNumber(block.subarray(124, 136));
    this.remaining = sizeBytes;
    this.padding = (BLOCK - (sizeBytes % BLOCK)) % BLOCK;
    this.current = this.wanted.has(fullName) ? {name: fullName, sizeBytes, chunks: [], head: 0, kept: 0} : undefined;
    if (sizeBytes === 0) this.finishEntry();
  }

  private collect(data: Buffer): void {
    if (!this.current) return;
    const current = this.current;
    current.chunks.push(Buffer.from(data));
    current.kept += data.length;
    // Keep only the tail of large files (backup_manifest lists every file; its WAL-Ranges come last).
    while (current.kept - current.chunks[current.head]!.length >= this.keepBytes) {
      current.kept -= current.chunks[current.head]!.length;
      current.chunks[current.head++] = EMPTY;
    }
    if (current.head >= 1024 && current.head * 2 >= current.chunks.length) {
      current.chunks = current.chunks.slice(current.head);
      current.head = 0;
    }
  }

  private finishEntry(): void {
    if (this.current) {
      this.files.set(this.current.name, {name: this.current.name, sizeBytes: this.current.sizeBytes, content: Buffer.concat(this.current.chunks.slice(this.current.head))});
    }
    this.current = undefined;
  }
}


