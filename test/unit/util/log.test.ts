// pgbk's diagnostics: PGBK_LOG_LEVEL, levels of what pgbk writes, JSON lines under schedule, `pgbk:` on every line.

import {describe, expect, it} from 'vitest';
import {diagnosticAsJson, diagnosticsStream, journalPrefix, levelOfText, logLevelOf} from '../../../src/util/log.js';
import {prefixLines} from '../../../src/main.js';
import {backgroundLine} from '../../../src/wal/background-log.js';

describe('log levels', () => {
  it('reads PGBK_LOG_LEVEL (info when unset, undefined when unknown)', () => {
    expect(logLevelOf({})).toBe('info');
    expect(logLevelOf({PGBK_LOG_LEVEL: 'WARN'})).toBe('warn');
    expect(logLevelOf({PGBK_LOG_LEVEL: 'debug'})).toBe('debug');
    expect(logLevelOf({PGBK_LOG_LEVEL: 'loud'})).toBeUndefined();
  });

  it('classifies what pgbk writes', () => {
    expect(levelOfText('pgbk: error: no\n')).toBe('error');
    expect(levelOfText('pgbk: hint: try\n')).toBe('error');
    expect(levelOfText('error: unknown option --x\n')).toBe('error');
    expect(levelOfText('pgbk: warning: careful\n')).toBe('warn');
    expect(levelOfText('  caused by: ECONNREFUSED\n')).toBe('debug');
    expect(levelOfText('full backup 20261126T020002Z: 3 MB read\n')).toBe('info');
    expect(journalPrefix('error')).toBe('<3>');
    expect(journalPrefix('info')).toBe('<6>');
  });

  it('drops lines below the level and writes JSON under schedule', () => {
    const written: string[] = [];
    const out = {write: (text: string) => written.push(text)} as unknown as NodeJS.WritableStream;
    const stream = diagnosticsStream(out, {level: 'warn'});
    stream.write('pgbk: drill: step\n');
    stream.write('pgbk: warning: careful\n');
    stream.write('pgbk: error: broken\n');
    expect(written).toEqual(['pgbk: warning: careful\n', 'pgbk: error: broken\n']);
    const time = new Date('2026-11-26T10:00:00Z');
    expect(JSON.parse(diagnosticAsJson('pgbk: warning: /etc/pgbk/policies/a.yaml holds a secret\n', 'warn', time)))
      .toEqual({time: '2026-11-26T10:00:00.000Z', level: 'warn', event: 'warning', message: '/etc/pgbk/policies/a.yaml holds a secret'});
  });
});

describe('every line starts with pgbk:', () => {
  it('prefixes the lines of a multi-line message and its hint', () => {
    expect(prefixLines('pgbk: error: ', 'the server stopped:\nLOG:  redo starts\nFATAL:  no')).toBe(
      'pgbk: error: the server stopped:\npgbk:   LOG:  redo starts\npgbk:   FATAL:  no\n');
    expect(prefixLines('pgbk: hint: ', 'run pgbk verify')).toBe('pgbk: hint: run pgbk verify\n');
  });

  it('keeps a background failure on one line', () => {
    expect(backgroundLine(new Date('2026-11-26T10:00:00Z'), 'archive-prefetch', 'cannot fetch X:\nconnection reset')).toBe(
      '2026-11-26T10:00:00.000Z pgbk: archive-prefetch: cannot fetch X: | connection reset\n');
  });
});
