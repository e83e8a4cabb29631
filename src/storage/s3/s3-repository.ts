// S3 and S3-compatible (MinIO) repository through @aws-sdk/client-s3. The only module that imports the AWS SDK;
// it is loaded on demand so that commands using a local repository never pay for it.

import {Readable} from 'node:stream';
import {createHash} from 'node:crypto';
import {
  DeleteObjectsCommand,
  HeadBucketCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  S3ServiceException,
} from '@aws-sdk/client-s3';
import {Upload} from '@aws-sdk/lib-storage';
import {ObjectNotFoundError, RepositoryError} from '../../errors.js';
import {HashCounter} from '../../util/streams.js';
import type {ListOptions, PutOptions, PutResult, Repository, StoredObject} from '../repository.js';

export interface S3Settings {
  bucket: string;
  /** Key prefix inside the bucket, '' or ending in '/'. */
  prefix: string;
  endpoint?: string;
  region: string;
  forcePathStyle: boolean;
  accessKeyId?: string;
  secretAccessKey?: string;
  /** Attempts per request, with exponential backoff, on 429/503/5xx and dropped connections. */
  maxAttempts?: number;
}

/** Objects at least this big (or of unknown size) go up as multipart uploads of this part size. */
const PART_SIZE = 8 * 1024 * 1024;
const UPLOAD_QUEUE = 2;

export class S3Repository implements Repository {
  readonly description: string;
  private readonly client: S3Client;

  constructor(private readonly settings: S3Settings) {
    this.description = `s3://${settings.bucket}/${settings.prefix}${settings.endpoint ? ` at ${settings.endpoint}` : ''}`;
    this.client = new S3Client({
      region: settings.region,
      endpoint: settings.endpoint,
      forcePathStyle: settings.forcePathStyle,
      credentials: settings.accessKeyId && settings.secretAccessKey
        ? {accessKeyId: settings.accessKeyId, secretAccessKey: settings.secretAccessKey}
        : undefined,
      maxAttempts: settings.maxAttempts ?? 6,
      retryMode: 'standard',
      // Only what S3 requires: S3-compatible services differ in their support of the newer flexible checksums;
      // pgbk checks every object against its own SHA-256 instead.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      requestHandler: {connectionTimeout: 10_000, requestTimeout: 120_000},
    });
  }

  private keyOf(key: string): string {
    return `${this.settings.prefix}${key}`;
  }

  async put(key: string, body: Readable | Buffer, options: PutOptions = {}): Promise<PutResult> {
    // When the source fails, Upload aborts the multipart upload; if that abort fails too (s3rver answers
    // 405, or the endpoint is gone), Upload rejects with the abort's error. Report the source's error.
    let sourceError: unknown;
    try {
      if (Buffer.isBuffer(body)) {
        await this.client.send(new PutObjectCommand({
          Bucket: this.settings.bucket, Key: this.keyOf(key), Body: body, ContentLength: body.length,
        }));
        options.onProgress?.(body.length);
        return {key, sizeBytes: body.length, sha256: createHash('sha256').update(body).digest('hex'), modified: new Date()};
      }
      const counter = new HashCounter(options.onProgress);
      const source = body.pipe(counter);
      body.on('error', (error) => {
        sourceError ??= error;
        counter.destroy(error);
      });
      const upload = new Upload({
        client: this.client,
        params: {Bucket: this.settings.bucket, Key: this.keyOf(key), Body: source},
        partSize: PART_SIZE,
        queueSize: UPLOAD_QUEUE,
        leavePartsOnError: false,
      });
      await upload.done();
      return {key, sizeBytes: counter.bytes, sha256: counter.digest(), modified: new Date()};
    } catch (error) {
      throw this.wrap(sourceError ?? error, `cannot write ${key}`);
    }
  }

  async get(key: string): Promise<Readable> {
    try {
      const response = await this.client.send(new GetObjectCommand({Bucket: this.settings.bucket, Key: this.keyOf(key)}));
      return response.Body as Readable;
    } catch (error) {
      if (isNotFound(error)) throw new ObjectNotFoundError(key, {cause: error});
      throw this.wrap(error, `cannot read ${key}`);
    }
  }

