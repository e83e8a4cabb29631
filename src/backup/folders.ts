// Backup folders without a manifest: a backup being written (its owner marker is live), or one abandoned by a
// run that died or an expire that was interrupted. Shared by the scheduler's clean-up after a killed run,
// expire (removes abandoned ones) and verify (reports them).

import {BACKUP_PREFIX, MANIFEST_NAME} from '../storage/layout.js';
import type {Repository} from '../storage/repository.js';
import {isOwnerLive, OWNER_NAME, readOwner, type OwnerRecord} from './owner.js';

export interface UnfinishedFolder {
  id: string;
  keys: string[];
  bytes: number;
  /** Newest modification time of its objects (ms); Infinity when the store gave none. */
  newestMs: number;
  owner?: OwnerRecord;
  /** A run is writing it right now: never touch. */
  live: boolean;
}

/** Every folder under backups/ without a manifest, one at a time as the listing streams. */
export async function* unfinishedFolders(repo: Repository, now: Date): AsyncIterable<UnfinishedFolder> {
  let folder: {id: string; keys: string[]; bytes: number; manifest: boolean; owner: boolean; newestMs: number} | undefined;
  const finish = async (): Promise<UnfinishedFolder | undefined> => {
    if (!folder || folder.manifest) return undefined;
    const owner = folder.owner ? await readOwner(repo, folder.id) : undefined;
    return {id: folder.id, keys: folder.keys, bytes: folder.bytes, newestMs: folder.newestMs, owner, live: isOwnerLive(owner, now)};
  };
  for await (const object of repo.list(BACKUP_PREFIX)) {
    const [id, ...rest] = object.key.slice(BACKUP_PREFIX.length).split('/');
    if (!id || rest.length === 0) continue;
    if (folder?.id !== id) {
      const done = await finish();
      if (done) yield done;
      folder = {id, keys: [], bytes: 0, manifest: false, owner: false, newestMs: 0};
    }
    folder.keys.push(object.key);
    folder.bytes += object.sizeBytes;
    const name = rest.join('/');
    if (name === MANIFEST_NAME) folder.manifest = true;
    if (name === OWNER_NAME) folder.owner = true;
    folder.newestMs = Math.max(folder.newestMs, object.modified?.getTime() ?? Number.POSITIVE_INFINITY);
  }
  const done = await finish();
  if (done) yield done;
}

/**
 * Abandoned: no manifest, no live owner, and nothing in it written for `ageMs`. A live backup renews its owner
 * marker every few minutes, so its folder never reaches that age.
 */
export function isAbandoned(folder: UnfinishedFolder, now: Date, ageMs: number): boolean {
  return !folder.live && folder.newestMs <= now.getTime() - ageMs;
}

/** Expire removes abandoned folders and incomplete uploads once they are this old. */
export const ABANDONED_AFTER_MS = 24 * 3600_000;
