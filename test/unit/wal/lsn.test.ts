import {describe, expect, it} from 'vitest';
import {formatLsn, isLsn, parseLsn} from '../../../src/wal/lsn.js';

describe('parseLsn / formatLsn', () => {
  it.each([
    ['0/0', 0n],
    ['0/3000028', 0x3000028n],
    ['1/0', 0x100000000n],
    ['16/B374D848', (0x16n << 32n) | 0xb374d848n],
    ['FFFFFFFF/FFFFFFFF', 0xffffffffffffffffn],
  ])('%s ⇄ %s', (text, value) => {
    expect(isLsn(text)).toBe(true);
    expect(parseLsn(text)).toBe(value);
    expect(formatLsn(value)).toBe(text);
    expect(parseLsn(formatLsn(value))).toBe(value);
  });

  it('accepts lower case and leading zeros, and prints the canonical form', () => {
    expect(parseLsn('16/b374d848')).toBe((0x16n << 32n) | 0xb374d848n);
    expect(formatLsn(parseLsn('16/b374d848')!)).toBe('16/B374D848');
    expect(formatLsn(parseLsn('00000000/03000028')!)).toBe('0/3000028');
  });

  it('trims surrounding white space when parsing', () => {
    expect(parseLsn(' 0/3000028\n')).toBe(0x3000028n);
  });

  it('orders as numbers, not as text', () => {
    expect(parseLsn('0/A000000')! > parseLsn('0/9FFFFFF')!).toBe(true);
    expect(parseLsn('1/0')! > parseLsn('0/FFFFFFFF')!).toBe(true);
    expect(parseLsn('10/0')! > parseLsn('9/FFFFFFFF')!).toBe(true);
  });

  it.each(['', '/', '0/', '/0', '0', '3000028', '0x0/1', '0/G', '-1/0', '0/-1', '1/2/3', '123456789/0', '0/123456789', '0 / 1', '0:1'])(
    'refuses %j', (text) => {
      expect(isLsn(text)).toBe(false);
      expect(parseLsn(text)).toBeUndefined();
    },
  );
});
