// The S3 endpoint the integration tests use (started or chosen by global-setup.ts) and a client
// configured the way that works against radosgw, s3rver, MinIO and AWS alike.
import {randomBytes} from 'node:crypto';
import {S3Client, type S3ClientConfig} from '@aws-sdk/client-s3';

/** What global-setup.ts provides to the tests (`inject('s3')`). */
export interface S3TestEndpoint {
  /** e.g. http://127.0.0.1:40123 */
  endpoint: string;
  bucket: string;
  accessKeyId: string;
  secretAccessKey: string;
  region: string;
  /**
   * 'radosgw' when the harness started a throwaway Ceph cluster (radosgw.ts), 's3rver' for the mock
   * it falls back to where Ceph is not installed, 'external' for PGBK_TEST_S3_ENDPOINT.
   */
  kind: 'radosgw' | 's3rver' | 'external';
  /**
   * A second bucket created with Object Lock enabled (hence versioned), for Object Lock tests:
   * set for radosgw, and for an external endpoint when PGBK_TEST_S3_LOCK_BUCKET names one;
   * undefined for s3rver (no Object Lock), so such tests skip there.
   */
  lockBucket?: string;
}

declare module 'vitest' {
  export interface ProvidedContext {
    s3: S3TestEndpoint;
    /** Directory where helpers record temp dirs so the global teardown can clean up leftovers. */
    runDir: string;
  }
}

/**
 * Client options that work against radosgw 16.2, s3rver 3.7.1 (and MinIO/AWS):
 * - forcePathStyle: s3rver and radosgw would otherwise need bucket.127.0.0.1 DNS;
 * - requestChecksumCalculation 'WHEN_REQUIRED': with the SDK default ('WHEN_SUPPORTED') a PutObject
 *   of a stream is sent aws-chunked with a trailing CRC32, which s3rver stores verbatim (the
 *   object then contains the chunk framing) — silent corruption — and radosgw refuses (411);
 * - responseChecksumValidation 'WHEN_REQUIRED': s3rver returns no x-amz-checksum-* headers.
 */
export function s3ClientConfig(s3: S3TestEndpoint): S3ClientConfig {
  return {
    endpoint: s3.endpoint,
    region: s3.region,
    forcePathStyle: true,
    credentials: {accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey},
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    maxAttempts: 3,
  };
}

export function createS3Client(s3: S3TestEndpoint): S3Client {
  return new S3Client(s3ClientConfig(s3));
}

/** A fresh key prefix so tests sharing the bucket never see each other's objects. */
export function uniquePrefix(label = 'test'): string {
  return `${label}-${Date.now().toString(36)}-${randomBytes(4).toString('hex')}`;
}

/**
 * The `repository:` section of a policy for this endpoint, keys as in CONTRACT.md. Credentials
 * are given literally; pass `{credentialsFromEnv: true}` to get `${AWS_ACCESS_KEY_ID}` references
 * instead (then pass s3Env() to runPgbk).
 */
export function repositoryPolicy(
  s3: S3TestEndpoint,
  prefix: string,
  opts: {credentialsFromEnv?: boolean} = {},
): Record<string, unknown> {
  return {
    url: `s3://${s3.bucket}/${prefix}`,
    endpoint: s3.endpoint,
    region: s3.region,
    force_path_style: true,
    access_key_id: opts.credentialsFromEnv ? '${AWS_ACCESS_KEY_ID}' : s3.accessKeyId,
    secret_access_key: opts.credentialsFromEnv ? '${AWS_SECRET_ACCESS_KEY}' : s3.secretAccessKey,
  };
}

/** Standard AWS environment variables for this endpoint (for runPgbk's env). */
export function s3Env(s3: S3TestEndpoint): Record<string, string> {
  return {
    AWS_ACCESS_KEY_ID: s3.accessKeyId,
    AWS_SECRET_ACCESS_KEY: s3.secretAccessKey,
    AWS_REGION: s3.region,
    AWS_ENDPOINT_URL_S3: s3.endpoint,
  };
}
