// WAL file names: what archive_command and restore_command may be asked for, and segment arithmetic.

import {WalNameError} from '../errors.js';
import type {Lsn} from './lsn.js';

export const DEFAULT_SEGMENT_SIZE = 16 * 1024 * 1024;

export type WalFileKind = 'segment' | 'history' | 'partial' | 'backup';

export interface WalFileName {
  name: string;
  kind: WalFileKind;
  timeline: number;
  /** The 24-character segment part (absent for history files). */
  segment?: string;
}

const PATTERNS: Array<[WalFileKind, RegExp]> = [
  ['segment', /^[0-9A-F]{24}$/],
  ['history', /^[0-9A-F]{8}\.history$/],
  ['partial', /^[0-9A-F]{24}\.partial$/],
  ['backup', /^[0-9A-F]{24}\.[0-9A-F]{8}\.backup$/],
];

/** Classifies a WAL file name; anything else (a path, lower case, junk) is refused. */
export function parseWalFileName(name: string): WalFileName {
  for (const [kind, re] of PATTERNS) {
    if (re.test(name)) {
      const timeline = Number.parseInt(name.slice(0, 8), 16);
      return kind === 'history' ? {name, kind, timeline} : {name, kind, timeline, segment: name.slice(0, 24)};
    }
  }
  throw new WalNameError(
    `not a WAL file name: "${name}"`,
    'expected a segment (24 hex digits), a timeline history file (00000002.history), a .partial or a .backup file name',
  );
}

export function isWalFileName(name: string): boolean {
  return PATTERNS.some(([, re]) => re.test(name));
}

function segmentsPerXlogId(segmentSize: number): bigint {
  return 0x100000000n / BigInt(segmentSize);
}

/** Segment number holding `lsn` (XLByteToSeg). */
export function lsnToSegmentNumber(lsn: Lsn, segmentSize = DEFAULT_SEGMENT_SIZE): bigint {
  return lsn / BigInt(segmentSize);
}

export function segmentName(timeline: number, segmentNumber: bigint, segmentSize = DEFAULT_SEGMENT_SIZE): string {
  const perId = segmentsPerXlogId(segmentSize);
  const hex = (value: bigint | number) => value.toString(16).toUpperCase().padStart(8, '0');
  return `${hex(timeline)}${hex(segmentNumber / perId)}${hex(segmentNumber % perId)}`;
}

export function segmentNumberOf(name: string, segmentSize = DEFAULT_SEGMENT_SIZE): bigint {
  const perId = segmentsPerXlogId(segmentSize);
  return BigInt(`0x${name.slice(8, 16)}`) * perId + BigInt(`0x${name.slice(16, 24)}`);
}

/** Name of the segment file that holds `lsn` on `timeline`. */
export function segmentNameForLsn(timeline: number, lsn: Lsn, segmentSize = DEFAULT_SEGMENT_SIZE): string {
  return segmentName(timeline, lsnToSegmentNumber(lsn, segmentSize), segmentSize);
}

/** First LSN of a segment. */
export function segmentStartLsn(name: string, segmentSize = DEFAULT_SEGMENT_SIZE): Lsn {
  return segmentNumberOf(name, segmentSize) * BigInt(segmentSize);
}

export function timelineHex(timeline: number): string {
  return timeline.toString(16).toUpperCase().padStart(8, '0');
}

export function historyFileName(timeline: number): string {
  return `${timelineHex(timeline)}.history`;
}
