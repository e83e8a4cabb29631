import {describe, expect, it} from 'vitest';
import {TargetError, UsageError} from '../../../src/errors.js';
import {
  describeTarget,
  parseTarget,
  parseTargetTime,
  quoteConfValue,
  recoverySettings,
  targetToJson,
  type Target,
  type TargetOptions,
} from '../../../src/restore/target.js';

function thrown(fn: () => unknown): Error {
  try {
    fn();
  } catch (error) {
    return error as Error;
  }
  throw new Error('expected an error');
}

describe('parseTarget: one kind at a time', () => {
  it('defaults to latest', () => {
    expect(parseTarget({})).toEqual({kind: 'latest'});
    expect(parseTarget({latest: true})).toEqual({kind: 'latest'});
    expect(parseTarget({latest: false})).toEqual({kind: 'latest'});
  });

  it('parses a time target', () => {
    const target = parseTarget({targetTime: '2026-11-26 10:41:00+00'});
    expect(target.kind).toBe('time');
    if (target.kind !== 'time') throw new Error('unreachable');
    expect(target.time.toISOString()).toBe('2026-11-26T10:41:00.000Z');
    expect(target.text).toBe('2026-11-26 10:41:00+00:00');
  });

  it('parses an LSN target', () => {
    expect(parseTarget({targetLsn: '0/3000060'})).toEqual({kind: 'lsn', lsn: 0x3000060n});
    expect(parseTarget({targetLsn: '16/B374D848'})).toEqual({kind: 'lsn', lsn: (0x16n << 32n) | 0xb374d848n});
  });

  it('parses an xid target', () => {
    expect(parseTarget({targetXid: '7391'})).toEqual({kind: 'xid', xid: 7391n});
    expect(parseTarget({targetXid: '3'})).toEqual({kind: 'xid', xid: 3n});
    expect(parseTarget({targetXid: '8589934592'})).toEqual({kind: 'xid', xid: 8589934592n});
  });

  it('parses a restore point name', () => {
    expect(parseTarget({targetName: 'before-migration'})).toEqual({kind: 'name', name: 'before-migration'});
    expect(parseTarget({targetName: 'x'.repeat(63)})).toEqual({kind: 'name', name: 'x'.repeat(63)});
    expect(parseTarget({targetName: "it's here"})).toEqual({kind: 'name', name: "it's here"});
  });

  it.each([
    [{targetTime: '2026-11-26 10:41:00+00', targetLsn: '0/3000060'}, '--target-time and --target-lsn'],
    [{targetXid: '1000', targetName: 'x'}, '--target-xid and --target-name'],
    [{targetName: 'x', latest: true}, '--target-name and --latest'],
    [{targetTime: '2026-11-26 10:41:00+00', latest: true}, '--target-time and --latest'],
    [{targetTime: 'junk', targetLsn: 'junk', targetXid: 'junk'}, '--target-time and --target-lsn and --target-xid'],
  ] as Array<[TargetOptions, string]>)('refuses more than one target: %j', (options, names) => {
    const error = thrown(() => parseTarget(options));
    expect(error).toBeInstanceOf(UsageError);
    expect((error as UsageError).exitCode).toBe(2);
    expect(error.message).toBe(`give at most one recovery target, got ${names}`);
  });
});

