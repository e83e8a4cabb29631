// Which moment a drill restores to (pure): the one given, the latest, or a random moment inside the window.

import {TargetError} from '../errors.js';
import type {RecoverableWindow} from '../restore/window.js';
import {parseTargetTime, type Target} from '../restore/target.js';

/**
 * A random moment between the oldest backup's consistent point and the newest commit in the archive, at
 * microsecond precision (as PostgreSQL compares commit times). `random` returns [0, 1).
 */
export function randomTargetIn(window: RecoverableWindow, random: () => number = Math.random): Target & {kind: 'time'} {
  if (!window.earliestTime || !window.latestTime) {
    throw new TargetError('the recoverable window has no commit after the oldest backup: there is no moment to restore to at random',
      'give --latest, or let commits reach the archive (select pg_switch_wal() on the server) and try again');
  }
  const from = BigInt(window.earliestTime.getTime()) * 1000n;
  const to = BigInt(window.latestTime.getTime()) * 1000n;
  const span = to - from;
  const micros = from + BigInt(Math.floor(Number(span) * random()));
  return parseTargetTime(formatMicros(micros));
}

/** 2026-11-26T10:41:00.123456Z from microseconds since the epoch. */
export function formatMicros(micros: bigint): string {
  const ms = micros / 1000n;
  const iso = new Date(Number(ms)).toISOString(); // ...T10:41:00.123Z
  return `${iso.slice(0, 23)}${(micros % 1000n).toString().padStart(3, '0')}Z`;
}

/** Microseconds since the epoch of a time target, keeping the digits beyond milliseconds the user wrote. */
export function targetMicros(target: Target & {kind: 'time'}): bigint {
  const fraction = /:\d{2}\.(\d{4,6})/.exec(target.text)?.[1];
  const extra = fraction ? BigInt(fraction.padEnd(6, '0').slice(3)) : 0n;
  return BigInt(target.time.getTime()) * 1000n + extra;
}

/**
 * Microseconds since the epoch of a PostgreSQL timestamp as pg_waldump (TZ=UTC) or the server log
 * (log_timezone=UTC) print it: "2026-11-26 10:41:00.123456 UTC", "2026-11-26 10:41:00.12+00".
 */
export function parsePgTimestamp(text: string): bigint | undefined {
  const match = /^(\d{4}-\d{2}-\d{2})[ T](\d{2}:\d{2}:\d{2})(?:\.(\d{1,6}))?\s*(?:UTC|GMT|Z|\+00(?::?00)?)$/.exec(text.trim());
  if (!match) return undefined;
  const ms = Date.parse(`${match[1]}T${match[2]}Z`);
  if (Number.isNaN(ms)) return undefined;
  return BigInt(ms) * 1000n + BigInt((match[3] ?? '').padEnd(6, '0'));
}
