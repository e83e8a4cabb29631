// A streaming tar extractor for pg_basebackup's archives, hardened against a forged or damaged backup:
//   - only regular files, directories and symlinks; hard links, device files, fifos, and every other member type
//     (pax or GNU extension headers included: pg_basebackup writes plain ustar) are refused;
//   - no setuid, setgid or sticky bit is ever kept (permissions are mode & 0777);
//   - nothing is written outside the target: absolute names and `..` are refused, files are opened with
//     O_NOFOLLOW, and no member may lie under a symlink the archive created;
//   - symlinks only where PostgreSQL puts them: pg_tblspc/<oid> (a tablespace) and pg_wal; `symlinkTarget` may
//     redirect them (restore --tablespace-map).
// Chunks may split headers and data anywhere. Memory: one 512-byte header and the chunk being written. File system
// calls are synchronous: into the page cache they take microseconds, less than a trip through libuv's thread pool
// (which the decompressors of the pieces fetched meanwhile use).

import {chmodSync, chownSync, closeSync, constants, fchmodSync, fchownSync, futimesSync, lchownSync, lstatSync, mkdirSync, openSync, readFileSync, symlinkSync, writeSync} from 'node:fs';
import {join, relative, isAbsolute, dirname} from 'node:path';
import {Writable} from 'node:stream';
import {CorruptObjectError} from '../errors.js';
import {streamGarbageCollector} from '../util/memory.js';
import {cString, tarNumber, TarWalker} from '../util/tar-fields.js';

const BLOCK = 512;

export interface UntarOptions {
  /** Absolute path of the directory to unpack into (exists). */
  root: string;
  /** What the archive is, for messages ("backup 20261130T010000Z"). */
  what: string;
  /** The target to write for an allowed symlink (default: the archive's own). */
  symlinkTarget?: (name: string, linkname: string) => string;
  /** As root: give files to the archive's owner (by user name, else numeric id), as GNU tar does. */
  chownToArchiveOwner?: boolean;
  /**
   * A tablespace's tar: every member lies in PostgreSQL's version directory (PG_<major>_<catalog version>/...), all
   * a tablespace directory holds, so a tar unpacked where its manifest says can put nothing else there.
   */
  tablespace?: boolean;
}

interface Header {
  name: string;
  mode: number;
  uid: number;
  gid: number;
  uname: string;
  gname: string;
  size: number;
  mtime: number;
  type: string;
  linkname: string;
}

/** Names PostgreSQL may give a symlink in a data directory. */
export function symlinkAllowed(name: string): boolean {
  return /^pg_tblspc\/\d+$/.test(name) || name === 'pg_wal';
}

export class TarExtractor extends Writable {
  /** Members unpacked (files, directories, symlinks). */
  members = 0;
  /** Members whose setuid/setgid/sticky bits were dropped. */
  strippedModes = 0;
  private file?: number;
  /** Directories known to exist (made or seen). */
  private readonly dirs = new Set<string>();
  private entry?: Header;
  private readonly walker = new TarWalker({
    header: (block) => this.startMember(block),
    data: (bytes) => {
      if (this.file !== undefined) writeAll(this.file, bytes);
    },
    end: () => {
      if (this.file !== undefined) this.finishFile();
    },
  });
  private readonly symlinks = new Set<string>();
  private owners?: {users: Map<string, number>; groups: Map<string, number>};
  private readonly collectGarbage = streamGarbageCollector();

  constructor(private readonly options: UntarOptions) {
    super({highWaterMark: 1024 * 1024});
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.collectGarbage(chunk.length);
    try {
      this.walker.feed(chunk);
    } catch (error) {
      callback(error as Error);
      return;
    }
    callback();
  }

  override _final(callback: (error?: Error | null) => void): void {
    if (!this.walker.ended || this.walker.inMember || this.file) {
      callback(this.corrupt(`it ends ${this.entry ? `inside member "${this.entry.name}"` : 'before the end-of-archive marker'} (truncated)`));
      return;
    }
    callback();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    const file = this.file;
    this.file = undefined;
    if (file !== undefined) {
      try {
        closeSync(file);
      } catch { /* closing after a failure */ }
    }
    callback(error);
  }

