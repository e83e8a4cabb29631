// --target-time with IANA zone names (daylight saving: the skipped and the repeated hour), --target immediate,
// --target-action / --target-exclusive, and the xid widening used to refuse a transaction not assigned yet.

import {describe, expect, it} from 'vitest';
import {TargetError, UsageError} from '../../../src/errors.js';
import {parseTarget, parseTargetBehaviour, parseTargetTime, recoverySettings, describeTarget} from '../../../src/restore/target.js';
import {widenXid} from '../../../src/restore/xid.js';
import {readPoint} from '../../../src/restore/start.js';

function thrown(fn: () => unknown): Error & {hint?: string} {
  try {
    fn();
  } catch (error) {
    return error as Error & {hint?: string};
  }
  throw new Error('expected an error');
}

describe('--target-time with a zone name', () => {
  it('resolves a local time with the offset the zone has then', () => {
    const winter = parseTargetTime('2026-03-29 01:30 Europe/Berlin');
    expect(winter.time.toISOString()).toBe('2026-03-29T00:30:00.000Z');
    expect(winter.text).toBe('2026-03-29 01:30:00+01:00');
    const summer = parseTargetTime('2026-07-01T12:00:00.123456 Europe/Berlin');
    expect(summer.time.toISOString()).toBe('2026-07-01T10:00:00.123Z');
    expect(summer.text).toBe('2026-07-01 12:00:00.123456+02:00');
    expect(parseTargetTime('2026-11-26 10:41 America/New_York').time.toISOString()).toBe('2026-11-26T15:41:00.000Z');
    expect(parseTargetTime('2026-11-26 10:41 Asia/Kolkata').text).toBe('2026-11-26 10:41:00+05:30');
    // Lord Howe moves its clocks by 30 minutes: 02:30 exists on the day of the change.
    expect(parseTargetTime('2026-10-04 02:30 Australia/Lord_Howe').text).toBe('2026-10-04 02:30:00+11:00');
  });

  it('refuses a local time the clocks skipped, naming the gap', () => {
    const error = thrown(() => parseTargetTime('2026-03-29 02:30 Europe/Berlin'));
    expect(error).toBeInstanceOf(TargetError);
    expect(error.message).toBe('--target-time "2026-03-29 02:30 Europe/Berlin" does not exist: in Europe/Berlin the clocks jumped from ' +
      '2026-03-29 02:00:00+01:00 to 2026-03-29 03:00:00+02:00 (at 2026-03-29T01:00:00.000Z), so no moment was 2026-03-29 02:30:00 there');
    const newYork = thrown(() => parseTargetTime('2026-03-08 02:00:00 America/New_York'));
    expect(newYork.message).toMatch(/from 2026-03-08 02:00:00-05:00 to 2026-03-08 03:00:00-04:00/);
  });

  it('refuses a local time that happened twice, naming both instants', () => {
    const error = thrown(() => parseTargetTime('2026-10-25 02:30 Europe/Berlin'));
    expect(error).toBeInstanceOf(TargetError);
    expect(error.message).toBe('--target-time "2026-10-25 02:30 Europe/Berlin" is ambiguous: the clocks in Europe/Berlin went back, so ' +
      '2026-10-25 02:30:00 happened twice: at 2026-10-25 02:30:00+02:00 (2026-10-25T00:30:00.000Z) and at 2026-10-25 02:30:00+01:00 (2026-10-25T01:30:00.000Z)');
    expect(error.hint).toMatch(/"2026-10-25 02:30:00\+02:00" for the first or "2026-10-25 02:30:00\+01:00" for the second/);
    // Just outside the repeated hour, unambiguous again.
    expect(parseTargetTime('2026-10-25 03:00 Europe/Berlin').time.toISOString()).toBe('2026-10-25T02:00:00.000Z');
    expect(parseTargetTime('2026-10-25 01:59:59 Europe/Berlin').time.toISOString()).toBe('2026-10-24T23:59:59.000Z');
  });

  it('refuses an unknown zone and still refuses a time without any', () => {
    expect(thrown(() => parseTargetTime('2026-11-26 10:41 Mars/Olympus')).message).toBe('--target-time "2026-11-26 10:41 Mars/Olympus": "Mars/Olympus" is not a time zone');
    expect(thrown(() => parseTargetTime('2026-11-26 10:41')).message).toMatch(/has no time zone/);
    expect(thrown(() => parseTargetTime('2026-02-30 10:41 Europe/Berlin')).message).toMatch(/is not a valid date and time/);
  });
});

