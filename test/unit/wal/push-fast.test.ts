// The shell fast path of the recommended archive_command, run by the real /bin/sh the way PostgreSQL runs it
// (%p and %f replaced, %% made %), in a directory laid out like a data directory. "node" is a script that records
// that it was started: Node must start exactly when no marker vouches for the very file, server and policy.

import {execFileSync} from 'node:child_process';
import {chmodSync, existsSync, mkdirSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync} from 'node:fs';
import {mkdtempSync} from 'node:fs';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import {afterEach, beforeEach, describe, expect, it} from 'vitest';
import {recommendedArchiveCommand, shellMarkerLine} from '../../../src/wal/push-fast.js';

const SEGMENT = '000000010000000000000007';

describe('archive_command shell fast path', () => {
  let dir: string;
  let policyFile: string;
  let fakeNode: string;
  let calls: string;

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'pgbk-fast-'));
    mkdirSync(join(dir, 'data', 'pg_wal', 'pgbk-spool', 'pushed'), {recursive: true});
    writeFileSync(join(dir, 'data', 'postmaster.pid'), '4242\n/some/data\n');
    writeFileSync(join(dir, 'data', 'pg_wal', SEGMENT), Buffer.alloc(8192, 7));
    policyFile = join(dir, 'policy.yaml');
    writeFileSync(policyFile, 'name: p\n');
    calls = join(dir, 'calls');
    fakeNode = join(dir, 'node');
    writeFileSync(fakeNode, `#!/bin/sh\necho "$@" >> ${calls}\n`);
    chmodSync(fakeNode, 0o755);
  });
  afterEach(() => rmSync(dir, {recursive: true, force: true}));

  /** Runs the command as PostgreSQL would for SEGMENT; returns the arguments "node" got, if started. */
  const archive = (waitTicks = 1500): string | undefined => {
    const command = recommendedArchiveCommand({node: fakeNode, script: '/opt/pgbk/bin/pgbk', policyFile, waitTicks})
      .replaceAll('%p', `pg_wal/${SEGMENT}`).replaceAll('%f', SEGMENT).replaceAll('%%', '%');
    execFileSync('/bin/sh', ['-c', command], {cwd: join(dir, 'data'), stdio: ['ignore', 'ignore', 'pipe']});
    return existsSync(calls) ? readFileSync(calls, 'utf8').trim() : undefined;
  };
  const pushed = (name: string) => join(dir, 'data', 'pg_wal', 'pgbk-spool', 'pushed', name);
  const writeMarker = (pid = '4242') => {
    const stat = (path: string) => statSync(path, {bigint: true});
    writeFileSync(pushed(SEGMENT), 'node marker\n');
    writeFileSync(pushed(`${SEGMENT}.ok`), `${shellMarkerLine(pid, stat(join(dir, 'data', 'pg_wal', SEGMENT)), stat(policyFile))}\n`);
  };

  it('starts Node when there is no marker', () => {
    expect(archive()).toBe(`/opt/pgbk/bin/pgbk archive-push --policy ${policyFile} pg_wal/${SEGMENT}`);
  });

  it('exits 0 without Node on a matching marker, and consumes both markers', () => {
    writeMarker();
    expect(archive()).toBeUndefined();
    expect(existsSync(pushed(SEGMENT))).toBe(false);
    expect(existsSync(pushed(`${SEGMENT}.ok`))).toBe(false);
  });

  it('starts Node when the server restarted since (another postmaster pid)', () => {
    writeMarker('4243');
    expect(archive()).toContain('archive-push');
  });

  it('starts Node when the policy file changed since', () => {
    writeMarker();
    writeFileSync(policyFile, 'name: p\n# edited\n');
    expect(archive()).toContain('archive-push');
  });

  it('starts Node when the segment is another file (same name, other inode) or was touched', () => {
    writeMarker();
    const path = join(dir, 'data', 'pg_wal', SEGMENT);
    const content = readFileSync(path);
    rmSync(path);
    writeFileSync(path, content);
    expect(archive()).toContain('archive-push');
    rmSync(calls);
    writeMarker();
    utimesSync(path, new Date(), new Date(Date.now() + 5000));
    expect(archive()).toContain('archive-push');
  });

  const pusherLock = (pid: number) => writeFileSync(pushed('.pusher.lock'), `${pid}\n`);

  it('waits for the pusher while it is on the segment, then takes its marker', async () => {
    pusherLock(process.pid);
    writeFileSync(pushed(`${SEGMENT}.busy`), '');
    const later = setTimeout(() => {
      writeMarker();
      rmSync(pushed(`${SEGMENT}.busy`));
    }, 300);
    const command = recommendedArchiveCommand({node: fakeNode, script: '/opt/pgbk/bin/pgbk', policyFile})
      .replaceAll('%p', `pg_wal/${SEGMENT}`).replaceAll('%f', SEGMENT).replaceAll('%%', '%');
    const {execFile} = await import('node:child_process');
    await new Promise<void>((resolve, reject) => execFile('/bin/sh', ['-c', command], {cwd: join(dir, 'data')}, (error) => error ? reject(error) : resolve()));
    clearTimeout(later);
    expect(existsSync(calls)).toBe(false);
  });

  it('gives up waiting on a busy file a live pusher never resolves, and starts Node', () => {
    pusherLock(process.pid);
    writeFileSync(pushed(`${SEGMENT}.busy`), '');
    const started = Date.now();
    expect(archive(30)).toContain('archive-push');
    expect(Date.now() - started).toBeGreaterThanOrEqual(250);
  });

  it('does not wait on the busy file of a dead pusher (or none)', () => {
    writeFileSync(pushed(`${SEGMENT}.busy`), '');
    let started = Date.now();
    expect(archive()).toContain('archive-push');
    expect(Date.now() - started).toBeLessThan(5000); // not the 15 s a live pusher gets
    rmSync(calls);
    const dead = execFileSync('/bin/sh', ['-c', 'sh -c "exit 0" & echo $!']).toString().trim();
    pusherLock(Number(dead));
    started = Date.now();
    expect(archive()).toContain('archive-push');
    expect(Date.now() - started).toBeLessThan(5000); // not the 15 s a live pusher gets
  });

  it('falls back to the plain command for paths sh or postgresql.conf cannot quote', () => {
    expect(recommendedArchiveCommand({node: '/usr/bin/node', script: '/opt/pgbk/bin/pgbk', policyFile: "/etc/pgbk/o'brien.yaml"}))
      .toBe(`/usr/bin/node /opt/pgbk/bin/pgbk archive-push --policy "/etc/pgbk/o'brien.yaml" %p`);
  });
});
