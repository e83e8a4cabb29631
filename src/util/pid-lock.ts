// A lock file holding the pid of its owner: one background helper per data directory (look-ahead pusher and
// prefetcher). A lock whose process is gone is stale and taken over.

import {open, readFile, unlink} from 'node:fs/promises';
import {processAlive} from './process.js';

/** True while the process named in the lock file lives. */
export async function lockHolderAlive(lockFile: string): Promise<boolean> {
  const pid = Number((await readFile(lockFile, 'utf8').catch(() => '')).trim());
  return pid > 0 && processAlive(pid);
}

/** Takes the lock for this process; false when a live process holds it. Release with releasePidLock. */
export async function acquirePidLock(lockFile: string): Promise<boolean> {
  let handle = await open(lockFile, 'wx', 0o600).catch(() => undefined);
  if (!handle) {
    if (await lockHolderAlive(lockFile)) return false;
    await unlink(lockFile).catch(() => undefined); // stale: its process is gone
    handle = await open(lockFile, 'wx', 0o600).catch(() => undefined);
    if (!handle) return false;
  }
  try {
    await handle.writeFile(`${process.pid}\n`); // a line: archive_command's shell fast path reads it with `read`
  } finally {
    await handle.close();
  }
  return true;
}

export async function releasePidLock(lockFile: string): Promise<void> {
  await unlink(lockFile).catch(() => undefined);
}
