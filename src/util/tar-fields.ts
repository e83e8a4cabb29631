// Fields of a ustar header block, shared by the tar watcher (backup) and the extractor (restore).

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
