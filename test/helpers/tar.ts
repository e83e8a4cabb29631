// Crafting tar members byte by byte (ustar), for tests that need archives no honest tool writes:
// setuid bits, `../` names, device files, symlinks where PostgreSQL never puts them.

export interface CraftedMember {
  name: string;
  /** Default 0o600 (files), 0o700 (directories). */
  mode?: number;
  /** '0' file (default), '2' symlink, '3' character device, '5' directory, '6' fifo, '1' hard link. */
  type?: string;
  data?: Buffer | string;
  linkname?: string;
}

function field(block: Buffer, offset: number, length: number, value: string): void {
  block.write(value, offset, length, 'utf8');
}

function octal(value: number, length: number): string {
  return `${value.toString(8).padStart(length - 1, '0')}\0`;
}

/** One member: a 512-byte ustar header, then the data padded to 512 bytes. */
export function tarMember(member: CraftedMember): Buffer {
  const type = member.type ?? '0';
  const data = Buffer.from(member.data ?? '');
  const header = Buffer.alloc(512);
  field(header, 0, 100, member.name);
  field(header, 100, 8, octal(member.mode ?? (type === '5' ? 0o700 : 0o600), 8));
  field(header, 108, 8, octal(process.getuid?.() ?? 0, 8));
  field(header, 116, 8, octal(process.getgid?.() ?? 0, 8));
  field(header, 124, 12, octal(type === '0' ? data.length : 0, 12));
  field(header, 136, 12, octal(Math.floor(Date.now() / 1000), 12));
  header.fill(0x20, 148, 156);
  header.write(type, 156, 1, 'latin1');
  field(header, 157, 100, member.linkname ?? '');
  field(header, 257, 6, 'ustar\0');
  field(header, 263, 2, '00');
  let sum = 0;
  for (const byte of header) sum += byte;
  field(header, 148, 8, `${sum.toString(8).padStart(6, '0')}\0 `);
  const padding = (512 - (data.length % 512)) % 512;
  return Buffer.concat([header, type === '0' ? data : Buffer.alloc(0), Buffer.alloc(type === '0' ? padding : 0)]);
}

/** The end-of-archive marker: two zero blocks. */
export function tarEnd(): Buffer {
  return Buffer.alloc(1024);
}

/** A whole archive of these members. */
export function tarOf(members: CraftedMember[]): Buffer {
  return Buffer.concat([...members.map(tarMember), tarEnd()]);
}

/** The archive without its end-of-archive marker (and what follows it), so members can be appended. */
export function withoutTarEnd(archive: Buffer): Buffer {
  let offset = 0;
  while (offset + 512 <= archive.length) {
    const header = archive.subarray(offset, offset + 512);
    if (header.every((byte) => byte === 0)) return archive.subarray(0, offset);
    const sizeText = header.subarray(124, 136).toString('latin1').replace(/\0.*$/s, '').trim();
    const size = sizeText ? Number.parseInt(sizeText, 8) : 0;
    const type = String.fromCharCode(header[156]!);
    const dataBytes = type === '0' || type === '\0' || type === '7' ? size : 0;
    offset += 512 + Math.ceil(dataBytes / 512) * 512;
  }
  throw new Error('no end-of-archive marker found');
}
