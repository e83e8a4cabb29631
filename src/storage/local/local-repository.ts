// Local filesystem repository (file:// URLs): atomic writes by temp file, fsync, rename, fsync of the directory.
// Conditional writes: create-only by link(2) of the fsynced temp file (fails with EEXIST, never overwrites);
// compare-and-swap under a lock file taken with O_EXCL, held only for stat-compare-rename.

import {createHash, randomBytes} from 'node:crypto';
import {createWriteStream, existsSync, statSync, type BigIntStats} from 'node:fs';
import {link, mkdir, open, readFile, readdir, rename, rm, stat, unlink, writeFile} from 'node:fs/promises';
import {hostname} from 'node:os';
import {dirname, join} from 'node:path';
import type {Readable} from 'node:stream';
import {pipeline} from 'node:stream/promises';
import {ObjectNotFoundError, PreconditionFailedError, RepositoryError, AssertError} from '../../errors.js';
import {processAlive} from '../../util/process.js';
import {HashCounter, sha256Hex} from '../../util/streams.js';
import type {ConditionalWriteSupport, IncompleteUpload, ListOptions, PutOptions, PutResult, Repository, StoredObject} from '../repository.js';

const TEMP_MARK = '.pgbk-tmp-';
const LOCK_SUFFIX = `${TEMP_MARK}lock`;
/** A lock is held for a stat, a compare and a rename: one older than this belongs to a process that hung or died. */
const STALE_LOCK_MS = 30_000;
const LOCK_WAIT_MS = 60_000;
/** Objects up to this size carry a hash of their content in their version token (see versionOf). */
const HASHED_VERSION_MAX = 64 * 1024;

export class LocalRepository implements Repository {
  readonly description: string;

  private rootChecked = false;

  constructor(private readonly root: string) {
    this.description = `file://${root}`;
  }

