// Recovery targets from the command line: parsed, validated and rendered as PostgreSQL recovery settings.

import {TargetError, UsageError} from '../errors.js';
import {formatLsn, parseLsn, type Lsn} from '../wal/lsn.js';

export type Target =
  | {kind: 'latest'}
  /** recovery_target = 'immediate': stop as soon as the backup is consistent. */
  | {kind: 'immediate'}
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
  /** --target immediate */
  target?: string;
}

export type TargetAction = 'promote' | 'pause' | 'shutdown';

/** What recovery does at the target: recovery_target_action and recovery_target_inclusive. */
export interface TargetBehaviour {
  action: TargetAction;
  /** --target-exclusive: stop just before the target instead of just after it (time, LSN, xid). */
  exclusive: boolean;
}

/** --target-action and --target-exclusive, checked against the target (bad input: exit 2). */
export function parseTargetBehaviour(options: {targetAction?: string; targetExclusive?: boolean}, target: Target): TargetBehaviour {
  const action = options.targetAction ?? 'promote';
  if (action !== 'promote' && action !== 'pause' && action !== 'shutdown') {
    throw new UsageError(`--target-action "${action}" is not an action`, 'give promote (the default), pause or shutdown');
  }
  if (target.kind === 'latest' && action !== 'promote') {
    throw new UsageError(`--target-action ${action} needs a recovery target: without one, recovery replays all archived WAL and promotes`,
      'give --target-time, --target-lsn, --target-xid, --target-name or --target immediate');
  }
  const exclusive = Boolean(options.targetExclusive);
  if (exclusive && !['time', 'lsn', 'xid'].includes(target.kind)) {
    throw new UsageError(`--target-exclusive applies to --target-time, --target-lsn and --target-xid, not to ${describeTarget(target)}`);
  }
  return {action, exclusive};
}

export function parseTarget(options: TargetOptions): Target {
  const given = [
    options.targetTime !== undefined && '--target-time',
    options.targetLsn !== undefined && '--target-lsn',
    options.targetXid !== undefined && '--target-xid',
    options.targetName !== undefined && '--target-name',
    options.latest && '--latest',
    options.target !== undefined && `--target ${options.target}`,
  ].filter(Boolean);
  if (given.length > 1) throw new UsageError(`give at most one recovery target, got ${given.join(' and ')}`);
  if (options.target !== undefined) {
    if (options.target !== 'immediate') {
      throw new TargetError(`--target "${options.target}" is not a recovery target`, 'the only value is immediate (stop as soon as the backup is consistent); for a point in time use --target-time, --target-lsn, --target-xid or --target-name');
    }
    return {kind: 'immediate'};
  }
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

const TIME_RE = /^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,6}))?)?(?:\s*(Z|UTC|GMT|[+-]\d{2}(?::?\d{2})?)|\s+([A-Za-z][A-Za-z0-9_+-]*(?:\/[A-Za-z0-9_+-]+){0,2}))?$/i;

/**
 * ISO 8601 or timestamptz text, with a UTC offset or an IANA zone name (`2026-03-29 01:30 Europe/Berlin`); a time
 * without a zone is refused, since it would be read in the server's zone. A local time that a zone name makes
 * ambiguous (clocks going back) or non-existent (clocks jumping forward) is refused, naming both instants or the gap.
 */
export function parseTargetTime(text: string): Target & {kind: 'time'} {
  const match = TIME_RE.exec(text.trim());
  if (!match) {
    throw new TargetError(`--target-time "${text}" is not a timestamp`, 'write it as 2026-11-26 10:41:00+00, 2026-11-26T10:41:00Z or 2026-11-26 11:41:00 Europe/Berlin');
  }
  const [, year, month, day, hour, minute, second = '00', fraction, offsetZone, zoneName] = match;
  if (!offsetZone && !zoneName) {
    throw new TargetError(
      `--target-time "${text}" has no time zone`,
      `add one, e.g. "${text.trim()}+00" for UTC, "${text.trim()}+01:00" or "${text.trim()} Europe/Berlin"; a time without a zone would be read in the server's time zone`,
    );
  }
  const fields = [Number(month), Number(day), Number(hour), Number(minute), Number(second)];
  if (fields[0]! < 1 || fields[0]! > 12 || fields[1]! < 1 || fields[1]! > daysInMonth(Number(year), fields[0]!) || fields[2]! > 23 || fields[3]! > 59 || fields[4]! > 59) {
    throw new TargetError(`--target-time "${text}" is not a valid date and time`);
  }
  const millis = fraction ? Number(fraction.padEnd(3, '0').slice(0, 3)) : 0;
  const wall = Date.UTC(Number(year), fields[0]! - 1, fields[1]!, fields[2]!, fields[3]!, fields[4]!, millis);
  const local = `${year}-${month}-${day} ${hour}:${minute}:${second}${fraction ? `.${fraction}` : ''}`;
  const offset = offsetZone
    ? (/^(Z|UTC|GMT)$/i.test(offsetZone) ? '+00:00' : normalizeOffset(offsetZone))
    : formatOffset(zoneOffsetFor(text, local, zoneName!, wall));
  const iso = `${year}-${month}-${day}T${hour}:${minute}:${second}${fraction ? `.${fraction.padEnd(3, '0').slice(0, 3)}` : ''}${offset}`;
  const time = new Date(iso);
  if (Number.isNaN(time.getTime())) throw new TargetError(`--target-time "${text}" is not a valid date and time`);
  return {kind: 'time', time, text: `${local}${offset}`};
}

