// Synthetic WAL files for archive tests: any bytes, behind a valid long page header of a given database system, so
// archive-push's identity check sees them as that cluster's segment.

import {execFileSync} from 'node:child_process';
import {join} from 'node:path';
import {pgBinDir} from './cluster.js';

export const SEGMENT_SIZE = 16 * 1024 * 1024;

/** `body` with its first 40 bytes replaced by the long page header of segment `walFile` of system `systemId`. */
export function withPageHeader(body: Buffer, walFile: string, systemId: string, segmentSize = SEGMENT_SIZE): Buffer {
  const out = Buffer.from(body);
  const perId = 0x100000000n / BigInt(segmentSize);
  const segno = BigInt(`0x${walFile.slice(8, 16)}`) * perId + BigInt(`0x${walFile.slice(16, 24)}`);
  out.writeUInt16LE(0xd110, 0); // xlp_magic (any: pgbk does not check the format version)
  out.writeUInt16LE(0x0002, 2); // XLP_LONG_HEADER
  out.writeUInt32LE(Number.parseInt(walFile.slice(0, 8), 16), 4);
  out.writeBigUInt64LE(segno * BigInt(segmentSize), 8);
  out.writeUInt32LE(0, 16);
  out.writeUInt32LE(0, 20);
  out.writeBigUInt64LE(BigInt(systemId), 24);
  out.writeUInt32LE(segmentSize, 32);
  out.writeUInt32LE(8192, 36);
  return out;
}

/** The database system identifier of a data directory (pg_controldata; readable by root). */
export function systemIdOf(dataDir: string): string {
  const out = execFileSync(join(pgBinDir(), 'pg_controldata'), ['-D', dataDir], {env: {LC_ALL: 'C'}}).toString();
  const id = /^Database system identifier:\s+(\d+)/m.exec(out)?.[1];
  if (!id) throw new Error(`no system identifier in pg_controldata -D ${dataDir}`);
  return id;
}
