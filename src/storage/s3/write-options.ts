// What every object write carries on S3 besides the body: storage class, server-side encryption, and Object Lock
// retention (repository.storage_class, sse, kms_key_id, object_lock). Pure, so the request shaping is unit-tested.

import type {StorageClass} from '@aws-sdk/client-s3';

export interface S3WriteSettings {
  storageClass?: string;
  sse?: 'AES256' | 'aws:kms';
  kmsKeyId?: string;
  objectLock?: {mode: 'governance' | 'compliance'; days: number};
}

export interface S3WriteParams {
  StorageClass?: StorageClass;
  ServerSideEncryption?: 'AES256' | 'aws:kms';
  SSEKMSKeyId?: string;
  ObjectLockMode?: 'GOVERNANCE' | 'COMPLIANCE';
  ObjectLockRetainUntilDate?: Date;
  ContentMD5?: string;
}

/** The retention of an object written at `now`: mode and retain-until date. */
export function retentionOf(lock: NonNullable<S3WriteSettings['objectLock']>, now: Date): {Mode: 'GOVERNANCE' | 'COMPLIANCE'; RetainUntilDate: Date} {
  return {Mode: lock.mode === 'compliance' ? 'COMPLIANCE' : 'GOVERNANCE', RetainUntilDate: new Date(now.getTime() + lock.days * 86_400_000)};
}

/**
 * Parameters for PutObject (`md5Base64` given: a single PUT of a known body, which may carry the lock itself; S3
 * requires Content-MD5 then) or for CreateMultipartUpload / a streamed upload (no md5: the lock is set with
 * PutObjectRetention once the object is complete, since radosgw ignores it on CreateMultipartUpload).
 */
export function writeParams(settings: S3WriteSettings, now: Date, md5Base64?: string): S3WriteParams {
  const params: S3WriteParams = {};
  if (settings.storageClass) params.StorageClass = settings.storageClass as StorageClass;
  if (settings.sse) params.ServerSideEncryption = settings.sse;
  if (settings.sse === 'aws:kms' && settings.kmsKeyId) params.SSEKMSKeyId = settings.kmsKeyId;
  if (settings.objectLock && md5Base64) {
    const retention = retentionOf(settings.objectLock, now);
    params.ObjectLockMode = retention.Mode;
    params.ObjectLockRetainUntilDate = retention.RetainUntilDate;
    params.ContentMD5 = md5Base64;
  }
  return params;
}
