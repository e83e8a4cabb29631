import {mkdtemp, mkdir, rm, writeFile, chmod, stat} from 'node:fs/promises';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import {afterAll, beforeAll, describe, expect, it} from 'vitest';
import {PolicyError} from '../../../src/errors.js';
import {loadPolicy, parsePolicy, policiesDirectory, resolvePolicyPath} from '../../../src/policy/load.js';
import {policySchema, STRATEGY_OBJECTIVES} from '../../../src/policy/schema.js';
import {parseDuration} from '../../../src/policy/duration.js';
import {assertPolicyNotWritableByOthers} from '../../../src/policy/locate.js';
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
      schedule: {backup: '0 2 * * *', expire: '30 2 * * *', drill: '0 0 4 * * 0', timezone: 'UTC'},
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
    expect(policy.schedule).toEqual({timezone: 'UTC'});
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
    ['a fractional number for a duration', `${MINIMAL}objectives:\n  rpo: 1.5\n`, {}, `${FILE}:7: objectives.rpo:`],
    ['a bad duration', `${MINIMAL}objectives:\n  rpo: 5 minutes\n`, {}, `${FILE}:7: objectives.rpo: expected a duration such as 30s, 5m (or 5min), 1h30m or 2d (a bare number is seconds)`],
    ['a bad cron', `${MINIMAL}schedule:\n  backup: "@reboot"\n`, {}, `${FILE}:7: schedule.backup: expected a cron expression or one of @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly`],
    ['an unknown time zone', `${MINIMAL}schedule:\n  timezone: Europe/Atlantis\n`, {}, `${FILE}:7: schedule.timezone: expected an IANA time zone name such as UTC or Europe/Berlin`],
    ['an offset for a time zone', `${MINIMAL}schedule:\n  timezone: "+01:00"\n`, {}, `${FILE}:7: schedule.timezone: expected an IANA time zone name`],
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

  it('finds the policies directory: --policies, PGBK_POLICIES, /etc/pgbk/policies, never the current directory', () => {
    expect(policiesDirectory({policiesDir: 'p', env: {PGBK_POLICIES: '/x'}, cwd: '/work'})).toBe('/work/p');
    expect(policiesDirectory({env: {PGBK_POLICIES: 'q'}, cwd: '/work'})).toBe('/work/q');
    // dir holds policies/orders.yaml: still not searched
    expect(policiesDirectory({env: {}, cwd: dir})).toBe('/etc/pgbk/policies');
  });

  it('resolves a name in the policies directory (.yaml, else .yml) and a path as a path', async () => {
    const policies = join(dir, 'policies');
    expect(resolvePolicyPath({policy: 'orders', policiesDir: policies, env: {}, cwd: '/'})).toBe(join(policies, 'orders.yaml'));
    expect(resolvePolicyPath({env: {PGBK_POLICY: 'orders', PGBK_POLICIES: policies}, cwd: '/'})).toBe(join(policies, 'orders.yaml'));
    await writeFile(join(policies, 'short.yml'), MINIMAL, {mode: 0o600});
    expect(resolvePolicyPath({policy: 'short', policiesDir: policies, env: {}, cwd: '/'})).toBe(join(policies, 'short.yml'));
    await writeFile(join(policies, 'short.yaml'), MINIMAL, {mode: 0o600});
    expect(() => resolvePolicyPath({policy: 'short', policiesDir: policies, env: {}, cwd: '/'}))
      .toThrow(`policy short is ambiguous: both ${join(policies, 'short.yaml')} and ${join(policies, 'short.yml')} exist`);
    await rm(join(policies, 'short.yaml'));
    await rm(join(policies, 'short.yml'));
    expect(resolvePolicyPath({policy: 'x.yml', env: {}, cwd: '/w'})).toBe('/w/x.yml');
    expect(resolvePolicyPath({policy: './a/b', env: {}, cwd: '/w'})).toBe('/w/a/b');
    expect(resolvePolicyPath({policy: '/abs/p.yaml', env: {}, cwd: '/w'})).toBe('/abs/p.yaml');
    expect(() => resolvePolicyPath({env: {}, cwd: '/w'})).toThrow(PolicyError);
  });

  it('loads a policy by name, and names where it looked for a missing one', async () => {
    const policies = join(dir, 'policies');
    const policy = await loadPolicy({policy: 'orders', policiesDir: policies, env: {}, cwd: '/'});
    expect(policy.name).toBe('orders');
    expect(policy.file).toBe(join(policies, 'orders.yaml'));
    const missing = await loadPolicy({policy: 'nope', env: {PGBK_POLICIES: policies}, cwd: '/'}).catch((error: unknown) => error);
    expect(missing).toBeInstanceOf(PolicyError);
    expect((missing as PolicyError).exitCode).toBe(2);
    expect((missing as PolicyError).message).toBe(`no policy nope: looked for ${join(policies, 'nope.yaml')} and ${join(policies, 'nope.yml')} (policies directory ${policies}: PGBK_POLICIES)`);
    // the current directory holds policies/orders.yaml, but a name is never looked up there
    const notHere = await loadPolicy({policy: 'orders', env: {}, cwd: dir}).catch((error: unknown) => error);
    expect((notHere as PolicyError).message).toBe('no policy orders: looked for /etc/pgbk/policies/orders.yaml and /etc/pgbk/policies/orders.yml (policies directory /etc/pgbk/policies: the default; --policies and PGBK_POLICIES are not set)');
    const path = await loadPolicy({policy: join(dir, 'missing.yaml'), env: {}, cwd: '/'}).catch((error: unknown) => error);
    expect((path as PolicyError).message).toBe(`cannot read policy file ${join(dir, 'missing.yaml')}: no such file`);
  });

  it('names a .yml policy after its file, like a .yaml one', async () => {
    const file = join(dir, 'short.yml');
    await writeFile(file, MINIMAL, {mode: 0o600});
    expect((await loadPolicy({policy: file, env: {}, cwd: '/'})).name).toBe('short');
  });
});