describe('time targets', () => {
  it('refuses a time without a zone, and asks for one', () => {
    for (const text of ['2026-11-26 10:41:00', '2026-11-26T10:41:00', '2026-11-26 10:41', '2026-11-26 10:41:00.123456']) {
      const error = thrown(() => parseTarget({targetTime: text}));
      expect(error).toBeInstanceOf(TargetError);
      expect((error as TargetError).exitCode).toBe(2);
      expect((error as TargetError).code).toBe('target.invalid');
      expect(error.message).toBe(`--target-time "${text}" has no time zone`);
      expect((error as TargetError).hint).toContain(`"${text}+00"`);
      expect((error as TargetError).hint).toMatch(/zone/);
    }
  });

  it.each([
    ['2026-11-26T10:41:00Z', '2026-11-26T10:41:00.000Z', '2026-11-26 10:41:00+00:00'],
    ['2026-11-26t10:41:00z', '2026-11-26T10:41:00.000Z', '2026-11-26 10:41:00+00:00'],
    ['2026-11-26 10:41:00+00', '2026-11-26T10:41:00.000Z', '2026-11-26 10:41:00+00:00'],
    ['2026-11-26 10:41:00+00:00', '2026-11-26T10:41:00.000Z', '2026-11-26 10:41:00+00:00'],
    ['2026-11-26 10:41:00 UTC', '2026-11-26T10:41:00.000Z', '2026-11-26 10:41:00+00:00'],
    ['2026-11-26 10:41:00 GMT', '2026-11-26T10:41:00.000Z', '2026-11-26 10:41:00+00:00'],
    ['2026-11-26 10:41:00+05:30', '2026-11-26T05:11:00.000Z', '2026-11-26 10:41:00+05:30'],
    ['2026-11-26 10:41:00+0530', '2026-11-26T05:11:00.000Z', '2026-11-26 10:41:00+05:30'],
    ['2026-11-26 10:41:00-08', '2026-11-26T18:41:00.000Z', '2026-11-26 10:41:00-08:00'],
    ['2026-11-26 23:30:00-01:00', '2026-11-27T00:30:00.000Z', '2026-11-26 23:30:00-01:00'],
    ['2026-11-26 10:41+00', '2026-11-26T10:41:00.000Z', '2026-11-26 10:41:00+00:00'],
    ['  2026-11-26 10:41:00Z  ', '2026-11-26T10:41:00.000Z', '2026-11-26 10:41:00+00:00'],
    ['2026-11-26 10:41:00.5+00', '2026-11-26T10:41:00.500Z', '2026-11-26 10:41:00.5+00:00'],
    ['2026-11-26 10:41:00.123456+00', '2026-11-26T10:41:00.123Z', '2026-11-26 10:41:00.123456+00:00'],
    ['2026-11-26T10:41:00.000001Z', '2026-11-26T10:41:00.000Z', '2026-11-26 10:41:00.000001+00:00'],
    ['2028-02-29 00:00:00Z', '2028-02-29T00:00:00.000Z', '2028-02-29 00:00:00+00:00'],
  ])('%j is %s, and %j for PostgreSQL', (input, iso, text) => {
    const target = parseTargetTime(input);
    expect(target.kind).toBe('time');
    expect(target.time.toISOString()).toBe(iso);
    expect(target.text).toBe(text);
    expect(parseTarget({targetTime: input})).toEqual(target);
  });

  it('keeps microseconds in the text PostgreSQL gets', () => {
    const target = parseTargetTime('2026-11-26 10:41:00.123456+00');
    expect(recoverySettings(target)).toEqual({recovery_target_time: '2026-11-26 10:41:00.123456+00:00'});
  });

  it.each([
    ['month 13', '2026-13-01 00:00:00+00', 'is not a valid date and time'],
    ['month 00', '2026-00-10 00:00:00+00', 'is not a valid date and time'],
    ['day 32', '2026-01-32 00:00:00+00', 'is not a valid date and time'],
    ['day 00', '2026-01-00 00:00:00+00', 'is not a valid date and time'],
    ['February 30', '2026-02-30 00:00:00+00', 'is not a valid date and time'],
    ['February 29 in a common year', '2026-02-29 12:00:00Z', 'is not a valid date and time'],
    ['April 31', '2026-04-31 12:00:00Z', 'is not a valid date and time'],
    ['hour 24', '2026-11-26 24:00:00+00', 'is not a valid date and time'],
    ['minute 60', '2026-11-26 10:60:00+00', 'is not a valid date and time'],
    ['second 60', '2026-11-26 10:41:60+00', 'is not a valid date and time'],
    ['a date only', '2026-11-26', 'is not a timestamp'],
    ['a zone name that is no zone', '2026-11-26 10:41:00 Europe/Atlantis', ': "Europe/Atlantis" is not a time zone'],
    ['junk', 'yesterday', 'is not a timestamp'],
    ['empty', '', 'is not a timestamp'],
    ['seven fraction digits', '2026-11-26 10:41:00.1234567+00', 'is not a timestamp'],
  ])('refuses %s', (_what, text, fragment) => {
    const error = thrown(() => parseTarget({targetTime: text}));
    expect(error).toBeInstanceOf(TargetError);
    expect((error as TargetError).exitCode).toBe(2);
    expect(error.message).toBe(`--target-time "${text}"${fragment.startsWith(':') ? '' : ' '}${fragment}`);
  });
});