  /**
   * The root must exist: a repository on a mount that is missing would otherwise be re-created on the root file
   * system, swallow WAL there, and look empty once the mount is back. Checked once per instance.
   */
  private checkRoot(): void {
    if (this.rootChecked) return;
    let info;
    try {
      info = statSync(this.root);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') {
        throw new RepositoryError(
          `repository directory ${this.root} does not exist (not mounted?)`,
          `pgbk never creates it implicitly; mount the backup volume, or run "pgbk init" to create the repository (its parent ${dirname(this.root)} must exist)`,
        );
      }
      throw wrapFsError(error, `cannot use repository directory ${this.root}`);
    }
    if (!info.isDirectory()) throw new RepositoryError(`repository path ${this.root} is not a directory`);
    this.rootChecked = true;
  }

  async create(): Promise<void> {
    if (existsSync(this.root)) return this.checkRoot();
    const parent = dirname(this.root);
    if (!existsSync(parent)) {
      throw new RepositoryError(
        `cannot create repository directory ${this.root}: its parent ${parent} does not exist (not mounted?)`,
        `create ${parent} (or mount the backup volume there) first; pgbk creates only the last directory`,
      );
    }
    await mkdir(this.root, {mode: 0o750}).catch((error: NodeJS.ErrnoException) => {
      if (error.code !== 'EEXIST') throw wrapFsError(error, `cannot create repository directory ${this.root}`);
    });
    await syncPath(parent, 'r').catch(() => undefined);
    this.checkRoot();
  }

  private pathOf(key: string): string {
    this.checkRoot();
    if (key.startsWith('/') || key.split('/').some((part) => part === '..' || part === '.')) {
      throw new AssertError(`internal error: unsafe repository key "${key}"`);
    }
    return join(this.root, ...key.split('/'));
  }

  async put(key: string, body: Readable | Buffer, options: PutOptions = {}): Promise<PutResult> {
    const path = this.pathOf(key);
    const dir = dirname(path);
    const temp = `${path}${TEMP_MARK}${process.pid}-${randomBytes(4).toString('hex')}`;
    const counter = new HashCounter(options.onProgress);
    let version: string;
    try {
      await mkdir(dir, {recursive: true});
      if (Buffer.isBuffer(body)) {
        const handle = await open(temp, 'wx', 0o640);
        try {
          await handle.writeFile(body);
          await handle.sync();
        } finally {
          await handle.close();
        }
        options.onProgress?.(body.length);
      } else {
        await pipeline(body, counter, createWriteStream(temp, {flags: 'wx', mode: 0o640}));
        // fsync the file's data before it becomes visible under its name.
        await syncPath(temp, 'r');
      }
      if (options.ifNoneMatch === '*') {
        // link(2) fails with EEXIST when the name exists: atomic create-only, whoever else writes.
        await link(temp, path).catch((error: NodeJS.ErrnoException) => {
          if (error.code === 'EEXIST') throw new PreconditionFailedError(key, 'if-none-match');
          throw error;
        });
        await unlink(temp);
        version = await versionOf(path);
      } else if (options.ifMatch !== undefined) {
        version = await this.withLock(path, key, async () => {
          const current = await versionOf(path).catch((error: NodeJS.ErrnoException) => {
            if (isMissing(error)) return undefined;
            throw error;
          });
          if (current !== options.ifMatch) throw new PreconditionFailedError(key, 'if-match');
          await rename(temp, path);
          return versionOf(path);
        });
      } else {
        await rename(temp, path);
        version = await versionOf(path);
      }
      // fsync the directory, so the new name survives a crash too.
      await syncPath(dir, 'r');
    } catch (error) {
      await unlink(temp).catch(() => undefined);
      throw wrapFsError(error, `cannot write ${key} to ${this.description}`);
    }
    if (Buffer.isBuffer(body)) return {key, sizeBytes: body.length, sha256: sha256Hex(body), modified: new Date(), version};
    return {key, sizeBytes: counter.bytes, sha256: counter.digest(), modified: new Date(), version};
  }

  /**
   * Runs `critical` holding `<path>.pgbk-tmp-lock` (created with O_EXCL; hidden from list like every temp
   * name). A lock left by a dead process on this host, or older than STALE_LOCK_MS, is broken.
   */
  private async withLock<T>(path: string, key: string, critical: () => Promise<T>): Promise<T> {
    const lock = `${path}${LOCK_SUFFIX}`;
    const deadline = Date.now() + LOCK_WAIT_MS;
    for (let attempt = 0; ; attempt++) {
      try {
        const handle = await open(lock, 'wx', 0o640);
        await handle.writeFile(`${hostname()} ${process.pid} ${Date.now()}\n`).finally(() => handle.close());
        break;
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      }
      await breakStaleLock(lock);
      if (Date.now() > deadline) {
        throw new RepositoryError(`cannot write ${key} to ${this.description}: its lock ${lock} stayed taken for ${LOCK_WAIT_MS / 1000}s`,
          'another pgbk process is writing it; if none is, remove the lock file');
      }
      await new Promise((resolve) => setTimeout(resolve, Math.min(50, 2 + attempt * 2) * (0.5 + Math.random())));
    }
    try {
      return await critical();
    } finally {
      await unlink(lock).catch(() => undefined);
    }
  }

  async getVersioned(key: string): Promise<{body: Buffer; version: string}> {
    const path = this.pathOf(key);
    // One descriptor for the bytes and their version: files are replaced by rename, never written in place.
    const handle = await open(path, 'r').catch((error: NodeJS.ErrnoException) => {
      if (isMissing(error)) throw new ObjectNotFoundError(key);
      throw wrapFsError(error, `cannot read ${key} from ${this.description}`);
    });
    try {
      const info = await handle.stat({bigint: true});
      if (!info.isFile()) throw new ObjectNotFoundError(key);
      const body = await handle.readFile();
      return {body, version: versionToken(info, body)};
    } catch (error) {
      throw wrapFsError(error, `cannot read ${key} from ${this.description}`);
    } finally {
      await handle.close();
    }
  }

  async conditionalWrites(): Promise<ConditionalWriteSupport> {
    return {createOnly: true, compareAndSwap: true, source: 'driver'};
  }

  async cleanUpIncomplete(olderThan: Date): Promise<IncompleteUpload[]> {
    let entries;
    try {
      entries = await readdir(this.root, {recursive: true, withFileTypes: true});
    } catch (error) {
      if (isMissing(error)) return [];
      throw wrapFsError(error, `cannot list ${this.description}`);
    }
    const removed: IncompleteUpload[] = [];
    for (const entry of entries) {
      const at = entry.name.indexOf(TEMP_MARK);
      if (at < 0 || entry.isDirectory()) continue;
      const path = join(entry.parentPath, entry.name);
      const info = await stat(path).catch(() => undefined);
      if (!info || info.mtime >= olderThan) continue;
      await unlink(path).catch(() => undefined);
      const keyPath = join(entry.parentPath, entry.name.slice(0, at));
      removed.push({key: keyPath.slice(this.root.length + 1).split('/').join('/'), startedAt: info.mtime});
    }
    return removed;
  }

  async get(key: string): Promise<Readable> {
    const path = this.pathOf(key);
    const handle = await open(path, 'r').catch((error: NodeJS.ErrnoException) => {
      if (isMissing(error)) throw new ObjectNotFoundError(key);
      throw wrapFsError(error, `cannot read ${key} from ${this.description}`);
    });
    // open(2) succeeds on a directory, but a folder is no object (stat() says so too).
    const info = await handle.stat().catch(async (error: unknown) => {
      await handle.close();
      throw wrapFsError(error, `cannot read ${key} from ${this.description}`);
    });
    if (!info.isFile()) {
      await handle.close();
      throw new ObjectNotFoundError(key);
    }
    return handle.createReadStream({highWaterMark: 1024 * 1024});
  }

  async stat(key: string): Promise<StoredObject | undefined> {
    try {
      const path = this.pathOf(key);
      const info = await stat(path, {bigint: true});
      if (!info.isFile()) return undefined;
      const version = info.size <= HASHED_VERSION_MAX ? versionToken(info, await readFile(path)) : versionToken(info);
      return {key, sizeBytes: Number(info.size), modified: info.mtime, version};
    } catch (error) {
      if (isMissing(error)) return undefined;
      throw wrapFsError(error, `cannot stat ${key} in ${this.description}`);
    }
  }

  async *list(prefix: string, options: ListOptions = {}): AsyncIterable<StoredObject> {
    // The prefix may end inside a name ("wal/00000001/0000000100000000/000000010000000000000003-").
    const slash = prefix.lastIndexOf('/');
    const dirKey = slash >= 0 ? prefix.slice(0, slash + 1) : '';
    const namePrefix = prefix.slice(slash + 1);
    yield* this.walk(dirKey, namePrefix, options.startAfter ?? '');
  }

  private async *walk(dirKey: string, namePrefix: string, startAfter: string): AsyncIterable<StoredObject> {
    let entries;
    try {
      entries = await readdir(dirKey ? this.pathOf(dirKey.slice(0, -1)) : (this.checkRoot(), this.root), {withFileTypes: true});
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT' || (error as NodeJS.ErrnoException).code === 'ENOTDIR') return;
      throw wrapFsError(error, `cannot list ${dirKey || '/'} in ${this.description}`);
    }
    // Directories hold at most a few hundred entries each (see layout.ts), so sorting one is bounded.
    const names = entries
      .filter((entry) => entry.name.startsWith(namePrefix) && !entry.name.includes(TEMP_MARK))
      .map((entry) => (entry.isDirectory() ? `${entry.name}/` : entry.name))
      .sort();
    for (const name of names) {
      const key = `${dirKey}${name}`;
      if (name.endsWith('/')) {
        // A folder before startAfter can hold nothing after it, unless startAfter lies inside it.
        if (key < startAfter && !startAfter.startsWith(key)) continue;
        yield* this.walk(key, '', startAfter);
      } else {
        if (key <= startAfter) continue;
        try {
          const info = await stat(this.pathOf(key));
          if (info.isFile()) yield {key, sizeBytes: info.size, modified: info.mtime};
        } catch (error) {
          if (!isMissing(error)) throw wrapFsError(error, `cannot stat ${key} in ${this.description}`);
        }
      }
    }
  }

  async remove(keys: Iterable<string>): Promise<void> {
    const dirs = new Set<string>();
    for (const key of keys) {
      const path = this.pathOf(key);
      await rm(path, {force: true}).catch((error: NodeJS.ErrnoException) => {
        // A folder, or a path below a file, is a missing object: not an error (as on S3).
        if (isMissing(error) || error.code === 'ERR_FS_EISDIR' || error.code === 'EISDIR') return;
        throw wrapFsError(error, `cannot remove ${key} from ${this.description}`);
      });
      dirs.add(dirname(path));
    }
    for (const dir of dirs) await syncPath(dir, 'r').catch(() => undefined);
  }

  async serverTime(): Promise<Date | undefined> {
    const key = `clock-probe${TEMP_MARK}${process.pid}-${randomBytes(4).toString('hex')}`;
    const path = this.pathOf(key);
    try {
      await writeFile(path, '', {flag: 'wx', mode: 0o640});
      return (await stat(path)).mtime;
    } catch (error) {
      // No root yet (nothing ever stored): there is no repository clock to read.
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw wrapFsError(error, `cannot write a clock probe to ${this.description}`);
    } finally {
      await unlink(path).catch(() => undefined);
    }
  }

  async close(): Promise<void> {}
}

