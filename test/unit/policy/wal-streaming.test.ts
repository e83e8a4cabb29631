import {homedir} from 'node:os';
import {join} from 'node:path';
import {describe, expect, it} from 'vitest';
import {PolicyError} from '../../../src/errors.js';
import {parsePolicy} from '../../../src/policy/load.js';

const FILE = '/etc/pgbk/policies/orders.yaml';
const base = (strategy = 'pitr') => `strategy: ${strategy}
postgres:
  url: postgresql://postgres@127.0.0.1:5432/orders
repository:
  url: file:///var/backups/pgbk/orders
`;

describe('policy: wal_streaming', () => {
  it('absent: no streaming; present: enabled by default, 1 s, a spool per policy', () => {
    expect(parsePolicy(base(), FILE, {}).walStreaming).toBeUndefined();
    expect(parsePolicy(`${base()}wal_streaming:\n  slot: pgbk_orders\n`, FILE, {}).walStreaming).toEqual({
      enabled: true, slot: 'pgbk_orders', flushIntervalSeconds: 1, spoolDir: join(homedir(), '.pgbk', 'wal-receive', 'orders'),
    });
    expect(parsePolicy(`${base()}wal_streaming: {enabled: false, slot: s, flush_interval: 5s, spool_dir: /srv/spool}\n`, FILE, {}).walStreaming)
      .toEqual({enabled: false, slot: 's', flushIntervalSeconds: 5, spoolDir: '/srv/spool'});
  });

  it('bad input names the key and line', () => {
    const bad = (text: string) => () => parsePolicy(`${base()}${text}`, FILE, {});
    expect(bad('wal_streaming:\n  slot: Bad-Name\n')).toThrow(PolicyError);
    expect(bad('wal_streaming:\n  slot: Bad-Name\n')).toThrow(/orders\.yaml:7: wal_streaming\.slot: expected a replication slot name/);
    expect(bad('wal_streaming:\n  enabled: true\n')).toThrow(/wal_streaming\.slot/);
    expect(bad('wal_streaming:\n  slot: s\n  flush_interval: 0s\n')).toThrow(/wal_streaming\.flush_interval: expected a duration of at least 1s/);
    expect(bad('wal_streaming:\n  slot: s\n  spool_dir: relative\n')).toThrow(/wal_streaming\.spool_dir: expected an absolute path/);
    expect(bad('wal_streaming:\n  slot: s\n  sloth: 1\n')).toThrow(/wal_streaming\.sloth: unknown key/);
    expect(() => parsePolicy(`${base('dump')}wal_streaming:\n  slot: s\n`, FILE, {})).toThrow(/wal_streaming: the dump strategy archives no WAL/);
  });
});
