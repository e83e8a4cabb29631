// Key names inside a repository: the one place that knows where things live.
//
//   identity.json                            the repository's identity: the database system it belongs to
//   wal/<timeline>/<timeline+log>/<walfile>-<sha256>.zst  archived WAL: segments, .partial and .backup files,
//                                            zstd (.zst), gzip (.gz) or uncompressed (no suffix),
//                                            at most 256 segments a folder; the SHA-256 of the uncompressed
//                                            file is part of the name
//   wal/<timeline>/<timeline>.history-<sha256>.gz         timeline history files
//   backups/<id>/base.tar.zst                a base backup (pg_basebackup tar), zstd (.gz: gzip)
//   backups/<id>/dump.pgdump                 a pg_dump custom-format archive
//   backups/<id>/manifest.json               written last: a backup exists once its manifest does

import {isWalFileName} from '../wal/name.js';
import {codecSuffix, type Codec} from '../util/codec.js';

/** What the store enforces (conditional writes), probed once and recorded (see repository.ts). */
export const CAPABILITIES_KEY = 'capabilities.json';

export const IDENTITY_KEY = 'identity.json';
export const WAL_PREFIX = 'wal/';
export const BACKUP_PREFIX = 'backups/';
export const MANIFEST_NAME = 'manifest.json';

export interface WalObjectName {
  walFile: string;
  sha256: string;
  codec: Codec;
}

/** Prefix of everything archived on one timeline (its history file first, then segments in order). */
export function walTimelineKey(timelineHex8: string): string {
  return `${WAL_PREFIX}${timelineHex8}/`;
}

/** Prefix that lists every stored copy of one WAL file (normally exactly one). */
export function walFilePrefix(walFile: string): string {
  const folder = walFile.endsWith('.history') ? '' : `${walFile.slice(0, 16)}/`;
  return `${walTimelineKey(walFile.slice(0, 8))}${folder}${walFile}-`;
}

export function walObjectKey(walFile: string, sha256: string, codec: Codec = 'gzip'): string {
  return `${walFilePrefix(walFile)}${sha256}${codecSuffix(codec)}`;
}

const WAL_KEY_RE = /^wal\/[0-9A-F]{8}\/(?:[0-9A-F]{16}\/)?([0-9A-F.a-z]+)-([0-9a-f]{64})(\.gz|\.zst)?$/;

/** Splits a WAL object key; undefined for anything else (temp files, foreign objects). */
export function parseWalObjectKey(key: string): WalObjectName | undefined {
  const match = WAL_KEY_RE.exec(key);
  if (!match || !isWalFileName(match[1]!)) return undefined;
  return {walFile: match[1]!, sha256: match[2]!, codec: match[3] === '.gz' ? 'gzip' : match[3] === '.zst' ? 'zstd' : 'none'};
}

export function backupDirKey(backupId: string): string {
  return `${BACKUP_PREFIX}${backupId}/`;
}

export function backupObjectKey(backupId: string, name: string): string {
  return `${backupDirKey(backupId)}${name}`;
}

export function manifestKey(backupId: string): string {
  return backupObjectKey(backupId, MANIFEST_NAME);
}

/** Backup ids sort as time: 20261126T104100Z (plus a suffix when two start in one second). */
export function backupIdFor(date: Date): string {
  return date.toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
}

// Scheduler, retention and drill state (issue 3 and 4), next to the data it describes:
//   locks/<job>.json                         a lease: one run of a job at a time, across processes and hosts
//   jobs/<job>/last.json                     the last result of each scheduled job (backup, expire, drill)
//   drills/<drill id>.json                   every drill report, ids sorting as time
export const LOCK_PREFIX = 'locks/';
export const JOB_PREFIX = 'jobs/';
export const DRILL_PREFIX = 'drills/';

export function lockKey(job: string): string {
  return `${LOCK_PREFIX}${job}.json`;
}

export function jobResultKey(job: string): string {
  return `${JOB_PREFIX}${job}/last.json`;
}

export function drillReportKey(drillId: string): string {
  return `${DRILL_PREFIX}${drillId}.json`;
}