/** ENOENT, or ENOTDIR when a parent of the path is a file ("a/b" while "a" is an object): no such object. */
function isMissing(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException)?.code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}

/**
 * The version token of a file: inode, size and mtime (ns), plus a hash of the content for small files.
 * Every write makes a new file (temp + rename), so the inode changes; but a freed inode can be reused
 * within one timestamp tick, so for the small objects compare-and-swap is used on (leases, markers) the
 * content decides too.
 */
function versionToken(info: BigIntStats, content?: Buffer): string {
  const base = `${info.ino.toString(36)}-${info.size.toString(36)}-${info.mtimeNs.toString(36)}`;
  return content ? `${base}-${createHash('sha256').update(content).digest('hex').slice(0, 16)}` : base;
}

async function versionOf(path: string): Promise<string> {
  const handle = await open(path, 'r');
  try {
    const info = await handle.stat({bigint: true});
    return info.size <= HASHED_VERSION_MAX ? versionToken(info, await handle.readFile()) : versionToken(info);
  } finally {
    await handle.close();
  }
}

/** Removes `lock` when its holder died (same host) or it is older than any critical section takes. */
async function breakStaleLock(lock: string): Promise<void> {
  let content: string;
  let info;
  try {
    [content, info] = await Promise.all([readFile(lock, 'utf8'), stat(lock)]);
  } catch {
    return; // released meanwhile
  }
  const [host, pid] = content.split(' ');
  const dead = host === hostname() && Number(pid) > 0 && !processAlive(Number(pid));
  // An empty lock is one being written right now (open, then write): only its age can make it stale.
  if (!dead && Date.now() - info.mtimeMs < STALE_LOCK_MS) return;
  // rename first: of several breakers, one wins; then check it is still the lock judged stale.
  const broken = `${lock}-broken-${randomBytes(4).toString('hex')}`;
  try {
    await rename(lock, broken);
  } catch {
    return;
  }
  const taken = await readFile(broken, 'utf8').catch(() => '');
  if (taken !== content) {
    // A fresh lock was taken between the look and the rename: put it back (link fails if yet another exists).
    await link(broken, lock).catch(() => undefined);
  }
  await unlink(broken).catch(() => undefined);
}

async function syncPath(path: string, flags: string): Promise<void> {
  const handle = await open(path, flags);
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

function wrapFsError(error: unknown, message: string): Error {
  if (error instanceof ObjectNotFoundError || error instanceof AssertError || error instanceof PreconditionFailedError ||
    error instanceof RepositoryError) return error;
  const err = error as NodeJS.ErrnoException;
  const hint = err.code === 'EACCES' || err.code === 'EPERM'
    ? 'the repository directory must be writable by the user running pgbk (for archive_command: the postgres OS user)'
    : undefined;
  return new RepositoryError(`${message}: ${err.code ?? err.message}`, hint, {cause: error});
}
