import {describe, expect, it} from 'vitest';
import {formatDuration, parseDuration} from '../../../src/policy/duration.js';

describe('parseDuration', () => {
  it.each([
    ['0s', 0],
    ['30s', 30],
    ['5m', 300],
    ['1h', 3600],
    ['2d', 172800],
    ['1h30m', 5400],
    ['1d2h3m4s', 86400 + 7200 + 180 + 4],
    ['1h 30m', 5400],
    [' 10m ', 600],
    ['90s', 90],
    ['5m5m', 600],
    ['100d', 8640000],
    ['5min', 300],
    ['1h5min', 3900],
    ['5', 5],
    [' 300 ', 300],
    [90, 90],
  ] as Array<[string | number, number]>)('%j is %i seconds', (text, seconds) => {
    expect(parseDuration(text)).toBe(seconds);
  });

  it.each(['', ' ', 'min', '5mins', '5minutes', 1.5, -1, 'm', '5x', '5M', '1.5h', '-5m', '5 minutes', 'h1', '1h30', 'P1D', '5m!', '1w'])('refuses %j', (text: string | number) => {
    expect(parseDuration(text)).toBeUndefined();
  });
});

describe('formatDuration', () => {
  it.each([
    [0, '0s'],
    [59.4, '59s'],
    [119, '119s'],
    [120, '2m'],
    [150, '2m30s'],
    [7199, '119m59s'],
    [7200, '2h'],
    [5400 * 2 + 60, '3h1m'],
    [172799, '47h59m'],
    [172800, '2d'],
    [190800, '2d5h'],
    [Number.POSITIVE_INFINITY, 'n/a'],
    [Number.NaN, 'n/a'],
  ])('%d seconds → %s', (seconds, text) => {
    expect(formatDuration(seconds)).toBe(text);
  });

  it('round-trips through parseDuration where the format is exact', () => {
    for (const seconds of [0, 45, 120, 150, 7200, 7260, 172800, 190800]) {
      expect(parseDuration(formatDuration(seconds))).toBe(seconds);
    }
  });
});
