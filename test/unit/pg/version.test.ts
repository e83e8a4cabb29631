import {describe, expect, it} from 'vitest';
import {UnsupportedServerError} from '../../../src/errors.js';
import {checkServerVersion, formatVersionNum, MIN_SERVER_VERSION_NUM} from '../../../src/pg/version.js';
import {settingChecks} from '../../../src/status/check.js';
import type {ServerSettings} from '../../../src/pg/status-queries.js';

describe('supported server versions', () => {
  it('formats version numbers as PostgreSQL prints them', () => {
    expect(formatVersionNum(150004)).toBe('15.4');
    expect(formatVersionNum(120020)).toBe('12.20');
    expect(formatVersionNum(90624)).toBe('9.6.24');
    expect(formatVersionNum(MIN_SERVER_VERSION_NUM)).toBe('13.0');
  });

  it('refuses a server older than 13, naming both versions (exit 2)', () => {
    expect(() => checkServerVersion(130000, 'x')).not.toThrow();
    expect(() => checkServerVersion(170002, 'x')).not.toThrow();
    let error: unknown;
    try {
      checkServerVersion(120017, 'the server at postgresql://db/orders');
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(UnsupportedServerError);
    expect((error as UnsupportedServerError).exitCode).toBe(2);
    expect((error as Error).message).toBe('the server at postgresql://db/orders runs PostgreSQL 12.17; pgbk needs PostgreSQL 13.0 or later');
  });

  it('makes pgbk check fail on an older server, for every strategy', () => {
    const old: ServerSettings = {
      inRecovery: false, versionNum: 120017, walLevel: 'replica', archiveMode: 'on', archiveCommand: 'pgbk archive-push --policy orders %p',
      archiveLibrary: '', maxWalSenders: 10, currentUser: 'postgres', superuser: true, replication: true, replicationRoles: ['postgres'],
    };
    const policy = {name: 'orders', file: '/srv/pgbk/orders.yaml', postgres: {url: 'postgresql://postgres@db/orders'}};
    for (const strategy of ['dump', 'pitr'] as const) {
      const result = settingChecks(strategy, old, policy, []).find((candidate) => candidate.name === 'server version');
      expect(result?.status).toBe('fail');
      expect(result?.detail).toBe('PostgreSQL 12.17 is older than pgbk supports (13.0 or later)');
    }
    expect(settingChecks('dump', {...old, versionNum: 150004}, policy, [])).toEqual([]);
  });
});
