import {mkdtemp, mkdir, rm, writeFile, chmod} from 'node:fs/promises';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import {afterAll, beforeAll, describe, expect, it} from 'vitest';
import {PolicyError} from '../../../src/errors.js';
import {loadPolicy, parsePolicy, policiesDirectory, resolvePolicyPath} from '../../../src/policy/load.js';
import {policySchema, STRATEGY_OBJECTIVES} from '../../../src/policy/schema.js';
import {parseDuration} from '../../../src/policy/duration.js';
import {ZSTD_AVAILABLE} from '../../../src/util/codec.js';

const FILE = '/etc/pgbk/policies/orders.yaml';

const FULL = `# policies/orders.yaml — the file name is the policy name
strategy: pitr
postgres:
  url: postgresql://postgres@127.0.0.1:5432/orders
  data_dir: /var/lib/postgresql/16/main
  bin_dir: /usr/lib/postgresql/16/bin
repository:
  url: s3://pgbk-backups/orders
  endpoint: http://127.0.0.1:9000
  region: us-east-1
  force_path_style: true
  access_key_id: \${AWS_ACCESS_KEY_ID}
  secret_access_key: \${AWS_SECRET_ACCESS_KEY}
schedule:
  backup: "0 2 * * *"
  expire: "30 2 * * *"
  drill: "0 0 4 * * 0"
retention:
  backups: 7
  days: 14
objectives:
  rpo: 5m
  rto: 1h30m
backup:
  checkpoint: spread
  compression_level: 6
  max_object_size: 64MiB
dump:
  tables: [public.orders, public.items]
`;

const MINIMAL = `strategy: pitr
postgres:
  url: postgresql://postgres@127.0.0.1:5432/orders
repository:
  url: file:///var/backups/pgbk/orders
`;

const ENV = {AWS_ACCESS_KEY_ID: 'AKIDEXAMPLE', AWS_SECRET_ACCESS_KEY: 'wJalrXUtnFEMI/K7MDENG'};

function policyError(text: string, env: NodeJS.ProcessEnv = {}): PolicyError {
  try {
    parsePolicy(text, FILE, env);
  } catch (error) {
    expect(error).toBeInstanceOf(PolicyError);
    return error as PolicyError;
  }
  throw new Error('expected a PolicyError');
}

