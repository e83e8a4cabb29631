// Local filesystem repository (file:// URLs): atomic writes by temp file, fsync, rename, fsync of the directory.

import {createWriteStream} from 'node:fs';
import {mkdir, open, readdir, rename, rm, stat, unlink, writeFile} from 'node:fs/promises';
import {existsSync, statSync} from 'node:fs';
import {dirname, join} from 'node:path';
import type {Readable} from 'node:stream';
import {pipeline} from 'node:stream/promises';
import {randomBytes} from 'node:crypto';
import {ObjectNotFoundError, RepositoryError, AssertError} from '../../errors.js';
import {HashCounter, sha256Hex} from '../../util/streams.js';
import type {ListOptions, PutOptions, PutResult, Repository, StoredObject} from '../repository.js';

const TEMP_MARK = '.pgbk-tmp-';

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
      await rename(temp, path);
      // fsync the directory, so the new name survives a crash too.
      await syncPath(dir, 'r');
    } catch (error) {
      await unlink(temp).catch(() => undefined);
      throw wrapFsError(error, `cannot write ${key} to ${this.description}`);
    }
    if (Buffer.isBuffer(body)) return {key, sizeBytes: body.length, sha256: sha256Hex(body), modified: new Date()};
    return {key, sizeBytes: counter.bytes, sha256: counter.digest(), modified: new Date()};
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
      const info = await stat(this.pathOf(key));
      return info.isFile() ? {key, sizeBytes: info.size, modified: info.mtime} : undefined;
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
        const info = await this.stat(key);
        if (info) yield info;
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

async function syncPath(path: string, flags: string): Promise<void> {
  const handle = await open(path, flags);
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

function wrapFsError(error: unknown, message: string): Error {
  if (error instanceof ObjectNotFoundError || error instanceof AssertError || error instanceof RepositoryError) return error;
  const err = error as NodeJS.ErrnoException;
  const hint = err.code === 'EACCES' || err.code === 'EPERM'
    ? 'the repository directory must be writable by the user running pgbk (for archive_command: the postgres OS user)'
    : undefined;
  return new RepositoryError(`${message}: ${err.code ?? err.message}`, hint, {cause: error});
}