/**
 * The UTC offset (minutes east) that the local time `wall` (its fields read as UTC) has in the IANA zone `zone`:
 * exactly one instant must show that wall-clock time there.
 */
function zoneOffsetFor(text: string, local: string, zone: string, wall: number): number {
  let format: Intl.DateTimeFormat;
  try {
    format = new Intl.DateTimeFormat('en-US', {
      timeZone: zone, hourCycle: 'h23', year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit',
    });
  } catch {
    throw new TargetError(`--target-time "${text}": "${zone}" is not a time zone`,
      'give an IANA zone name such as Europe/Berlin or America/New_York, or a UTC offset such as +01:00');
  }
  const name = format.resolvedOptions().timeZone;
  const offsetAt = (instant: number): number => zoneOffsetAt(format, instant);
  const day = 86_400_000;
  const candidates = [...new Set([offsetAt(wall - day), offsetAt(wall), offsetAt(wall + day)])];
  const valid = candidates.filter((offset) => offsetAt(wall - offset * 60_000) === offset).sort((a, b) => b - a);
  if (valid.length === 1) return valid[0]!;
  if (valid.length > 1) {
    const shown = valid.map((offset) => `${local}${formatOffset(offset)} (${new Date(wall - offset * 60_000).toISOString()})`);
    throw new TargetError(
      `--target-time "${text}" is ambiguous: the clocks in ${name} went back, so ${local} happened twice: at ${shown.join(' and at ')}`,
      `give the offset instead of the zone name, e.g. "${local}${formatOffset(valid[0]!)}" for the first or "${local}${formatOffset(valid[valid.length - 1]!)}" for the second`,
    );
  }
  // No instant shows that time: it lies in the hour the clocks skipped.
  const before = offsetAt(wall - day);
  const after = offsetAt(wall + day);
  let low = wall - day;
  let high = wall + day;
  while (high - low > 1000) {
    const middle = Math.floor((low + high) / 2);
    if (offsetAt(middle) === before) low = middle;
    else high = middle;
  }
  const transition = Math.floor(high / 1000) * 1000;
  const wallText = (instant: number, offset: number) => new Date(instant + offset * 60_000).toISOString().slice(0, 19).replace('T', ' ');
  throw new TargetError(
    `--target-time "${text}" does not exist: in ${name} the clocks jumped from ${wallText(transition, before)}${formatOffset(before)} ` +
      `to ${wallText(transition, after)}${formatOffset(after)} (at ${new Date(transition).toISOString()}), so no moment was ${local} there`,
    `give a time outside the gap, or an offset, e.g. "${local}${formatOffset(before)}" (= ${new Date(wall - before * 60_000).toISOString()})`,
  );
}

function zoneOffsetAt(format: Intl.DateTimeFormat, instant: number): number {
  const parts = format.formatToParts(new Date(instant));
  const get = (type: Intl.DateTimeFormatPartTypes) => Number(parts.find((part) => part.type === type)?.value);
  const shown = Date.UTC(get('year'), get('month') - 1, get('day'), get('hour'), get('minute'), get('second'));
  return Math.round((shown - Math.floor(instant / 1000) * 1000) / 60_000);
}

function formatOffset(minutes: number): string {
  const sign = minutes < 0 ? '-' : '+';
  const abs = Math.abs(minutes);
  return `${sign}${String(Math.floor(abs / 60)).padStart(2, '0')}:${String(abs % 60).padStart(2, '0')}`;
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
    case 'immediate': return 'the end of the backup (immediate: as soon as it is consistent)';
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
    case 'immediate': return {recovery_target: 'immediate'};
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
    case 'immediate': return {kind: 'immediate'};
    case 'time': return {kind: 'time', time: target.time.toISOString(), text: target.text};
    case 'lsn': return {kind: 'lsn', lsn: formatLsn(target.lsn)};
    case 'xid': return {kind: 'xid', xid: target.xid.toString()};
    case 'name': return {kind: 'name', name: target.name};
  }
}
