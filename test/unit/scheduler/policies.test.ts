import {mkdtempSync, rmSync, writeFileSync} from 'node:fs';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import {afterEach, beforeEach, describe, expect, it} from 'vitest';
import {PolicyError} from '../../../src/errors.js';
import {parsePolicy} from '../../../src/policy/load.js';
import {loadAllPolicies, sharedRepositories} from '../../../src/scheduler/policies.js';

const policy = (schedule: string) => `strategy: pitr
postgres:
  url: postgresql://postgres@127.0.0.1:5432/postgres
repository:
  url: file:///tmp/repo
schedule:
  backup: "${schedule}"
`;

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'pgbk-policies-'));
});
afterEach(() => rmSync(dir, {recursive: true, force: true}));

describe('cron expressions in policies', () => {
  it.each(['0 2 * * *', '*/5 * * * * *', '0 4 * * sun', '30 2 1-5 * *', '@daily', '@hourly', '@weekly', '@monthly'])('accepts %j', (cron) => {
    expect(parsePolicy(policy(cron), '/p/a.yaml', {}).schedule.backup).toBe(cron);
  });
  it.each([
    ['61 * * * *', 'schedule.backup: expected a cron expression: 61 is a invalid expression for minute'],
    ['0 2 * * 8', 'schedule.backup: expected a cron expression: 8 is a invalid expression for week day'],
    ['@reboot', 'schedule.backup: expected a cron expression or one of @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly'],
    ['@every 5m', 'schedule.backup: expected a cron expression or one of @yearly'],
    ['* * * * * * *', 'schedule.backup: expected a cron expression with 5 fields (or 6, seconds first), or a nickname such as @daily'],
  ])('refuses %j naming file, line and key', (cron, message) => {
    expect(() => parsePolicy(policy(cron), '/p/a.yaml', {})).toThrow(`/p/a.yaml:7: ${message}`);
  });
});

describe('loadAllPolicies', () => {
  it('loads every *.yaml and *.yml in name order and reports the files that do not load', async () => {
    writeFileSync(join(dir, 'b.yml'), policy('0 2 * * *'));
    writeFileSync(join(dir, 'a.yaml'), policy('0 3 * * *'));
    writeFileSync(join(dir, 'broken.yaml'), policy('99 * * * *'));
    writeFileSync(join(dir, 'notes.txt'), 'not a policy');
    const loaded = await loadAllPolicies(dir, {}, dir);
    expect(loaded.policies.map((p) => p.name)).toEqual(['a', 'b']);
    expect(loaded.failures.map((f) => f.file)).toEqual([join(dir, 'broken.yaml')]);
    expect(loaded.failures[0]!.error.message).toContain(`${join(dir, 'broken.yaml')}:7: schedule.backup`);
    expect(sharedRepositories(loaded.policies)).toEqual([['a', 'b']]);
  });

  it('refuses two files of one policy name', async () => {
    writeFileSync(join(dir, 'a.yaml'), policy('0 3 * * *'));
    writeFileSync(join(dir, 'a.yml'), policy('0 3 * * *'));
    await expect(loadAllPolicies(dir, {}, dir)).rejects.toThrow(`policy a is defined twice: ${join(dir, 'a.yaml')} and ${join(dir, 'a.yml')}`);
  });

  it('refuses a missing directory', async () => {
    await expect(loadAllPolicies(join(dir, 'nope'), {}, dir)).rejects.toThrow(PolicyError);
  });
});
