// A base backup over the replication protocol (BASE_BACKUP, PostgreSQL 15 or later), for clusters with user
// tablespaces: pg_basebackup writes only one tablespace to a stream, the protocol sends one tar archive per
// tablespace. The CopyData messages are typed ('n' new archive, 'd' data, 'p' progress, 'm' manifest follows);
// each archive's bytes go to the sink the caller opens for it, in order, with back-pressure: the socket is paused
// while more than a few MiB wait for the sinks, so memory stays flat whatever the size of the cluster.

import type {Client} from 'pg';
import {BackupError, PgServerError} from '../errors.js';
import {redactUrl} from '../pg/conninfo.js';

export interface ArchiveSink {
  write(chunk: Buffer): Promise<void>;
  /** The archive is complete: resolves once everything written is stored. */
  end(): Promise<void>;
}

export interface ProtocolBackupOptions {
  label: string;
  checkpoint: 'fast' | 'spread';
  /** An archive starts: "base.tar" (the data directory, empty `tablespacePath`) or "<oid>.tar". */
  openArchive: (name: string, tablespacePath: string) => ArchiveSink;
  /** Bytes of the backup manifest (backup_manifest), in order. */
  manifest: (chunk: Buffer) => void;
  cancelSignal?: AbortSignal;
}

const HIGH_WATER = 8 * 1024 * 1024;
const LOW_WATER = 2 * 1024 * 1024;

/** The BASE_BACKUP command (PostgreSQL 15 syntax). No TABLESPACE_MAP: pg_tblspc/<oid> symlinks come in base.tar. */
export function baseBackupCommand(label: string, checkpoint: 'fast' | 'spread'): string {
  return `BASE_BACKUP (LABEL '${label.replace(/'/g, "''")}', CHECKPOINT '${checkpoint}', MANIFEST 'yes', TABLESPACE_MAP false)`;
}

/** Splits the payload of an 'n' message: archive name and tablespace path, each NUL-terminated. */
export function parseNewArchive(payload: Buffer): {name: string; tablespacePath: string} {
  const first = payload.indexOf(0);
  const second = first < 0 ? -1 : payload.indexOf(0, first + 1);
  if (first < 0 || second < 0) throw new BackupError('the server sent a malformed new-archive message in BASE_BACKUP');
  return {name: payload.subarray(0, first).toString('utf8'), tablespacePath: payload.subarray(first + 1, second).toString('utf8')};
}

export async function protocolBaseBackup(url: string, options: ProtocolBackupOptions): Promise<void> {
  const pg = (await import('pg')).default;
  const client = new pg.Client({connectionString: url, replication: 'database', connectionTimeoutMillis: 10_000, application_name: 'pgbk'} as never) as Client;
  try {
    await client.connect();
  } catch (error) {
    throw new PgServerError(`cannot open a replication connection to ${redactUrl(url)}: ${(error as Error).message}`,
      'pg_hba.conf must allow the backup user a replication connection ("host replication ..." lines), and the user needs the REPLICATION attribute',
      {cause: error});
  }
  let failure: Error | undefined;
  let wake: (() => void) | undefined;
  const notify = (): void => {
    const resolve = wake;
    wake = undefined;
    resolve?.();
  };
  // A connection lost mid-backup (server stopped, backend terminated) fails the backup; never an unhandled 'error'.
  client.on('error', (error: Error) => {
    failure ??= new BackupError(`BASE_BACKUP failed on ${redactUrl(url)}: ${error.message}`, undefined, {cause: error});
    notify();
  });
  const connection = (client as unknown as {connection: NodeJS.EventEmitter & {stream: NodeJS.ReadableStream & {destroy(): void}}}).connection;
  const socket = connection.stream;
  const queue: Buffer[] = [];
  let head = 0;
  let queued = 0;
  let paused = false;
  let finished = false;
  connection.on('copyData', (message: {chunk: Buffer}) => {
    // The parser reuses its buffer: copy before the message waits in the queue.
    const copy = Buffer.from(message.chunk);
    queue.push(copy);
    queued += copy.length;
    if (queued > HIGH_WATER && !paused) {
      paused = true;
      socket.pause();
    }
    notify();
  });
  const onAbort = (): void => {
    failure ??= new BackupError('the backup was cancelled');
    notify();
  };
  options.cancelSignal?.addEventListener('abort', onAbort, {once: true});
  const query = client.query({text: baseBackupCommand(options.label, options.checkpoint), rowMode: 'array'} as never) as unknown as Promise<unknown>;
  const settled = query.then(() => {
    finished = true;
    notify();
  }, (error: Error) => {
    failure ??= new BackupError(`BASE_BACKUP failed on ${redactUrl(url)}: ${error.message}`, undefined, {cause: error});
    finished = true;
    notify();
  });
  let sink: ArchiveSink | undefined;
  let inManifest = false;
  let ok = false;
  try {
    for (;;) {
      if (failure) throw failure;
      if (head >= queue.length) {
        queue.length = 0;
        head = 0;
        if (finished) break;
        await new Promise<void>((resolve) => (wake = resolve));
        continue;
      }
      const message = queue[head]!;
      queue[head++] = undefined as never;
      queued -= message.length;
      if (paused && queued < LOW_WATER) {
        paused = false;
        socket.resume();
      }
      const type = String.fromCharCode(message[0]!);
      const payload = message.subarray(1);
      if (type === 'n') {
        if (inManifest) throw new BackupError('the server started an archive after the backup manifest in BASE_BACKUP');
        await sink?.end();
        const {name, tablespacePath} = parseNewArchive(payload);
        sink = options.openArchive(name, tablespacePath);
      } else if (type === 'm') {
        await sink?.end();
        sink = undefined;
        inManifest = true;
      } else if (type === 'd') {
        if (inManifest) options.manifest(payload);
        else if (sink) await sink.write(payload);
        else throw new BackupError('the server sent archive data before any archive in BASE_BACKUP');
      } else if (type !== 'p') {
        throw new BackupError(`the server sent an unknown message ("${type}") in BASE_BACKUP`);
      }
    }
    await sink?.end();
    sink = undefined;
    ok = true;
  } finally {
    options.cancelSignal?.removeEventListener('abort', onAbort);
    if (!ok) socket.destroy();
    await Promise.race([settled, new Promise((resolve) => setTimeout(resolve, 5000).unref())]);
    await client.end().catch(() => undefined);
  }
}
