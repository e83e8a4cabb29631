// Log sequence numbers: parse and print PostgreSQL's "X/Y" notation, as 64-bit bigints.

export type Lsn = bigint;

const LSN_RE = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/;

export function isLsn(text: string): boolean {
  return LSN_RE.test(text);
}

/** Parses "16/B374D848"; returns undefined when the text is not an LSN. */
export function parseLsn(text: string): Lsn | undefined {
  const match = LSN_RE.exec(text.trim());
  if (!match) return undefined;
  return (BigInt(`0x${match[1]}`) << 32n) | BigInt(`0x${match[2]}`);
}

export function formatLsn(lsn: Lsn): string {
  return `${(lsn >> 32n).toString(16).toUpperCase()}/${(lsn & 0xffffffffn).toString(16).toUpperCase()}`;
}
