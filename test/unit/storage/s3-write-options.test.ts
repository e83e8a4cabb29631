import {describe, expect, it} from 'vitest';
import {retentionOf, writeParams} from '../../../src/storage/s3/write-options.js';

const now = new Date('2026-03-01T12:00:00Z');

describe('S3 write parameters', () => {
  it('none by default', () => {
    expect(writeParams({}, now)).toEqual({});
    expect(writeParams({}, now, 'bWQ1')).toEqual({});
  });

  it('storage class and server-side encryption on every write; the KMS key only with aws:kms', () => {
    expect(writeParams({storageClass: 'STANDARD_IA', sse: 'AES256', kmsKeyId: 'ignored'}, now)).toEqual({StorageClass: 'STANDARD_IA', ServerSideEncryption: 'AES256'});
    expect(writeParams({sse: 'aws:kms', kmsKeyId: 'arn:k'}, now, 'bWQ1')).toEqual({ServerSideEncryption: 'aws:kms', SSEKMSKeyId: 'arn:k'});
  });

  it('Object Lock: on a single PUT with Content-MD5; not on a streamed or multipart upload (retention set after completion)', () => {
    expect(writeParams({objectLock: {mode: 'governance', days: 7}}, now, 'bWQ1')).toEqual({
      ObjectLockMode: 'GOVERNANCE', ObjectLockRetainUntilDate: new Date('2026-03-08T12:00:00Z'), ContentMD5: 'bWQ1',
    });
    expect(writeParams({objectLock: {mode: 'compliance', days: 7}}, now)).toEqual({});
    expect(retentionOf({mode: 'compliance', days: 30}, now)).toEqual({Mode: 'COMPLIANCE', RetainUntilDate: new Date('2026-03-31T12:00:00Z')});
  });
});