describe('parsePolicy: valid policies', () => {
  it('normalizes the full example', () => {
    const policy = parsePolicy(FULL, FILE, ENV);
    expect(policy).toEqual({
      name: 'orders',
      file: FILE,
      strategy: 'pitr',
      postgres: {url: 'postgresql://postgres@127.0.0.1:5432/orders', dataDir: '/var/lib/postgresql/16/main', binDir: '/usr/lib/postgresql/16/bin'},
      repository: {
        url: 's3://pgbk-backups/orders',
        endpoint: 'http://127.0.0.1:9000',
        region: 'us-east-1',
        forcePathStyle: true,
        accessKeyId: 'AKIDEXAMPLE',
        secretAccessKey: 'wJalrXUtnFEMI/K7MDENG',
      },
      schedule: {backup: '0 2 * * *', expire: '30 2 * * *', drill: '0 0 4 * * 0'},
      jobTimeoutSeconds: {backup: 12 * 3600, expire: 2 * 3600, drill: 3600 + 1800},
      retention: {backups: 7, days: 14},
      objectives: {rpoSeconds: 300, rtoSeconds: 5400},
      backup: {checkpoint: 'spread', maxObjectBytes: 64 * 1024 * 1024},
      compression: {codec: 'gzip', level: 6},
      dump: {tables: ['public.orders', 'public.items']},
      drill: {checks: [], heartbeat: false, timeoutSeconds: 3600},
    });
    expect(Object.isFrozen(policy)).toBe(true);
    expect(Object.isFrozen(policy.repository)).toBe(true);
    expect(Object.isFrozen(policy.dump.tables)).toBe(true);
  });

  it('reads schedule.timeout per job, and rejects a malformed one', () => {
    const policy = parsePolicy(`${MINIMAL}schedule:\n  backup: "0 2 * * *"\n  timeout:\n    backup: 90m\n    drill: 3h\n`, FILE, {});
    expect(policy.jobTimeoutSeconds).toEqual({backup: 5400, expire: 7200, drill: 10800});
    expect(() => parsePolicy(`${MINIMAL}schedule:\n  timeout:\n    backup: soon\n`, FILE, {})).toThrow(/schedule\.timeout\.backup: expected a duration/);
    expect(() => parsePolicy(`${MINIMAL}schedule:\n  timeout:\n    restore: 1h\n`, FILE, {})).toThrow(/schedule\.timeout/);
  });

  it('backup.max_object_size: a size with a unit or bytes, from 1MiB to 64GiB', () => {
    const withSection = (section: string) => parsePolicy(`${MINIMAL}\n${section}\n`, '/srv/pgbk/billing.yml', {});
    expect(withSection('backup: {max_object_size: 64MiB}').backup.maxObjectBytes).toBe(64 * 1024 ** 2);
    expect(withSection('backup: {max_object_size: 2GiB}').backup.maxObjectBytes).toBe(2 * 1024 ** 3);
    expect(withSection('backup: {max_object_size: 500MB}').backup.maxObjectBytes).toBe(500e6);
    expect(withSection('backup: {max_object_size: 8388608}').backup.maxObjectBytes).toBe(8388608);
    expect(() => withSection('backup: {max_object_size: lots}')).toThrow(/backup\.max_object_size: expected a size such as 1GiB, 64MiB or 500MB/);
    expect(() => withSection('backup: {max_object_size: 512KiB}')).toThrow(/backup\.max_object_size: expected a size from 1MiB to 64GiB/);
    expect(() => withSection('backup: {max_object_size: 1TiB}')).toThrow(/backup\.max_object_size: expected a size from 1MiB to 64GiB/);
  });

  it('compression: codec and level, checked per codec; the old backup.compression_level means gzip', () => {
    const withSection = (section: string) => parsePolicy(`${MINIMAL}\n${section}\n`, '/srv/pgbk/billing.yml', {});
    expect(withSection('compression: {codec: gzip, level: 9}').compression).toEqual({codec: 'gzip', level: 9});
    expect(withSection('compression: {codec: none}').compression).toEqual({codec: 'none', level: 0});
    expect(() => withSection('compression: {codec: gzip, level: 12}')).toThrow(/compression.level: 12 is out of range for gzip \(1..9\)/);
    expect(() => withSection('compression: {codec: lz4}')).toThrow(/compression/);
    expect(withSection('backup: {compression_level: 4}').compression).toEqual({codec: 'gzip', level: 4});
    if (ZSTD_AVAILABLE) expect(withSection('compression: {codec: zstd, level: 19}').compression).toEqual({codec: 'zstd', level: 19});
  });

  it('fills in defaults for a minimal policy', () => {
    const policy = parsePolicy(MINIMAL, '/srv/pgbk/billing.yml', {});
    expect(policy.name).toBe('billing');
    expect(policy.repository).toEqual({url: 'file:///var/backups/pgbk/orders'});
    expect(policy.postgres.dataDir).toBeUndefined();
    expect(policy.schedule).toEqual({});
    expect(policy.jobTimeoutSeconds).toEqual({backup: 12 * 3600, expire: 2 * 3600, drill: 3600 + 1800});
    expect(policy.retention).toEqual({});
    expect(policy.backup).toEqual({checkpoint: 'fast', maxObjectBytes: 1024 ** 3});
    expect(policy.compression).toEqual(ZSTD_AVAILABLE ? {codec: 'zstd', level: 1} : {codec: 'gzip', level: 1});
    expect(policy.dump).toEqual({tables: []});
    expect(policy.objectives).toEqual({rpoSeconds: 300, rtoSeconds: 1800});
  });

  it.each([
    ['dump', 24 * 3600, 4 * 3600],
    ['pitr', 5 * 60, 30 * 60],
    ['replica', 30, 5 * 60],
    ['patroni', 5, 60],
  ] as const)('strategy %s defaults to RPO %is and RTO %is (STRATEGY_OBJECTIVES)', (strategy, rpo, rto) => {
    expect(parseDuration(STRATEGY_OBJECTIVES[strategy].rpo)).toBe(rpo);
    expect(parseDuration(STRATEGY_OBJECTIVES[strategy].rto)).toBe(rto);
    const policy = parsePolicy(MINIMAL.replace('pitr', strategy), FILE, {});
    expect(policy.strategy).toBe(strategy);
    expect(policy.objectives).toEqual({rpoSeconds: rpo, rtoSeconds: rto});
  });

  it('lets one objective override the strategy default and keeps the other', () => {
    const policy = parsePolicy(`${MINIMAL.replace('pitr', 'dump')}objectives:\n  rto: 2h\n`, FILE, {});
    expect(policy.objectives).toEqual({rpoSeconds: 86400, rtoSeconds: 7200});
  });

  it('expands ${VAR} anywhere in a string, several per value', () => {
    const text = MINIMAL
      .replace('postgresql://postgres@127.0.0.1:5432/orders', 'postgresql://${PGUSER_X}:${PGPASS_X}@${PGHOST_X}:5432/orders')
      .replace('file:///var/backups/pgbk/orders', 'file://${BACKUP_ROOT}/orders');
    const policy = parsePolicy(`${text}dump:\n  tables: ["\${SCHEMA}.t"]\n`, FILE, {
      PGUSER_X: 'app', PGPASS_X: 's3cr3t', PGHOST_X: 'db.internal', BACKUP_ROOT: '/srv/backups', SCHEMA: 'sales',
    });
    expect(policy.postgres.url).toBe('postgresql://app:s3cr3t@db.internal:5432/orders');
    expect(policy.repository.url).toBe('file:///srv/backups/orders');
    expect(policy.dump.tables).toEqual(['sales.t']);
  });

  it('expands a variable set to the empty string, and leaves $VAR and $ alone', () => {
    const policy = parsePolicy(`${MINIMAL}dump:\n  tables: ["a\${EMPTY}b", "$HOME", "x$"]\n`, FILE, {EMPTY: ''});
    expect(policy.dump.tables).toEqual(['ab', '$HOME', 'x$']);
  });

  it('does not expand comments', () => {
    expect(() => parsePolicy(`# uses \${NOT_SET_ANYWHERE}\n${MINIMAL}`, FILE, {})).not.toThrow();
  });

  it('matches the schema for the full example', () => {
    const expanded = FULL.replace('${AWS_ACCESS_KEY_ID}', 'a').replace('${AWS_SECRET_ACCESS_KEY}', 'b');
    expect(policySchema.safeParse({strategy: 'pitr'}).success).toBe(false);
    expect(() => parsePolicy(expanded, FILE, {})).not.toThrow();
  });
});