  /** A member's header: checked, then made (file opened, directory or symlink made); returns its data size. */
  private startMember(block: Buffer): number {
    const header = parseHeader(block, (problem) => this.corrupt(problem));
    this.entry = header;
    const size = header.type === '0' ? header.size : 0;
    const name = this.checkName(header);
    if (name === '.') {
      this.entry = undefined;
      return 0; // the target itself: made by the caller, with its own mode
    }
    const path = join(this.options.root, name);
    const mode = header.mode & 0o777;
    if ((header.mode & 0o7000) !== 0) this.strippedModes++;
    this.members++;
    switch (header.type) {
      case '0': {
        this.makeParent(path);
        let file: number;
        try {
          file = openSync(path, constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | constants.O_NOFOLLOW, mode);
        } catch (error) {
          throw this.refuse(name, `cannot be written (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`);
        }
        this.file = file;
        fchmodSync(file, mode);
        return size; // an empty file is closed by the walker's end() at once
      }
      case '5': {
        try {
          mkdirSync(path, {recursive: true, mode});
        } catch (error) {
          throw this.refuse(name, `cannot be made a directory (${(error as NodeJS.ErrnoException).code})`);
        }
        const info = lstatSync(path);
        if (!info.isDirectory()) throw this.refuse(name, 'is not a directory on disk');
        chmodSync(path, mode);
        this.dirs.add(path);
        this.chownMember(path, header, false);
        this.entry = undefined;
        return 0;
      }
      case '2': {
        if (!symlinkAllowed(name)) {
          throw this.refuse(name, `is a symlink (to "${header.linkname}"); PostgreSQL puts symlinks only at pg_tblspc/<oid> and pg_wal`);
        }
        const target = this.options.symlinkTarget ? this.options.symlinkTarget(name, header.linkname) : header.linkname;
        this.makeParent(path);
        try {
          symlinkSync(target, path);
        } catch (error) {
          throw this.refuse(name, `cannot be made a symlink (${(error as NodeJS.ErrnoException).code})`);
        }
        this.symlinks.add(name);
        this.chownMember(path, header, true);
        this.entry = undefined;
        return 0;
      }
      default:
        throw this.refuse(name, `is of tar type ${describeType(header.type)}, which a PostgreSQL base backup never holds`);
    }
  }

  private finishFile(): void {
    const file = this.file;
    const header = this.entry!;
    this.file = undefined;
    this.entry = undefined;
    if (file === undefined) return;
    try {
      if (this.options.chownToArchiveOwner) {
        const {uid, gid} = this.ownerOf(header);
        fchownSync(file, uid, gid);
      }
      if (header.mtime > 0) futimesSync(file, header.mtime, header.mtime);
    } finally {
      closeSync(file);
    }
  }

  private chownMember(path: string, header: Header, link: boolean): void {
    if (!this.options.chownToArchiveOwner) return;
    const {uid, gid} = this.ownerOf(header);
    (link ? lchownSync : chownSync)(path, uid, gid);
  }

  /** Makes the parent directory of a member that came without one (PostgreSQL sends every directory first). */
  private makeParent(path: string): void {
    const parent = dirname(path);
    if (this.dirs.has(parent)) return;
    mkdirSync(parent, {recursive: true, mode: 0o700});
    this.dirs.add(parent);
  }

  private ownerOf(header: Header): {uid: number; gid: number} {
    this.owners ??= {users: idsOf('/etc/passwd'), groups: idsOf('/etc/group')};
    return {
      uid: this.owners.users.get(header.uname) ?? header.uid,
      gid: this.owners.groups.get(header.gname) ?? header.gid,
    };
  }

