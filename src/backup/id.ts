// Backup ids that sort as time, unique in the repository.

import {backupDirKey, backupIdFor} from '../storage/layout.js';
import type {Repository} from '../storage/repository.js';

export async function newBackupId(repo: Repository, date: Date): Promise<string> {
  const base = backupIdFor(date);
  for (let suffix = 0; ; suffix++) {
    const id = suffix === 0 ? base : `${base}-${suffix}`;
    let taken = false;
    for await (const _object of repo.list(backupDirKey(id))) {
      taken = true;
      break;
    }
    if (!taken) return id;
  }
}
