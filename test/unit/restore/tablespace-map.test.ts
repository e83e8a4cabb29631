import {mkdirSync, mkdtempSync, rmSync, writeFileSync} from 'node:fs';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import {afterAll, describe, expect, it} from 'vitest';
import {resolveTablespaceMap} from '../../../src/restore/layout.js';
import type {BackupManifest} from '../../../src/backup/manifest.js';

const root = mkdtempSync(join(tmpdir(), 'pgbk-unit-tsmap-'));
afterAll(() => rmSync(root, {recursive: true, force: true}));

const backup = {
  id: '20260101T000000Z',
  tablespaces: [{oid: '16385', name: 'fast', location: join(root, 'orig-fast')}, {oid: '16386', name: 'slow', location: join(root, 'orig-slow')}],
} as unknown as BackupManifest;
const data = join(root, 'data');

describe('restore --tablespace-map', () => {
  it('defaults each tablespace to its original location; maps by name or oid', async () => {
    expect([...await resolveTablespaceMap(backup, data, [])]).toEqual([['16385', join(root, 'orig-fast')], ['16386', join(root, 'orig-slow')]]);
    const mapped = await resolveTablespaceMap(backup, data, [`fast=${join(root, 'new-fast')}`, `16386=${join(root, 'new-slow')}`]);
    expect([...mapped]).toEqual([['16385', join(root, 'new-fast')], ['16386', join(root, 'new-slow')]]);
  });

  it('refuses bad input with exit 2, naming it', async () => {
    const refusal = (requested: string[]) => resolveTablespaceMap(backup, data, requested).then(() => undefined, (error: {message: string; exitCode: number}) => [error.exitCode, error.message]);
    expect(await refusal(['fast'])).toEqual([2, '--tablespace-map "fast" is not NAME=DIR']);
    expect(await refusal([`nosuch=${root}/x`])).toEqual([2, `--tablespace-map nosuch: backup ${backup.id} has no tablespace of that name or oid`]);
    const busy = join(root, 'busy');
    mkdirSync(busy);
    writeFileSync(join(busy, 'file'), '');
    expect((await refusal([`fast=${busy}`]))?.[1]).toBe(`tablespace fast cannot be restored into ${busy}: it is not empty (1 entries)`);
    expect((await refusal([`fast=${data}`]))?.[1]).toContain('it is the data directory');
    expect((await refusal([`fast=${join(data, 'ts')}`]))?.[1]).toContain('it is inside the data directory');
    expect((await refusal([`fast=${root}`]))?.[1]).toContain('it holds the data directory');
    expect((await refusal([`fast=${join(root, 'same')}`, `slow=${join(root, 'same')}`]))?.[1]).toBe(`tablespaces fast and slow are both mapped to ${join(root, 'same')}`);
    const none = {id: 'x', tablespaces: undefined} as unknown as BackupManifest;
    expect((await resolveTablespaceMap(none, data, [])).size).toBe(0);
    await expect(resolveTablespaceMap(none, data, [`fast=${join(root, 'y')}`])).rejects.toMatchObject({exitCode: 2, message: '--tablespace-map fast: backup x has no tablespace of that name or oid'});
  });
});
