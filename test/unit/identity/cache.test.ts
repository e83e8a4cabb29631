import {mkdtempSync, readFileSync, writeFileSync} from 'node:fs';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import {describe, expect, it} from 'vitest';
import {forgetIdentity, newIdentity, readCachedIdentity, rememberIdentity} from '../../../src/identity/identity.js';

describe("archive-push's cached repository identity", () => {
  const identity = newIdentity({systemId: '7312345678901234567', pgVersionNum: 150000, walSegmentSize: 16 << 20}, 'init', new Date('2026-11-30T00:00:00Z'));
  const at = (seconds: number) => new Date(Date.parse('2026-11-30T01:00:00Z') + seconds * 1000);

  it('is used only for the same location and within its age', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pgbk-cache-'));
    await rememberIdentity(dir, 's3://bucket/a at http://s3', identity, at(0));
    expect(await readCachedIdentity(dir, 's3://bucket/a at http://s3', at(60))).toEqual(identity);
    expect(await readCachedIdentity(dir, 's3://bucket/b at http://s3', at(60))).toBeUndefined();
    expect(await readCachedIdentity(dir, 's3://bucket/a at http://s3', at(301))).toBeUndefined();
    expect(await readCachedIdentity(dir, 's3://bucket/a at http://s3', at(-10))).toBeUndefined();
    await forgetIdentity(dir);
    expect(await readCachedIdentity(dir, 's3://bucket/a at http://s3', at(60))).toBeUndefined();
  });

  it('a copy that was altered is not used', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'pgbk-cache-'));
    await rememberIdentity(dir, 'loc', identity, at(0));
    const file = join(dir, 'identity.json');
    writeFileSync(file, readFileSync(file, 'utf8').replace(identity.systemId, '42'));
    expect(await readCachedIdentity(dir, 'loc', at(1))).toBeUndefined();
  });
});
