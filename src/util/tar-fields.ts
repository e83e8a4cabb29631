// A tar stream walked member by member, and the fields of a ustar header block: shared by the tar watcher (backup)
// and the extractor (restore). Chunks may split headers and data anywhere.

/** A NUL-terminated string field. */
export function cString(buffer: Buffer): string {
  const end = buffer.indexOf(0);
  return buffer.subarray(0, end < 0 ? buffer.length : end).toString('utf8');
}

/** A numeric field: octal, or GNU base-256 (sizes of 8 GiB and more). */
export function tarNumber(field: Buffer): number {
  if ((field[0]! & 0x80) !== 0) {
    let value = 0;
    for (let index = 1; index < field.length; index++) value = value * 256 + field[index]!;
    return value;
  }
  const text = cString(field).trim();
  return text ? Number.parseInt(text, 8) : 0;
}

const BLOCK = 512;

/** What a walk over a tar stream hands over, member by member. */
export interface TarMemberVisitor {
  /** A member's header block (not the end-of-archive marker): how many data bytes follow it. */
  header(block: Buffer): number;
  /** The next piece of the current member's data. */
  data(bytes: Buffer): void;
  /** The current member's data is complete (right after header() when it has none). */
  end(): void;
}

/** Walks a tar stream fed in chunks of any size: headers, data and the padding to 512-byte blocks. */
export class TarWalker {
  /** The end-of-archive marker (a zero block) was read: what follows it (record padding) is ignored. */
  ended = false;
  private pending: Buffer = Buffer.alloc(0);
  private remaining = 0;
  private padding = 0;

  constructor(private readonly visitor: TarMemberVisitor) {}

  /** True while the current member's data has not all arrived. */
  get inMember(): boolean {
    return this.remaining > 0;
  }

  feed(chunk: Buffer): void {
    let offset = 0;
    while (offset < chunk.length && !this.ended) {
      if (this.remaining > 0) {
        const take = Math.min(this.remaining, chunk.length - offset);
        this.visitor.data(chunk.subarray(offset, offset + take));
        this.remaining -= take;
        offset += take;
        if (this.remaining === 0) this.visitor.end();
        continue;
      }
      if (this.padding > 0) {
        const take = Math.min(this.padding, chunk.length - offset);
        this.padding -= take;
        offset += take;
        continue;
      }
      const take = Math.min(BLOCK - this.pending.length, chunk.length - offset);
      const piece = chunk.subarray(offset, offset + take);
      this.pending = this.pending.length === 0 && take === BLOCK ? piece : Buffer.concat([this.pending, piece]);
      offset += take;
      if (this.pending.length < BLOCK) continue;
      const block = this.pending;
      this.pending = Buffer.alloc(0);
      if (block.every((byte) => byte === 0)) {
        this.ended = true;
        continue;
      }
      const size = this.visitor.header(block);
      this.remaining = size;
      this.padding = (BLOCK - (size % BLOCK)) % BLOCK;
      if (size === 0) this.visitor.end();
    }
  }
}