describe('LSN, xid and name targets', () => {
  it.each(['', '0', '0/', 'X/Y', '0/3000060 ', '1/2/3', '0x0/3000060', '123456789/0'])('refuses LSN %j', (text) => {
    // A trailing space is tolerated by parseLsn (it trims), so only check the ones that must fail.
    if (text === '0/3000060 ') {
      expect(parseTarget({targetLsn: text})).toEqual({kind: 'lsn', lsn: 0x3000060n});
      return;
    }
    const error = thrown(() => parseTarget({targetLsn: text}));
    expect(error).toBeInstanceOf(TargetError);
    expect(error.message).toBe(`--target-lsn "${text}" is not an LSN`);
  });

  it.each(['', '-5', '0', '1', '2', '12a', '1.5', ' 100', '0x10', '123456789012345678901'])('refuses xid %j', (text) => {
    const error = thrown(() => parseTarget({targetXid: text}));
    expect(error).toBeInstanceOf(TargetError);
    expect((error as TargetError).exitCode).toBe(2);
    expect(error.message).toBe(`--target-xid "${text}" is not a transaction id`);
  });

  it.each([
    ['empty', ''],
    ['64 characters', 'n'.repeat(64)],
    ['a NUL byte', 'a\0b'],
  ])('refuses a restore point name that is %s', (_what, name) => {
    const error = thrown(() => parseTarget({targetName: name}));
    expect(error).toBeInstanceOf(TargetError);
    expect(error.message).toBe(`--target-name "${name}" is not a restore point name (1 to 63 characters)`);
  });
});

describe('recovery settings', () => {
  it.each([
    ['latest', {kind: 'latest'}, {}],
    ['lsn', {kind: 'lsn', lsn: 0x3000060n}, {recovery_target_lsn: '0/3000060'}],
    ['xid', {kind: 'xid', xid: 7391n}, {recovery_target_xid: '7391'}],
    ['name', {kind: 'name', name: 'before-migration'}, {recovery_target_name: 'before-migration'}],
  ] as Array<[string, Target, Record<string, string>]>)('%s target → settings', (_kind, target, settings) => {
    expect(recoverySettings(target)).toEqual(settings);
  });

  it('renders a time target with its zone', () => {
    expect(recoverySettings(parseTargetTime('2026-11-26T10:41:00+05:30'))).toEqual({recovery_target_time: '2026-11-26 10:41:00+05:30'});
  });

  it('quotes values for postgresql.conf, doubling quotes and backslashes', () => {
    expect(quoteConfValue('plain')).toBe("'plain'");
    expect(quoteConfValue('')).toBe("''");
    expect(quoteConfValue("it's")).toBe("'it''s'");
    expect(quoteConfValue("''")).toBe("''''''");
    expect(quoteConfValue('a\\b')).toBe("'a\\\\b'");
    expect(quoteConfValue("pgbk archive-get --policy '/etc/pgbk/my policy.yaml' %f %p"))
      .toBe("'pgbk archive-get --policy ''/etc/pgbk/my policy.yaml'' %f %p'");
  });

  it('describes and serializes targets', () => {
    expect(describeTarget({kind: 'latest'})).toContain('latest');
    expect(describeTarget(parseTargetTime('2026-11-26 10:41:00Z'))).toBe('time 2026-11-26 10:41:00+00:00');
    expect(describeTarget({kind: 'lsn', lsn: 0x3000060n})).toBe('LSN 0/3000060');
    expect(describeTarget({kind: 'xid', xid: 12n})).toBe('transaction 12');
    expect(describeTarget({kind: 'name', name: 'p'})).toBe('restore point "p"');
    expect(targetToJson(parseTargetTime('2026-11-26 10:41:00.25+01'))).toEqual({
      kind: 'time', time: '2026-11-26T09:41:00.250Z', text: '2026-11-26 10:41:00.25+01:00',
    });
    expect(targetToJson({kind: 'xid', xid: 8589934592n})).toEqual({kind: 'xid', xid: '8589934592'});
  });
});
