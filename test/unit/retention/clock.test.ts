import {describe, expect, it} from 'vitest';
import {ClockSkewError} from '../../../src/errors.js';
import {checkClock} from '../../../src/retention/clock.js';
import type {BackupManifest} from '../../../src/backup/manifest.js';

const backup = (id: string, stopTime: string) => ({id, kind: 'base', stopTime}) as BackupManifest;
const now = new Date('2026-11-30T01:00:00Z');
const repo = (time?: string) => ({description: 's3://bucket/orders/', time: time ? new Date(time) : undefined});

function thrown(fn: () => void): Error {
  try {
    fn();
  } catch (error) {
    return error as Error;
  }
  throw new Error('expected an error');
}

describe('clock sanity before expire', () => {
  it('accepts clocks within 5 minutes', () => {
    expect(() => checkClock(now, repo('2026-11-30T01:05:00Z'), [backup('a', '2026-11-30T01:05:00Z')])).not.toThrow();
    expect(() => checkClock(now, repo('2026-11-30T00:55:00Z'), [])).not.toThrow();
    expect(() => checkClock(now, repo(), [backup('a', '2026-11-29T01:00:00Z')])).not.toThrow();
  });

  it('refuses a local clock far from the repository\'s, with both times', () => {
    const error = thrown(() => checkClock(now, repo('2026-11-30T00:54:59Z'), []));
    expect(error).toBeInstanceOf(ClockSkewError);
    expect(error.message).toBe('the local clock (2026-11-30T01:00:00.000Z) and the clock of the repository s3://bucket/orders/ (2026-11-30T00:54:59.000Z) are 5 min 1 s apart (more than 5 min): expire removes nothing');
    expect(thrown(() => checkClock(now, repo('2026-12-03T01:00:00Z'), [])).message).toMatch(/are 3 days apart/);
  });

  it('refuses when the newest backup finished more than 5 minutes in the future', () => {
    const error = thrown(() => checkClock(now, repo('2026-11-30T01:00:00Z'), [backup('old', '2026-11-29T00:00:00Z'), backup('new', '2026-11-30T02:00:00Z'), backup('mid', '2026-11-29T12:00:00Z')]));
    expect(error).toBeInstanceOf(ClockSkewError);
    expect(error.message).toBe('the newest backup, new, finished at 2026-11-30T02:00:00.000Z, 60 min after the local clock (2026-11-30T01:00:00.000Z): one of the clocks is wrong, expire removes nothing');
  });
});
