// archive_command's shell fast path. With a backlog, the look-ahead pusher archives .ready segments before
// PostgreSQL asks for them. Starting Node only to learn "already done" costs ~0.3 s per segment and caps a drain at
// a few segments per second, so the archive_command pgbk recommends checks the pusher's shell marker first, with
// sh, one `stat` and one `rm`, and starts Node only when there is no marker that matches:
//
//   - the segment file, by device, inode, size and mtime (ns): the very file the pusher read and hashed;
//   - the postmaster's pid (first line of postmaster.pid): markers do not outlive a server restart, so a changed
//     environment (${VAR}s in the policy) cannot leave markers for another repository to be honoured;
//   - the policy file, by device, inode, size and mtime: an edited policy (another repository) voids every marker.
//
// A marker is written only after the segment is durable and the batch's listing showed no other content for it
// (see push-ahead.ts). When the pusher is still on the segment (a `.busy` file), the shell waits for it rather than
// starting Node to do the same work again, as long as the pusher lives and at most SHELL_WAIT_TICKS; then Node.

import type {BigIntStats} from 'node:fs';
import {readFile, stat} from 'node:fs/promises';
import {join} from 'node:path';

/** How long the shell waits for a segment the pusher is on: ticks of 10 ms. */
export const SHELL_WAIT_TICKS = 1500;

/** `stat --printf '%d:%i:%s:%.9Y:'` of a file, as Node sees it. */
export function statFingerprint(info: {dev: bigint; ino: bigint; size: bigint; mtimeNs: bigint}): string {
  const seconds = info.mtimeNs / 1_000_000_000n;
  const nanos = (info.mtimeNs % 1_000_000_000n).toString().padStart(9, '0');
  return `${info.dev}:${info.ino}:${info.size}:${seconds}.${nanos}:`;
}

/** The line the shell compares: "<postmaster pid> <segment fingerprint><policy fingerprint>". */
export function shellMarkerLine(postmasterPid: string, segment: {dev: bigint; ino: bigint; size: bigint; mtimeNs: bigint},
  policyFile: {dev: bigint; ino: bigint; size: bigint; mtimeNs: bigint}): string {
  return `${postmasterPid} ${statFingerprint(segment)}${statFingerprint(policyFile)}`;
}

/** What the shell will compare against, for the server whose data directory is `cwd`; undefined when not knowable. */
export async function shellMarkerContext(cwd: string, policyFile: string): Promise<{pid: string; policy: BigIntStats} | undefined> {
  try {
    const pid = (await readFile(join(cwd, 'postmaster.pid'), 'utf8')).split('\n')[0]!.trim();
    if (!/^\d+$/.test(pid)) return undefined;
    const policy = await stat(policyFile, {bigint: true});
    return {pid, policy};
  } catch {
    return undefined;
  }
}

/** Characters a path may hold to be put inside double quotes in sh and single quotes in postgresql.conf. */
const SAFE_PATH = /^[A-Za-z0-9_@+=:,./ -]+$/;

export interface ArchiveCommandParts {
  /** Absolute path of the node binary. */
  node: string;
  /** Absolute path of bin/pgbk. */
  script: string;
  /** Absolute path of the policy file. */
  policyFile: string;
  /** Ticks of 10 ms the shell waits for a segment the pusher is on (default SHELL_WAIT_TICKS). */
  waitTicks?: number;
}

/**
 * The archive_command pgbk recommends: the shell fast path, then `node bin/pgbk archive-push --policy <file> %p`,
 * by absolute paths (the server's PATH may not have node). Returned as the value to put between the single quotes
 * of postgresql.conf once every single quote in it is doubled. Without paths sh can quote safely, the plain command.
 */
export function recommendedArchiveCommand(parts: ArchiveCommandParts): string {
  const push = `archive-push --policy ${quoteSh(parts.policyFile)} %p`;
  if (![parts.node, parts.script, parts.policyFile].every((path) => SAFE_PATH.test(path) && path.startsWith('/'))) {
    return `${parts.node} ${parts.script} ${push}`;
  }
  const m = 'pg_wal/pgbk-spool/pushed/%f';
  // PostgreSQL replaces %p and %f, and %% with %: stat's format is written with %%.
  // Waits only while the pusher named in its lock file lives (read and kill -0 are shell builtins).
  return `m=${m}; i=0; while [ -f $m.busy ] && [ ! -f $m.ok ] && [ $i -lt ${parts.waitTicks ?? SHELL_WAIT_TICKS} ] && ` +
    `{ read -r q < pg_wal/pgbk-spool/pushed/.pusher.lock && kill -0 "$q"; } 2>/dev/null; do sleep 0.01; i=$((i+1)); done; ` +
    `if [ -f $m.ok ] && read -r p < postmaster.pid && IFS= read -r k < $m.ok && ` +
    `[ "$k" = "$p $(stat --printf %%d:%%i:%%s:%%.9Y: %p ${quoteSh(parts.policyFile)} 2>/dev/null)" ]; ` +
    `then rm -f $m $m.ok; else exec ${quoteSh(parts.node)} ${quoteSh(parts.script)} ${push}; fi`;
}

function quoteSh(path: string): string {
  return /^[A-Za-z0-9_@+=:,./-]+$/.test(path) ? path : `"${path}"`;
}

export const shellMarkerName = (walFile: string) => `${walFile}.ok`;
export const busyName = (walFile: string) => `${walFile}.busy`;
