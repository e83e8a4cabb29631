// Parses backup_label and .backup history files ("START WAL LOCATION: 0/3000028 (file ...)").

import {parseLsn, type Lsn} from '../wal/lsn.js';

export interface BackupLabel {
  startLsn: Lsn;
  checkpointLsn?: Lsn;
  startTimeline: number;
  startTime?: Date;
  stopLsn?: Lsn;
  stopTime?: Date;
  stopTimeline?: number;
  label?: string;
  backupFrom?: string;
}

export function parseBackupLabel(text: string): BackupLabel | undefined {
  const fields = new Map<string, string>();
  for (const line of text.split('\n')) {
    const colon = line.indexOf(': ');
    if (colon > 0) fields.set(line.slice(0, colon).trim(), line.slice(colon + 2).trim());
  }
  const lsnOf = (key: string) => {
    const value = fields.get(key);
    return value ? parseLsn(value.split(' ')[0]!) : undefined;
  };
  const startLsn = lsnOf('START WAL LOCATION');
  if (startLsn === undefined) return undefined;
  return {
    startLsn,
    checkpointLsn: lsnOf('CHECKPOINT LOCATION'),
    startTimeline: Number(fields.get('START TIMELINE') ?? 1),
    startTime: parseLabelTime(fields.get('START TIME')),
    stopLsn: lsnOf('STOP WAL LOCATION'),
    stopTime: parseLabelTime(fields.get('STOP TIME')),
    stopTimeline: fields.has('STOP TIMELINE') ? Number(fields.get('STOP TIMELINE')) : undefined,
    label: fields.get('LABEL'),
    backupFrom: fields.get('BACKUP FROM'),
  };
}

/** "2026-11-26 13:02:59 UTC" (the server's log_timezone abbreviation; numeric offsets also accepted). */
export function parseLabelTime(text: string | undefined): Date | undefined {
  if (!text) return undefined;
  const match = /^(\d{4}-\d{2}-\d{2}) (\d{2}:\d{2}:\d{2})(?:\s+(\S+))?$/.exec(text.trim());
  if (!match) return undefined;
  const zone = match[3] ?? 'UTC';
  const offset = /^[+-]\d{2}(:?\d{2})?$/.test(zone) ? zone : zone === 'UTC' || zone === 'GMT' ? 'Z' : undefined;
  if (offset === undefined) return undefined;
  const date = new Date(`${match[1]}T${match[2]}${offset === 'Z' ? 'Z' : offset.length === 3 ? `${offset}:00` : offset}`);
  return Number.isNaN(date.getTime()) ? undefined : date;
}

export interface WalRange {
  timeline: number;
  startLsn: Lsn;
  endLsn: Lsn;
}

/** The WAL-Ranges of a backup_manifest, from its tail (the JSON may be cut at its start). */
export function parseManifestWalRanges(tail: string): WalRange[] {
  const ranges: WalRange[] = [];
  const re = /\{\s*"Timeline":\s*(\d+),\s*"Start-LSN":\s*"([0-9A-F]+\/[0-9A-F]+)",\s*"End-LSN":\s*"([0-9A-F]+\/[0-9A-F]+)"\s*\}/gi;
  for (const match of tail.matchAll(re)) {
    ranges.push({timeline: Number(match[1]), startLsn: parseLsn(match[2]!)!, endLsn: parseLsn(match[3]!)!});
  }
  return ranges;
}