  async stat(key: string): Promise<StoredObject | undefined> {
    try {
      const head = await this.client.send(new HeadObjectCommand({Bucket: this.settings.bucket, Key: this.keyOf(key)}));
      return {key, sizeBytes: head.ContentLength ?? 0, modified: head.LastModified};
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw this.wrap(error, `cannot stat ${key}`);
    }
  }

  async *list(prefix: string, options: ListOptions = {}): AsyncIterable<StoredObject> {
    let token: string | undefined;
    do {
      let page;
      try {
        page = await this.client.send(new ListObjectsV2Command({
          Bucket: this.settings.bucket, Prefix: this.keyOf(prefix), ContinuationToken: token,
          StartAfter: !token && options.startAfter ? this.keyOf(options.startAfter) : undefined,
        }));
      } catch (error) {
        throw this.wrap(error, `cannot list ${prefix}`);
      }
      for (const object of page.Contents ?? []) {
        if (!object.Key) continue;
        yield {key: object.Key.slice(this.settings.prefix.length), sizeBytes: object.Size ?? 0, modified: object.LastModified};
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
  }

  async remove(keys: Iterable<string>): Promise<void> {
    let batch: string[] = [];
    const flush = async () => {
      if (batch.length === 0) return;
      try {
        const result = await this.client.send(new DeleteObjectsCommand({
          Bucket: this.settings.bucket,
          Delete: {Objects: batch.map((key) => ({Key: this.keyOf(key)})), Quiet: true},
        }));
        const failed = (result.Errors ?? []).filter((entry) => entry.Code !== 'NoSuchKey');
        if (failed.length > 0) {
          throw new RepositoryError(`cannot remove ${failed.length} object(s) from ${this.description}: ${failed[0]?.Key} ${failed[0]?.Code}`);
        }
      } catch (error) {
        throw this.wrap(error, 'cannot remove objects');
      }
      batch = [];
    };
    for (const key of keys) {
      batch.push(key);
      if (batch.length === 1000) await flush();
    }
    await flush();
  }

  async create(): Promise<void> {
    try {
      await this.client.send(new HeadBucketCommand({Bucket: this.settings.bucket}));
    } catch (error) {
      throw this.wrap(error, `cannot use bucket ${this.settings.bucket}`);
    }
  }

  async serverTime(): Promise<Date | undefined> {
    let date: string | undefined;
    const command = new ListObjectsV2Command({Bucket: this.settings.bucket, Prefix: this.keyOf(''), MaxKeys: 1});
    // The response's Date header: the SDK does not surface it on the output, a middleware reads it off the raw response.
    command.middlewareStack.add((next) => async (args) => {
      const result = await next(args);
      const headers = (result.response as {headers?: Record<string, string>}).headers ?? {};
      date = headers.date ?? headers.Date;
      return result;
    }, {step: 'deserialize', name: 'pgbkServerDate'});
    try {
      await this.client.send(command);
    } catch (error) {
      throw this.wrap(error, 'cannot read the server time');
    }
    const parsed = date ? new Date(date) : undefined;
    return parsed && !Number.isNaN(parsed.getTime()) ? parsed : undefined;
  }

  async close(): Promise<void> {
    this.client.destroy();
  }

  private wrap(error: unknown, message: string): Error {
    if (error instanceof RepositoryError || error instanceof ObjectNotFoundError) return error;
    const status = error instanceof S3ServiceException ? error.$metadata.httpStatusCode : undefined;
    const name = (error as Error)?.name ?? 'Error';
    const detail = status ? `${name} (HTTP ${status})` : `${name}: ${(error as Error)?.message ?? String(error)}`;
    const hint = status === 403 || name === 'CredentialsProviderError'
      ? 'check the repository credentials (access_key_id/secret_access_key or the AWS credential chain) and bucket policy'
      : status === 404 || name === 'NoSuchBucket'
        ? `check that the bucket "${this.settings.bucket}" exists`
        : 'check that the S3 endpoint is reachable';
    return new RepositoryError(`${message} in ${this.description}: ${detail}`, hint, {cause: error});
  }
}

function isNotFound(error: unknown): boolean {
  const err = error as {name?: string; $metadata?: {httpStatusCode?: number}};
  return err?.name === 'NoSuchKey' || err?.name === 'NotFound' || err?.$metadata?.httpStatusCode === 404;
}
