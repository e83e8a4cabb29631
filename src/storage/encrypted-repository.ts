// Client-side encryption as a Repository decorator: every object is encrypted on put and decrypted (and
// authenticated) on get, so WAL, base backups, dumps, manifests, markers and leases are all covered without their
// writers knowing. The identity (identity.json) stays readable, so that the salt and key check can be found, but
// carries an HMAC under the repository's key. Callers see the plaintext view throughout: put() reports the size and
// SHA-256 of what it was given, stat() and list() the body size (computed from the stored size, which is
// deterministic), get() the body; these agree with each other as on an unencrypted repository.
// The object format: src/storage/encryption/format.ts; the keys: src/storage/encryption/keys.ts.

import {createHash, createHmac, timingSafeEqual} from 'node:crypto';
import {text} from 'node:stream/consumers';
import {pipeline, type Readable} from 'node:stream';
import {ObjectNotFoundError, RepositoryIdentityError} from '../errors.js';
import {macInputOf, parseIdentity, withChecksum, type IdentityEncryption, type RepositoryIdentity} from '../identity/identity.js';
import {DecryptStream, EncryptStream, MAGIC, cipherSize, decryptBuffer, encryptBuffer, plainSize} from './encryption/format.js';
import {DEFAULT_KDF, deriveKey, validKdf, type DerivedKey, type KdfParameters} from './encryption/keys.js';
import {IDENTITY_KEY} from './layout.js';
import type {ListOptions, PutOptions, PutResult, Repository, StoredObject} from './repository.js';

export interface EncryptionSettings {
  /** repository.encryption.key: the passphrase new objects are written under. */
  key: string;
  /** repository.encryption.old_keys: passphrases older objects may be under (key rotation). */
  oldKeys: string[];
}

const CIPHER: IdentityEncryption['cipher'] = 'aes-256-gcm-256k-v1';

export class EncryptedRepository implements Repository {
  readonly description: string;
  private current?: DerivedKey;
  /** Old keys, derived only when an object under another key id turns up (each costs a KDF run). */
  private old?: Promise<DerivedKey[]>;
  private salt?: string;
  private kdf?: KdfParameters;
  private unlocking?: Promise<void>;
  private readonly derived = new Map<string, Promise<DerivedKey>>();

  readonly objectLock?: Repository['objectLock'];

  constructor(readonly inner: Repository, private readonly settings: EncryptionSettings) {
    this.description = inner.description;
    if (inner.objectLock) this.objectLock = () => inner.objectLock!();
  }

  private derive(passphrase: string, salt: string, kdf: KdfParameters): Promise<DerivedKey> {
    const cacheKey = `${JSON.stringify(kdf)}/${salt}/${this.settings.oldKeys.indexOf(passphrase)}/${passphrase === this.settings.key}`;
    let key = this.derived.get(cacheKey);
    if (!key) {
      key = deriveKey(passphrase, salt, kdf);
      this.derived.set(cacheKey, key);
    }
    return key;
  }

  async unlock(identity: RepositoryIdentity): Promise<void> {
    const encryption = identity.encryption;
    if (!encryption) {
      throw new RepositoryIdentityError(
        `${this.description} is not encrypted, but the policy sets repository.encryption`,
        'encryption is chosen when a repository is initialised: give the policy a new, empty repository.url for an encrypted repository, or remove repository.encryption; nothing was read or written',
      );
    }
    if (encryption.cipher !== CIPHER || !validKdf(encryption.kdf) || !Array.isArray(encryption.keyIds) || encryption.keyIds.length === 0) {
      throw new RepositoryIdentityError(`${this.description} is encrypted with a scheme this pgbk does not know (${String(encryption.cipher)})`, 'upgrade pgbk');
    }
    const key = await this.derive(this.settings.key, identity.salt, encryption.kdf);
    const id = key.id.toString('hex');
    if (id !== encryption.keyIds[0]) {
      const rotated = encryption.keyIds.includes(id);
      throw new RepositoryIdentityError(
        rotated
          ? `repository.encryption.key is an earlier key of ${this.description}: the repository's key was changed since (key check failed)`
          : `repository.encryption.key is not the key of ${this.description} (key check failed)`,
        rotated
          ? 'put the repository\'s current key in repository.encryption.key (and this one in old_keys); nothing was read or written'
          : 'give the key the repository was initialised with; to change keys, put the new one in key, the old one in old_keys, and run "pgbk re-encrypt"; nothing was read or written',
      );
    }
    this.verifyMac(identity, key);
    this.current = key;
    this.salt = identity.salt;
    this.kdf = encryption.kdf;
  }

