// Backup ids that sort as time, unique in the repository even when two backups start in the same second:
// an id is taken by creating its folder's owner marker create-only (backups/<id>/owner.json), so of two
// runs racing for one id exactly one gets it and the other moves on to the next suffix.

import {PreconditionFailedError} from '../errors.js';
import {backupDirKey, backupIdFor} from '../storage/layout.js';
import type {Repository} from '../storage/repository.js';
import {createOwner, type BackupOwner} from './owner.js';

/** Claims a fresh id for a backup starting at `date`; the caller holds its folder until releaseOwner(). */
export async function claimBackupId(repo: Repository, date: Date, options: {ttlMs?: number} = {}): Promise<{id: string; owner: BackupOwner}> {
  const base = backupIdFor(date);
  for (let suffix = 0; ; suffix++) {
    const id = suffix === 0 ? base : `${base}-${suffix}`;
    // Anything stored under the folder (an earlier backup, a leftover): not ours to write into.
    let taken = false;
    for await (const _object of repo.list(backupDirKey(id))) {
      taken = true;
      break;
    }
    if (taken) continue;
    try {
      return {id, owner: await createOwner(repo, id, options.ttlMs)};
    } catch (error) {
      if (error instanceof PreconditionFailedError) continue; // another run took this id a moment ago
      throw error;
    }
  }
}
