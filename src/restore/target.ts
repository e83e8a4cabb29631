// Recovery targets from the command line: parsed, validated and rendered as PostgreSQL recovery settings.

import {TargetError, UsageError} from '../errors.js';
import {formatLsn, parseLsn, type Lsn} from '../wal/lsn.js';

export type Target =
  | {kind: 'latest'}
  | {kind: 'time'; time: Date; /** PostgreSQL timestamptz text with the user's precision. */ text: string}
  | {kind: 'lsn'; lsn: Lsn}
  | {kind: 'xid'; xid: bigint}
  | {kind: 'name'; name: string};

export interface TargetOptions {
  targetTime?: string;
  targetLsn?: string;
  targetXid?: string;
  targetName?: string;
  latest?: boolean;
}

export function parseTarget(options: TargetOptions): Target {
  const given = [
    options.targetTime !== undefined && '--target-time',
    options.targetLsn !== undefined && '--target-lsn',
    options.targetXid !== undefined && '--target-xid',
    options.targetName !== undefined && '--target-name',
    options.latest && '--latest',
  ].filter(Boolean);
  if (given.length > 1) throw new UsageError(`give at most one recovery target, got ${given.join(' and ')}`);
  if (options.targetTime !== undefined) return parseTargetTime(options.targetTime);
  if (options.targetLsn !== undefined) {
    const lsn = parseLsn(options.targetLsn);
    if (lsn === undefined) throw new TargetError(`--target-lsn "${options.targetLsn}" is not an LSN`, 'write it as PostgreSQL does, e.g. 0/3000060 (pg_current_wal_lsn())');
    return {kind: 'lsn', lsn};
  }
  if (options.targetXid !== undefined) {
    if (!/^\d{1,20}$/.test(options.targetXid) || BigInt(options.targetXid) < 3n) {
      throw new TargetError(`--target-xid "${options.targetXid}" is not a transaction id`, 'give a normal transaction id, e.g. 7391 (txid_current())');
    }
    return {kind: 'xid', xid: BigInt(options.targetXid)};
  }
  if (options.targetName !== undefined) {
    if (options.targetName.length === 0 || options.targetName.length > 63 || /[\0]/.test(options.targetName)) {
      throw new TargetError(`--target-name "${options.targetName}" is not a restore point name (1 to 63 characters)`);
    }
    return {kind: 'name', name: options.targetName};
  }
  return {kind: 'latest'};
}

const TIME_RE = /^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,6}))?)?\s*(Z|UTC|GMT|[+-]\d{2}(?::?\d{2})?)?$/i;

/** ISO 8601 or timestamptz text; a time without a zone is refused, since it would be read in the server's zone. */
export function parseTargetTime(text: string): Target & {kind: 'time'} {
  const match = TIME_RE.exec(text.trim());
  if (!match) {
    throw new TargetError(`--target-time "${text}" is not a timestamp`, 'write it as 2026-11-26 10:41:00+00 or 2026-11-26T10:41:00Z');
  }
  const [, year, month, day, hour, minute, second = '00', fraction, zone] = match;
  if (!zone) {
    throw new TargetError(
      `--target-time "${text}" has no time zone`,
      `add one, e.g. "${text.trim()}+00" for UTC or "${text.trim()}+01:00"; a time without a zone would be read in the server's time zone`,
    );
  }
  const offset = /^(Z|UTC|GMT)$/i.test(zone) ? '+00:00' : normalizeOffset(zone);
  const iso = `${year}-${month}-${day}T${hour}:${minute}:${second}${fraction ? `.${fraction.padEnd(3, '0').slice(0, 3)}` : ''}${offset}`;
  const time = new Date(iso);
  const fields = [Number(month), Number(day), Number(hour), Number(minute), Number(second)];
  if (Number.isNaN(time.getTime()) || fields[0]! > 12 || fields[1]! > daysInMonth(Number(year), fields[0]!) || fields[2]! > 23 || fields[3]! > 59 || fields[4]! > 59) {
    throw new TargetError(`--target-time "${text}" is not a valid date and time`);
  }
  const pgText = `${year}-${month}-${day} ${hour}:${minute}:${second}${fraction ? `.${fraction}` : ''}${offset}`;
  return {kind: 'time', time, text: pgText};
}

/** 28 to 31: new Date() would roll 2026-02-30 over into March instead of refusing it. */
function daysInMonth(year: number, month: number): number {
  return new Date(Date.UTC(year, month, 0)).getUTCDate();
}

function normalizeOffset(zone: string): string {
  const digits = zone.replace(':', '');
  return `${digits.slice(0, 3)}:${digits.slice(3, 5) || '00'}`;
}

export function describeTarget(target: Target): string {
  switch (target.kind) {
    case 'latest': return 'the end of the archived WAL (latest)';
    case 'time': return `time ${target.text}`;
    case 'lsn': return `LSN ${formatLsn(target.lsn)}`;
    case 'xid': return `transaction ${target.xid}`;
    case 'name': return `restore point "${target.name}"`;
  }
}

/** postgresql.conf lines for the target (recovery_target_action and timeline are added by the caller). */
export function recoverySettings(target: Target): Record<string, string> {
  switch (target.kind) {
    case 'latest': return {};
    case 'time': return {recovery_target_time: target.text};
    case 'lsn': return {recovery_target_lsn: formatLsn(target.lsn)};
    case 'xid': return {recovery_target_xid: target.xid.toString()};
    case 'name': return {recovery_target_name: target.name};
  }
}

/** A value quoted for postgresql.conf. */
export function quoteConfValue(value: string): string {
  return `'${value.replace(/\\/g, '\\\\').replace(/'/g, "''")}'`;
}

export function targetToJson(target: Target): Record<string, string> {
  switch (target.kind) {
    case 'latest': return {kind: 'latest'};
    case 'time': return {kind: 'time', time: target.time.toISOString(), text: target.text};
    case 'lsn': return {kind: 'lsn', lsn: formatLsn(target.lsn)};
    case 'xid': return {kind: 'xid', xid: target.xid.toString()};
    case 'name': return {kind: 'name', name: target.name};
  }
}
