// The long page header at the start of every WAL segment (XLogLongPageHeaderData, access/xlog_internal.h):
// it names the database system the segment belongs to, without a connection to the server.
//
//   offset  0  uint16 xlp_magic        WAL format of the major version
//           2  uint16 xlp_info         XLP_LONG_HEADER (0x0002) on a segment's first page
//           4  uint32 xlp_tli          timeline of the page
//           8  uint64 xlp_pageaddr     LSN of the page's start
//          16  uint32 xlp_rem_len
//          24  uint64 xlp_sysid        the database system identifier (pg_control_system())
//          32  uint32 xlp_seg_size     wal_segment_size
//          36  uint32 xlp_xlog_blcksz  WAL block size
// Little-endian on every platform PostgreSQL ships for that pgbk runs on (x86-64, arm64).

import {open} from 'node:fs/promises';
import {segmentStartLsn} from './name.js';

export const LONG_PAGE_HEADER_BYTES = 40;
const XLP_LONG_HEADER = 0x0002;

export interface WalPageHeader {
  magic: number;
  timeline: number;
  pageAddress: bigint;
  systemId: string;
  segmentSize: number;
  blockSize: number;
}

/** The long page header of a segment's first bytes, or undefined when they hold none (not WAL, or zeroed). */
export function parseLongPageHeader(head: Buffer): WalPageHeader | undefined {
  if (head.length < LONG_PAGE_HEADER_BYTES) return undefined;
  const info = head.readUInt16LE(2);
  if ((info & XLP_LONG_HEADER) === 0) return undefined;
  const segmentSize = head.readUInt32LE(32);
  const blockSize = head.readUInt32LE(36);
  // Both are powers of two in PostgreSQL's allowed ranges; anything else is not a page header.
  const powerOfTwo = (n: number) => n > 0 && (n & (n - 1)) === 0;
  if (!powerOfTwo(segmentSize) || segmentSize < 1024 * 1024 || !powerOfTwo(blockSize) || blockSize < 1024) return undefined;
  return {
    magic: head.readUInt16LE(0),
    timeline: head.readUInt32LE(4),
    pageAddress: head.readBigUInt64LE(8),
    systemId: head.readBigUInt64LE(24).toString(),
    segmentSize,
    blockSize,
  };
}

export interface SegmentOwner {
  systemId: string;
  walSegmentSize: number;
}

/**
 * Why the first bytes of WAL file `walFile` (a segment or a .partial) do not belong to `owner`, or undefined
 * when they do. Checks the system identifier, the segment size and that the page address is the segment's own.
 */
export function segmentMismatch(head: Buffer, walFile: string, owner: SegmentOwner): string | undefined {
  const header = parseLongPageHeader(head);
  if (!header) return `${walFile} does not start with a WAL long page header`;
  if (header.systemId !== owner.systemId) {
    return `${walFile} belongs to database system ${header.systemId}, the repository to ${owner.systemId}`;
  }
  if (header.segmentSize !== owner.walSegmentSize) {
    return `${walFile} has a WAL segment size of ${header.segmentSize} bytes, the repository's cluster ${owner.walSegmentSize}`;
  }
  const expected = segmentStartLsn(walFile.slice(0, 24), owner.walSegmentSize);
  if (header.pageAddress !== expected) {
    return `${walFile} holds the WAL of another position (page address ${header.pageAddress.toString(16).toUpperCase()}, expected ${expected.toString(16).toUpperCase()})`;
  }
  return undefined;
}

/** The first bytes of a WAL file on disk: enough for its long page header (fewer when the file is shorter). */
export async function readFileHead(path: string): Promise<Buffer> {
  const handle = await open(path, 'r');
  try {
    const head = Buffer.alloc(LONG_PAGE_HEADER_BYTES);
    const {bytesRead} = await handle.read(head, 0, head.length, 0);
    return head.subarray(0, bytesRead);
  } finally {
    await handle.close();
  }
}