describe('--target immediate, --target-action, --target-exclusive', () => {
  it('immediate is a target of its own, rendered as recovery_target', () => {
    const target = parseTarget({target: 'immediate'});
    expect(target).toEqual({kind: 'immediate'});
    expect(recoverySettings(target)).toEqual({recovery_target: 'immediate'});
    expect(describeTarget(target)).toMatch(/immediate/);
    expect(thrown(() => parseTarget({target: 'soon'}))).toBeInstanceOf(TargetError);
    expect(thrown(() => parseTarget({target: 'immediate', latest: true})).message).toBe('give at most one recovery target, got --latest and --target immediate');
  });

  it('defaults to promote; pause and shutdown need a target; exclusive only for time, LSN and xid', () => {
    expect(parseTargetBehaviour({}, {kind: 'latest'})).toEqual({action: 'promote', exclusive: false});
    expect(parseTargetBehaviour({targetAction: 'pause'}, {kind: 'immediate'})).toEqual({action: 'pause', exclusive: false});
    expect(parseTargetBehaviour({targetAction: 'shutdown', targetExclusive: true}, {kind: 'xid', xid: 800n})).toEqual({action: 'shutdown', exclusive: true});
    expect(thrown(() => parseTargetBehaviour({targetAction: 'pause'}, {kind: 'latest'}))).toBeInstanceOf(UsageError);
    expect(thrown(() => parseTargetBehaviour({targetAction: 'stop'}, {kind: 'immediate'})).message).toMatch(/"stop" is not an action/);
    expect(thrown(() => parseTargetBehaviour({targetExclusive: true}, {kind: 'name', name: 'x'})).message).toMatch(/--target-exclusive applies to/);
  });
});

describe('widenXid: the full id a target names on a server, or not assigned yet', () => {
  it('widens a 32-bit xid with the server\'s epoch', () => {
    expect(widenXid(700n, 800n)).toBe(700n);
    expect(widenXid(800n, 800n)).toBeUndefined();
    expect(widenXid(5000n, 800n)).toBeUndefined();
    const next = (2n << 32n) | 100n;
    expect(widenXid(50n, next)).toBe((2n << 32n) | 50n);
    expect(widenXid(4000000000n, next)).toBe((1n << 32n) | 4000000000n);
    expect(widenXid((2n << 32n) | 99n, next)).toBe((2n << 32n) | 99n);
    expect(widenXid((2n << 32n) | 100n, next)).toBeUndefined();
  });
});

describe('readPoint: the lines of a log written with lc_messages=C', () => {
  it('reads where recovery stopped and the new timeline', () => {
    const log = [
      '2026-11-30 03:45:28.237 UTC [1] LOG:  recovery stopping before commit of transaction 745, time 2026-11-30 03:45:27.1+00',
      '2026-11-30 03:45:28.238 UTC [1] LOG:  redo done at 0/3005700 system usage: CPU: user: 0.00 s',
      '2026-11-30 03:45:28.238 UTC [1] LOG:  last completed transaction was at log time 2026-11-30 03:45:26.9+00',
      '2026-11-30 03:45:28.300 UTC [1] LOG:  selected new timeline ID: 2',
    ].join('\n');
    expect(readPoint(log)).toEqual({
      stoppedAt: 'recovery stopping before commit of transaction 745, time 2026-11-30 03:45:27.1+00',
      lastTransactionAt: '2026-11-30 03:45:26.9+00', newTimeline: 2, redoDoneAt: '0/3005700',
    });
  });
});