  /** The member's name relative to the root, or a refusal: absolute, `..`, or under a symlink of the archive. */
  private checkName(header: Header): string {
    let name = header.name;
    while (name.startsWith('./')) name = name.slice(2);
    name = name.replace(/\/+$/, '');
    if (name === '' || name === '.') {
      if (header.type === '5') return '.';
      throw this.refuse(header.name || '(empty)', 'has no name');
    }
    if (isAbsolute(name)) throw this.refuse(header.name, 'has an absolute name');
    const parts = name.split('/');
    if (parts.some((part) => part === '..')) throw this.refuse(header.name, 'climbs out of the target with ".."');
    if (parts.some((part) => part === '' || part === '.')) throw this.refuse(header.name, 'has an irregular name');
    if (this.options.tablespace && !/^PG_\d+_\d+$/.test(parts[0]!)) {
      throw this.refuse(header.name, 'lies outside PostgreSQL\'s version directory (PG_<major>_<catalog version>) of a tablespace');
    }
    for (let index = 1; index < parts.length; index++) {
      const prefix = parts.slice(0, index).join('/');
      if (this.symlinks.has(prefix)) throw this.refuse(header.name, `lies under the symlink ${prefix}`);
    }
    const rel = relative(this.options.root, join(this.options.root, name));
    if (rel.startsWith('..') || isAbsolute(rel)) throw this.refuse(header.name, 'would be written outside the target');
    return name;
  }

  private refuse(name: string, why: string): CorruptObjectError {
    return new CorruptObjectError(`${this.options.what}: tar member "${name}" ${why}; refused, nothing of it was written`,
      'a PostgreSQL base backup never holds such a member: the backup was altered or damaged; restore another backup (pgbk list, --backup <id>) and run pgbk verify');
  }

  private corrupt(problem: string): CorruptObjectError {
    return new CorruptObjectError(`${this.options.what} is not a valid tar archive: ${problem}`,
      'the stored backup is damaged; restore from another backup (pgbk list, --backup <id>) and run pgbk verify');
  }
}

function writeAll(file: number, data: Buffer): void {
  let offset = 0;
  while (offset < data.length) offset += writeSync(file, data, offset, data.length - offset);
}

function parseHeader(block: Buffer, corrupt: (problem: string) => Error): Header {
  const stored = tarNumber(block.subarray(148, 156));
  let sum = 0;
  for (let index = 0; index < BLOCK; index++) sum += index >= 148 && index < 156 ? 0x20 : block[index]!;
  if (stored !== sum) throw corrupt(`a header's checksum is ${stored}, its bytes sum to ${sum}`);
  const name = cString(block.subarray(0, 100));
  const magic = block.subarray(257, 262).toString('latin1');
  // POSIX ustar ("ustar\0"): a name prefix at 345; GNU tar ("ustar  ") keeps other things there.
  const prefix = block.subarray(257, 263).toString('latin1') === 'ustar\0' ? cString(block.subarray(345, 500)) : '';
  const type = String.fromCharCode(block[156]!);
  return {
    name: prefix ? `${prefix}/${name}` : name,
    mode: tarNumber(block.subarray(100, 108)),
    uid: tarNumber(block.subarray(108, 116)),
    gid: tarNumber(block.subarray(116, 124)),
    size: tarNumber(block.subarray(124, 136)),
    mtime: tarNumber(block.subarray(136, 148)),
    type: type === '\0' ? '0' : type,
    linkname: cString(block.subarray(157, 257)),
    uname: magic === 'ustar' ? cString(block.subarray(265, 297)) : '',
    gname: magic === 'ustar' ? cString(block.subarray(297, 329)) : '',
  };
}

function describeType(type: string): string {
  const names: Record<string, string> = {
    '1': 'hard link', '3': 'character device', '4': 'block device', '6': 'fifo', '7': 'contiguous file',
    x: 'pax header', g: 'pax global header', L: 'GNU long name', K: 'GNU long link name',
  };
  return `"${type}"${names[type] ? ` (${names[type]})` : ''}`;
}



/** name -> id from /etc/passwd or /etc/group. */
function idsOf(file: string): Map<string, number> {
  const ids = new Map<string, number>();
  let text = '';
  try {
    text = readFileSync(file, 'utf8');
  } catch { /* no such file: numeric ids */ }
  for (const line of text.split('\n')) {
    const fields = line.split(':');
    if (fields.length >= 3 && /^\d+$/.test(fields[2]!)) ids.set(fields[0]!, Number(fields[2]));
  }
  return ids;
}
