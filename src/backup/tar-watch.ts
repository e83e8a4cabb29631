// Watches a tar stream as it passes (pg_basebackup -Ft output) and keeps the few small files pgbk needs to read:
// backup_label (start LSN, timeline, start time) and the end of backup_manifest (WAL-Ranges). Chunks may split
// headers and files anywhere.

import {Transform, type TransformCallback} from 'node:stream';
import {cString, tarNumber, TarWalker} from '../util/tar-fields.js';

const EMPTY = Buffer.alloc(0);

export interface WatchedFile {
  name: string;
  sizeBytes: number;
  /** The file's content, or its last `keepBytes` when larger. */
  content: Buffer;
}

export class TarWatcher extends Transform {
  readonly files = new Map<string, WatchedFile>();
  /** `chunks` from index `head` on are kept (dropping by index: Array.shift is linear, quadratic with small chunks). */
  private current?: {name: string; sizeBytes: number; chunks: Buffer[]; head: number; kept: number};
  private readonly walker = new TarWalker({
    header: (block) => this.startEntry(block),
    data: (bytes) => this.collect(bytes),
    end: () => this.finishEntry(),
  });
  /** Bytes that passed through (the uncompressed size of the archive). */
  bytes = 0;

  constructor(private readonly wanted: Set<string>, private readonly keepBytes = 256 * 1024) {
    super();
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.bytes += chunk.length;
    try {
      this.walker.feed(chunk);
    } catch (error) {
      callback(error as Error);
      return;
    }
    callback(null, chunk);
  }

  /** A member's header: its data is kept when it is one of the wanted files. */
  private startEntry(block: Buffer): number {
    const name = cString(block.subarray(0, 100));
    const prefix = cString(block.subarray(345, 500));
    const fullName = prefix ? `${prefix}/${name}` : name;
    const sizeBytes = tarNumber(block.subarray(124, 136));
    this.current = this.wanted.has(fullName) ? {name: fullName, sizeBytes, chunks: [], head: 0, kept: 0} : undefined;
    return sizeBytes;
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