  private verifyMac(identity: RepositoryIdentity, key: DerivedKey): void {
    const expected = createHmac('sha256', key.macKey).update(macInputOf(identity)).digest();
    const given = Buffer.from(String(identity.encryption?.mac ?? ''), 'hex');
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
      throw new RepositoryIdentityError(
        `the repository identity ${IDENTITY_KEY} in ${this.description} fails authentication under the repository's key: it was altered`,
        'restore identity.json from a copy; nothing was read or written',
      );
    }
  }

  /** The identity with its encryption block (key check, MAC) under `key` as the repository's key. */
  private seal(identity: RepositoryIdentity, key: DerivedKey, kdf: KdfParameters, keyIds: string[]): RepositoryIdentity {
    const unsigned: RepositoryIdentity = {...identity, encryption: {cipher: CIPHER, kdf, keyIds, mac: ''}};
    const mac = createHmac('sha256', key.macKey).update(macInputOf(unsigned)).digest('hex');
    return withChecksum({...unsigned, encryption: {...unsigned.encryption!, mac}});
  }

  /** Reads the identity and unlocks, once: every read or write of an object needs the key. */
  private async ready(): Promise<DerivedKey> {
    if (this.current) return this.current;
    this.unlocking ??= (async () => {
      let body: Buffer;
      try {
        body = (await this.inner.getVersioned(IDENTITY_KEY)).body;
      } catch (error) {
        if (error instanceof ObjectNotFoundError) {
          throw new RepositoryIdentityError(
            `${this.description} has no identity (${IDENTITY_KEY}), so its encryption key cannot be checked`,
            'run "pgbk init" first; nothing was read or written',
          );
        }
        throw error;
      }
      await this.unlock(parseIdentity(body.toString('utf8'), this.description));
    })();
    try {
      await this.unlocking;
    } catch (error) {
      this.unlocking = undefined;
      throw error;
    }
    return this.current!;
  }

  /**
   * Key rotation, first step: makes repository.encryption.key the repository's key. The identity must be signed by
   * one of old_keys (or by the key itself: nothing to do); its key ids become [key, the earlier ones].
   * Returns whether the identity changed.
   */
  async adoptKey(): Promise<boolean> {
    const {body, version} = await this.inner.getVersioned(IDENTITY_KEY);
    const identity = parseIdentity(body.toString('utf8'), this.description);
    const encryption = identity.encryption;
    if (!encryption || !validKdf(encryption.kdf)) return this.unlock(identity).then(() => false);
    const key = await this.derive(this.settings.key, identity.salt, encryption.kdf);
    if (key.id.toString('hex') === encryption.keyIds[0]) {
      await this.unlock(identity);
      return false;
    }
    const olds = await Promise.all(this.settings.oldKeys.map((passphrase) => this.derive(passphrase, identity.salt, encryption.kdf)));
    const signer = olds.find((old) => old.id.toString('hex') === encryption.keyIds[0]);
    if (!signer) {
      throw new RepositoryIdentityError(
        `neither repository.encryption.key nor any of repository.encryption.old_keys is the key of ${this.description} (key check failed)`,
        'put the repository\'s current key in repository.encryption.old_keys; nothing was read or written',
      );
    }
    this.verifyMac(identity, signer);
    await this.putIdentity(Buffer.from(JSON.stringify(identity)), {ifMatch: version});
    const stored = await this.inner.getVersioned(IDENTITY_KEY);
    await this.unlock(parseIdentity(stored.body.toString('utf8'), this.description));
    return true;
  }

  /** Key rotation, last step (every object is under the key now): the identity lists only the key. */
  async forgetOldKeys(): Promise<void> {
    await this.ready();
    const {body, version} = await this.inner.getVersioned(IDENTITY_KEY);
    const identity = parseIdentity(body.toString('utf8'), this.description);
    await this.unlock(identity);
    const only = withChecksum({...identity, encryption: {...identity.encryption!, keyIds: []}});
    await this.putIdentity(Buffer.from(JSON.stringify(only)), {ifMatch: version});
  }

  /** The key id (hex) in the header of the stored object `key`, or undefined when it has no encrypted header. */
  async keyIdOf(key: string): Promise<string | undefined> {
    const stream = await this.inner.get(key);
    const parts: Buffer[] = [];
    let bytes = 0;
    try {
      for await (const chunk of stream) {
        parts.push(chunk as Buffer);
        bytes += (chunk as Buffer).length;
        if (bytes >= 16) break;
      }
    } finally {
      stream.destroy();
    }
    const head = Buffer.concat(parts);
    return head.length >= 16 && head.subarray(0, 8).equals(MAGIC) ? head.subarray(8, 16).toString('hex') : undefined;
  }

  async currentKeyId(): Promise<string> {
    return (await this.ready()).id.toString('hex');
  }

  /** The data key for a key id found in an object's header. */
  private readonly lookup = async (keyId: Buffer): Promise<Buffer | undefined> => {
    const current = await this.ready();
    if (keyId.equals(current.id)) return current.dataKey;
    this.old ??= Promise.all(this.settings.oldKeys.map((passphrase) => this.derive(passphrase, this.salt!, this.kdf!)));
    return (await this.old).find((key) => key.id.equals(keyId))?.dataKey;
  };

  async put(key: string, body: Readable | Buffer, options: PutOptions = {}): Promise<PutResult> {
    if (key === IDENTITY_KEY) return this.putIdentity(body, options);
    const current = await this.ready();
    if (Buffer.isBuffer(body)) {
      const sealed = encryptBuffer(current.dataKey, current.id, key, body);
      const stored = await this.inner.put(key, sealed, {...options, sizeBytes: sealed.length});
      return {...stored, sizeBytes: body.length, sha256: createHash('sha256').update(body).digest('hex')};
    }
    const encrypt = new EncryptStream(current.dataKey, current.id, key);
    const sealed = pipeline(body, encrypt, () => {});
    const stored = await this.inner.put(key, sealed as Readable, {
      ...options,
      sizeBytes: options.sizeBytes === undefined ? undefined : cipherSize(options.sizeBytes),
    });
    return {...stored, sizeBytes: encrypt.plainBytes, sha256: encrypt.sha256};
  }

  /**
   * identity.json: written by init (or the first backup) with no encryption block, which is added here with the
   * key check and MAC under the policy's key. Written again by re-encrypt with its key ids.
   */
  private async putIdentity(body: Readable | Buffer, options: PutOptions): Promise<PutResult> {
    const identity = parseIdentity(Buffer.isBuffer(body) ? body.toString('utf8') : await text(body), this.description);
    const kdf = identity.encryption?.kdf ?? DEFAULT_KDF;
    const key = await this.derive(this.settings.key, identity.salt, kdf);
    const id = key.id.toString('hex');
    const keyIds = [id, ...(identity.encryption?.keyIds ?? []).filter((other) => other !== id)];
    const sealed = Buffer.from(`${JSON.stringify(this.seal(identity, key, kdf, keyIds), null, 2)}\n`);
    return this.inner.put(IDENTITY_KEY, sealed, {...options, sizeBytes: sealed.length});
  }

  async get(key: string): Promise<Readable> {
    if (key === IDENTITY_KEY) return this.inner.get(key);
    await this.ready();
    const source = await this.inner.get(key);
    return pipeline(source, new DecryptStream(this.lookup, key), () => {}) as Readable;
  }

  async getVersioned(key: string): Promise<{body: Buffer; version: string}> {
    if (key === IDENTITY_KEY) return this.inner.getVersioned(key);
    await this.ready();
    const {body, version} = await this.inner.getVersioned(key);
    return {body: await decryptBuffer(this.lookup, key, body), version};
  }

  private plainView<T extends StoredObject>(object: T): T {
    if (object.key === IDENTITY_KEY) return object;
    const size = plainSize(object.sizeBytes);
    return size === undefined ? object : {...object, sizeBytes: size};
  }

  async stat(key: string): Promise<StoredObject | undefined> {
    const stored = await this.inner.stat(key);
    return stored && this.plainView(stored);
  }

  async *list(prefix: string, options?: ListOptions): AsyncIterable<StoredObject> {
    for await (const object of this.inner.list(prefix, options)) yield this.plainView(object);
  }

  async remove(keys: Iterable<string>): Promise<void> {
    await this.ready();
    return this.inner.remove(keys);
  }

  conditionalWrites(): ReturnType<Repository['conditionalWrites']> {
    return this.inner.conditionalWrites();
  }

  cleanUpIncomplete(olderThan: Date): ReturnType<Repository['cleanUpIncomplete']> {
    return this.inner.cleanUpIncomplete(olderThan);
  }

  create(): Promise<void> {
    return this.inner.create();
  }

  serverTime(): Promise<Date | undefined> {
    return this.inner.serverTime();
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}