describe('policy files others can write', () => {
  let base: string;
  beforeAll(async () => {
    base = await mkdtemp(join(tmpdir(), 'pgbk-unit-perm-'));
  });
  afterAll(async () => {
    await rm(base, {recursive: true, force: true});
  });

  it.each([
    [0o620, 0o700, 'policy file', 'its group', '0620'],
    [0o602, 0o700, 'policy file', 'every user', '0602'],
    [0o600, 0o770, 'policy directory', 'its group', '0770'],
    [0o600, 0o777, 'policy directory', 'every user', '0777'],
  ])('refuses file mode %s in a directory of mode %s to root and to other users (exit 2, naming path and mode)', async (fileMode, dirMode, what, who, shown) => {
    const dirOf = await mkdtemp(join(base, 'd-'));
    const file = join(dirOf, 'p.yaml');
    await writeFile(file, MINIMAL);
    await chmod(file, fileMode);
    await chmod(dirOf, dirMode);
    const owner = (await stat(file)).uid;
    const path = what === 'policy file' ? file : dirOf;
    for (const uid of [0, owner + 4242]) {
      let refused: unknown;
      try {
        assertPolicyNotWritableByOthers(file, {uid});
      } catch (error) {
        refused = error;
      }
      expect(refused).toBeInstanceOf(PolicyError);
      expect((refused as PolicyError).exitCode).toBe(2);
      expect((refused as PolicyError).message).toContain(`${what} ${path} is writable by ${who} (mode ${shown}): refused`);
      expect((refused as PolicyError).hint).toBe(`chmod go-w ${path}`);
    }
    // the file's owner (not root) is trusted with its own file
    if (owner !== 0) expect(() => assertPolicyNotWritableByOthers(file, {uid: owner})).not.toThrow();
  });

  it('accepts a file and directory only their owner can write', async () => {
    const dirOf = await mkdtemp(join(base, 'ok-'));
    const file = join(dirOf, 'p.yaml');
    await writeFile(file, MINIMAL);
    await chmod(file, 0o644);
    await chmod(dirOf, 0o755);
    expect(() => assertPolicyNotWritableByOthers(file, {uid: 0})).not.toThrow();
    expect(() => assertPolicyNotWritableByOthers(file, {uid: 4242})).not.toThrow();
  });
});

describe('parsePolicy: repository encryption, object lock, storage class, server-side encryption', () => {
  const s3 = `strategy: pitr
postgres:
  url: postgresql://postgres@127.0.0.1:5432/orders
repository:
  url: s3://backups/orders
`;
  it('reads them', () => {
    const policy = parsePolicy(`${s3}  encryption:\n    key: \${PGBK_REPOSITORY_KEY}\n    old_keys: [an older passphrase]\n  object_lock:\n    mode: compliance\n    days: 30\n  storage_class: STANDARD_IA\n  sse: aws:kms\n  kms_key_id: arn:aws:kms:eu-west-1:1:key/x\n`,
      FILE, {PGBK_REPOSITORY_KEY: 'a long enough passphrase'});
    expect(policy.repository).toMatchObject({
      encryption: {key: 'a long enough passphrase', oldKeys: ['an older passphrase']},
      objectLock: {mode: 'compliance', days: 30}, storageClass: 'STANDARD_IA', sse: 'aws:kms', kmsKeyId: 'arn:aws:kms:eu-west-1:1:key/x',
    });
  });
  it('refuses object_lock (and the other S3-only keys) on a file:// repository, naming the line', () => {
    expect(policyError(`${MINIMAL}  object_lock:\n    mode: governance\n    days: 7\n`).message).toMatch(/:6: repository.object_lock: only an s3:\/\/ repository has it/);
    expect(policyError(`${MINIMAL}  storage_class: STANDARD\n`).message).toMatch(/repository.storage_class: only an s3/);
  });
  it('refuses a short passphrase without printing it, kms_key_id without aws:kms, a bad mode', () => {
    const short = policyError(`${s3}  encryption:\n    key: tooshort\n`);
    expect(short.message).toMatch(/repository.encryption.key: expected a passphrase of at least 12 characters/);
    expect(short.message).not.toContain('tooshort');
    expect(policyError(`${s3}  kms_key_id: k\n`).message).toMatch(/kms_key_id: needs sse: aws:kms/);
    expect(policyError(`${s3}  object_lock:\n    mode: forever\n    days: 7\n`).message).toMatch(/repository.object_lock.mode/);
  });
});
