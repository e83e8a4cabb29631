// The owner marker of a backup being written: backups/<id>/owner.json, created create-only as the id is
// claimed, renewed (compare-and-swap) while the backup runs, removed once its manifest is stored. Clean-up
// (the scheduler after a killed run, expire, verify) never touches a folder whose owner is live.

import {randomBytes} from 'node:crypto';
import {hostname} from 'node:os';
import {ObjectNotFoundError} from '../errors.js';
import {backupObjectKey} from '../storage/layout.js';
import type {Repository} from '../storage/repository.js';
import {processAlive} from '../util/process.js';

export const OWNER_NAME = 'owner.json';
/** Renewed every quarter of this while the backup runs; a crashed run's folder is free after it. */
export const DEFAULT_OWNER_TTL_MS = 10 * 60_000;

export interface OwnerRecord {
  id: string;
  host: string;
  pid: number;
  /** Random per run. */
  token: string;
  startedAt: string;
  expiresAt: string;
}

export interface BackupOwner {
  record: OwnerRecord;
  key: string;
  /** Version of our last write of the marker. */
  version: string;
  ttlMs: number;
}

export function ownerKey(id: string): string {
  return backupObjectKey(id, OWNER_NAME);
}

/** Creates the marker; PreconditionFailedError when the id is someone else's. */
export async function createOwner(repo: Repository, id: string, ttlMs = DEFAULT_OWNER_TTL_MS): Promise<BackupOwner> {
  const now = Date.now();
  const record: OwnerRecord = {
    id, host: hostname(), pid: process.pid, token: randomBytes(8).toString('hex'),
    startedAt: new Date(now).toISOString(), expiresAt: new Date(now + ttlMs).toISOString(),
  };
  const key = ownerKey(id);
  const {version} = await repo.put(key, Buffer.from(`${JSON.stringify(record)}\n`), {ifNoneMatch: '*'});
  return {record, key, version, ttlMs};
}

/** Extends the marker's expiry (compare-and-swap on our last version); false when it is no longer ours. */
export async function renewOwner(repo: Repository, owner: BackupOwner): Promise<boolean> {
  const record = {...owner.record, expiresAt: new Date(Date.now() + owner.ttlMs).toISOString()};
  try {
    owner.version = (await repo.put(owner.key, Buffer.from(`${JSON.stringify(record)}\n`), {ifMatch: owner.version})).version;
  } catch (error) {
    if ((error as {code?: string}).code === 'repo.precondition-failed') return false;
    throw error;
  }
  owner.record = record;
  return true;
}

/** Renews every quarter of the TTL until the returned stop() is called; renewal errors are retried. */
export function keepOwnerAlive(repo: Repository, owner: BackupOwner): () => void {
  const timer = setInterval(() => {
    renewOwner(repo, owner).catch(() => undefined);
  }, Math.max(1000, Math.floor(owner.ttlMs / 4)));
  timer.unref();
  return () => clearInterval(timer);
}

export async function releaseOwner(repo: Repository, owner: BackupOwner): Promise<void> {
  await repo.remove([owner.key]);
}

export async function readOwner(repo: Repository, id: string): Promise<OwnerRecord | undefined> {
  try {
    const {body} = await repo.getVersioned(ownerKey(id));
    const parsed = JSON.parse(body.toString('utf8')) as OwnerRecord;
    return typeof parsed?.expiresAt === 'string' ? parsed : undefined;
  } catch (error) {
    if (error instanceof ObjectNotFoundError || error instanceof SyntaxError) return undefined;
    throw error;
  }
}

/**
 * Live: not expired, and (on this host) its process still runs. A run killed with SIGKILL leaves its marker;
 * on the same host its dead pid frees the folder at once, elsewhere the expiry does.
 */
export function isOwnerLive(owner: OwnerRecord | undefined, now: Date): boolean {
  if (!owner) return false;
  if (Date.parse(owner.expiresAt) <= now.getTime()) return false;
  if (owner.host === hostname() && !processAlive(owner.pid)) return false;
  return true;
}

/** Runs `write` holding the folder of `owner` (renewed meanwhile); the marker goes when it ends, either way. */
export async function withOwner<T>(repo: Repository, owner: BackupOwner, write: () => Promise<T>): Promise<T> {
  const stop = keepOwnerAlive(repo, owner);
  try {
    return await write();
  } finally {
    stop();
    await releaseOwner(repo, owner).catch(() => undefined);
  }
}
