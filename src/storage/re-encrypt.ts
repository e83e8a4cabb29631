// pgbk re-encrypt: key rotation. Makes repository.encryption.key the repository's key (the identity signed by one
// of old_keys is re-signed), rewrites every object still under another key, then drops the old key ids from the
// identity. Each object is replaced only while it is the version that was read (compare-and-swap): an object
// expired or rewritten meanwhile is left alone. Safe to run again after an interruption.

import {PreconditionFailedError, ObjectNotFoundError} from '../errors.js';
import {CAPABILITIES_KEY, IDENTITY_KEY} from './layout.js';
import type {EncryptedRepository} from './encrypted-repository.js';

export interface ReEncryptResult {
  /** The identity was re-signed with the new key (false: it was the repository's key already). */
  adopted: boolean;
  keyId: string;
  rewritten: number;
  rewrittenBytes: number;
  current: number;
  /** Objects that changed or vanished while being rewritten (a concurrent expire): left as they were. */
  skipped: string[];
}

export async function reEncrypt(repo: EncryptedRepository, progress: (line: string) => void = () => {}): Promise<ReEncryptResult> {
  const adopted = await repo.adoptKey();
  const keyId = await repo.currentKeyId();
  const result: ReEncryptResult = {adopted, keyId, rewritten: 0, rewrittenBytes: 0, current: 0, skipped: []};
  for await (const object of repo.inner.list('')) {
    if (object.key === IDENTITY_KEY || object.key.startsWith(CAPABILITIES_KEY)) continue;
    let found: string | undefined;
    try {
      found = await repo.keyIdOf(object.key);
    } catch (error) {
      if (error instanceof ObjectNotFoundError) continue;
      throw error;
    }
    if (found === keyId) {
      result.current++;
      continue;
    }
    const stat = await repo.stat(object.key);
    if (!stat?.version) continue;
    try {
      const body = await repo.get(object.key);
      const stored = await repo.put(object.key, body, {ifMatch: stat.version, sizeBytes: stat.sizeBytes});
      result.rewritten++;
      result.rewrittenBytes += stored.sizeBytes;
      progress(`re-encrypted ${object.key}`);
    } catch (error) {
      if (!(error instanceof PreconditionFailedError) && !(error instanceof ObjectNotFoundError)) throw error;
      result.skipped.push(object.key);
    }
  }
  if (result.skipped.length === 0) await repo.forgetOldKeys();
  return result;
}