describe('parsePolicy: broken policies', () => {
  it.each([
    ['a YAML syntax error (unclosed quote)', `${MINIMAL}schedule:\n  backup: "0 2 * * *\n`, {}, `${FILE}:8:1: YAML syntax error: Missing closing "quote`],
    ['a YAML syntax error (bad indentation)', 'strategy: pitr\npostgres:\n  url: x\n   bad: [\n', {}, `${FILE}:3:8: YAML syntax error:`],
    ['a duplicate key', `${MINIMAL}strategy: dump\n`, {}, `${FILE}:6:1: YAML syntax error: Map keys must be unique`],
    ['an unknown top-level key', `${MINIMAL}colour: blue\n`, {}, `${FILE}:6: colour: unknown key`],
    ['an unknown nested key', MINIMAL.replace('repository:\n', 'repository:\n  bucket: x\n'), {}, `${FILE}:5: repository.bucket: unknown key`],
    // the unknown key is reported before the missing section it was meant to be
    ['a misspelt section', MINIMAL.replace('repository:', 'repositories:'), {}, `${FILE}:4: repositories: unknown key`],
    ['a misspelt optional section', `${MINIMAL}retentions:\n  days: 3\n`, {}, `${FILE}:6: retentions: unknown key`],
    ['a string for a number', `${MINIMAL}retention:\n  backups: seven\n`, {}, `${FILE}:7: retention.backups: Invalid input: expected number, received string`],
    ['a string for a boolean', `${MINIMAL}  force_path_style: "yes"\n`, {}, `${FILE}:6: repository.force_path_style: Invalid input: expected boolean, received string`],
    ['a fraction for an integer', `${MINIMAL}retention:\n  backups: 1.5\n`, {}, `${FILE}:7: retention.backups:`],
    ['a number for a duration', `${MINIMAL}objectives:\n  rpo: 5\n`, {}, `${FILE}:7: objectives.rpo:`],
    ['a bad duration', `${MINIMAL}objectives:\n  rpo: 5 minutes\n`, {}, `${FILE}:7: objectives.rpo: expected a duration such as 30s, 5m, 1h or 2d`],
    ['a bad cron', `${MINIMAL}schedule:\n  backup: "@daily"\n`, {}, `${FILE}:7: schedule.backup: expected a cron expression`],
    ['an unknown strategy', MINIMAL.replace('pitr', 'snapshot'), {}, `${FILE}:1: strategy: Invalid option: expected one of "dump"|"pitr"|"replica"|"patroni"`],
    ['an unset variable', `${MINIMAL}  secret_access_key: \${PGBK_TEST_UNSET}\n`, {}, `${FILE}:6: repository.secret_access_key: environment variable PGBK_TEST_UNSET is not set`],
    ['an unset variable next to a set one', MINIMAL.replace('127.0.0.1', '${HOST_A}${HOST_B}'), {HOST_A: 'x'}, `${FILE}:3: postgres.url: environment variable HOST_B is not set`],
    ['an http repository url', MINIMAL.replace('file:///var/backups/pgbk/orders', 'https://b/orders'), {}, `${FILE}:5: repository.url: expected s3://<bucket>/<prefix> or file:///<absolute path>`],
    ['an empty s3 url', MINIMAL.replace('file:///var/backups/pgbk/orders', 's3://'), {}, `${FILE}:5: repository.url: expected s3://`],
    ['a bare path as repository', MINIMAL.replace('file:///var/backups/pgbk/orders', '/var/backups'), {}, `${FILE}:5: repository.url: expected s3://`],
    ['a non-libpq postgres url', MINIMAL.replace('postgresql://', 'mysql://'), {}, `${FILE}:3: postgres.url: expected a libpq URL`],
    ['a relative data_dir', MINIMAL.replace('  url: postgresql', '  data_dir: data\n  url: postgresql'), {}, `${FILE}:3: postgres.data_dir: expected an absolute path`],
    ['an ftp endpoint', `${MINIMAL}  endpoint: ftp://x\n`, {}, `${FILE}:6: repository.endpoint: expected an http:// or https:// URL`],
    ['a missing section', 'strategy: pitr\nrepository:\n  url: s3://b/x\n', {}, `${FILE}: postgres: Invalid input: expected object, received undefined`],
    ['an empty file', '', {}, `${FILE}: strategy: Invalid option`],
    ['a list at the top', '- a\n', {}, `${FILE}: (top level): Invalid input: expected object, received array`],
  ])('%s', (_what, text, env, fragment) => {
    const error = policyError(text, env as NodeJS.ProcessEnv);
    expect(error.exitCode).toBe(2);
    expect(error.code).toBe('policy.invalid');
    expect(error.message.startsWith(fragment), `"${error.message}" should start with "${fragment}"`).toBe(true);
  });

  it('names the unset variable and hints where to set it', () => {
    const error = policyError(`${MINIMAL}  access_key_id: \${MY_KEY}\n`);
    expect(error.message).toContain('MY_KEY');
    expect(error.hint).toContain('export MY_KEY');
  });

  it('does not put an expanded secret into the message of a later error', () => {
    const error = policyError(`${MINIMAL}  secret_access_key: \${SECRET}\n  colour: red\n`, {SECRET: 'very-secret-value'});
    expect(error.message).toBe(`${FILE}:7: repository.colour: unknown key`);
    expect(error.message).not.toContain('very-secret-value');
  });
});

