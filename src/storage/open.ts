// Opens the repository a policy names: file:// → local driver; s3:// → S3 driver (loaded on demand).

import {PolicyError} from '../errors.js';
import type {Repository} from './repository.js';
import type {RepositoryConfig} from '../policy/types.js';

export async function openRepository(config: RepositoryConfig): Promise<Repository> {
  const repo = await openDriver(config);
  if (!config.encryption) return repo;
  const {EncryptedRepository} = await import('./encrypted-repository.js');
  return new EncryptedRepository(repo, config.encryption);
}

async function openDriver(config: RepositoryConfig): Promise<Repository> {
  const url = config.url;
  if (url.startsWith('file://')) {
    const path = decodeURIComponent(url.slice('file://'.length));
    if (!path.startsWith('/')) {
      throw new PolicyError(`repository.url: "${url}" must be an absolute path, like file:///var/backups/pgbk/orders`);
    }
    const {LocalRepository} = await import('./local/local-repository.js');
    return new LocalRepository(path.replace(/\/+$/, '') || '/');
  }
  if (url.startsWith('s3://')) {
    const rest = url.slice('s3://'.length);
    const slash = rest.indexOf('/');
    const bucket = slash < 0 ? rest : rest.slice(0, slash);
    const rawPrefix = slash < 0 ? '' : rest.slice(slash + 1).replace(/^\/+|\/+$/g, '');
    if (!bucket) throw new PolicyError(`repository.url: "${url}" names no bucket, expected s3://<bucket>/<prefix>`);
    const {S3Repository} = await import('./s3/s3-repository.js');
    return new S3Repository({
      bucket,
      prefix: rawPrefix ? `${rawPrefix}/` : '',
      endpoint: config.endpoint,
      region: config.region ?? 'us-east-1',
      forcePathStyle: config.forcePathStyle ?? Boolean(config.endpoint),
      accessKeyId: config.accessKeyId,
      secretAccessKey: config.secretAccessKey,
      write: {storageClass: config.storageClass, sse: config.sse, kmsKeyId: config.kmsKeyId, objectLock: config.objectLock},
    });
  }
  throw new PolicyError(`repository.url: "${url}" is not a file:// or s3:// URL`);
}