describe('locating policy files', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'pgbk-unit-policy-'));
    await mkdir(join(dir, 'policies'));
    await writeFile(join(dir, 'policies', 'orders.yaml'), MINIMAL, {mode: 0o600});
    await chmod(join(dir, 'policies', 'orders.yaml'), 0o600);
  });
  afterAll(async () => {
    await rm(dir, {recursive: true, force: true});
  });

  it('finds the policies directory: --policies, PGBK_POLICIES, ./policies, /etc/pgbk/policies', () => {
    expect(policiesDirectory({policiesDir: 'p', env: {PGBK_POLICIES: '/x'}, cwd: '/work'})).toBe('/work/p');
    expect(policiesDirectory({env: {PGBK_POLICIES: 'q'}, cwd: '/work'})).toBe('/work/q');
    expect(policiesDirectory({env: {}, cwd: dir})).toBe(join(dir, 'policies'));
    expect(policiesDirectory({env: {}, cwd: join(dir, 'policies')})).toBe('/etc/pgbk/policies');
  });

  it('resolves a name in the policies directory and a path as a path', () => {
    expect(resolvePolicyPath({policy: 'orders', env: {}, cwd: dir})).toBe(join(dir, 'policies', 'orders.yaml'));
    expect(resolvePolicyPath({env: {PGBK_POLICY: 'orders', PGBK_POLICIES: '/p'}, cwd: dir})).toBe('/p/orders.yaml');
    expect(resolvePolicyPath({policy: 'x.yml', env: {}, cwd: '/w'})).toBe('/w/x.yml');
    expect(resolvePolicyPath({policy: './a/b', env: {}, cwd: '/w'})).toBe('/w/a/b');
    expect(resolvePolicyPath({policy: '/abs/p.yaml', env: {}, cwd: '/w'})).toBe('/abs/p.yaml');
    expect(() => resolvePolicyPath({env: {}, cwd: '/w'})).toThrow(PolicyError);
  });

  it('loads a policy by name, and names a missing file', async () => {
    const policy = await loadPolicy({policy: 'orders', env: {}, cwd: dir});
    expect(policy.name).toBe('orders');
    expect(policy.file).toBe(join(dir, 'policies', 'orders.yaml'));
    const missing = await loadPolicy({policy: 'nope', env: {}, cwd: dir}).catch((error: unknown) => error);
    expect(missing).toBeInstanceOf(PolicyError);
    expect((missing as PolicyError).exitCode).toBe(2);
    expect((missing as PolicyError).message).toBe(`cannot read policy file ${join(dir, 'policies', 'nope.yaml')}: no such file`);
  });
});
