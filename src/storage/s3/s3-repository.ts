// S3 and S3-compatible (MinIO) repository through @aws-sdk/client-s3. The only module that imports the AWS SDK;
// it is loaded on demand so that commands using a local repository never pay for it.

import {PassThrough, Readable} from 'node:stream';
import {createHash} from 'node:crypto';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectsCommand,
  GetObjectLockConfigurationCommand,
  PutObjectRetentionCommand,
  ListMultipartUploadsCommand,
  HeadBucketCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  S3ServiceException,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import {Upload} from '@aws-sdk/lib-storage';
import {ObjectNotFoundError, PreconditionFailedError, RepositoryError} from '../../errors.js';
import {HashCounter} from '../../util/streams.js';
import {CAPABILITIES_KEY} from '../layout.js';
import type {ConditionalWriteSupport, IncompleteUpload, ListOptions, ObjectLockStatus, PutOptions, PutResult, Repository, StoredObject} from '../repository.js';
import {retentionOf, writeParams, type S3WriteSettings} from './write-options.js';

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
  /** Storage class, server-side encryption and Object Lock retention of every object written. */
  write?: S3WriteSettings;
}

/** Objects at least this big (or of unknown size) go up as multipart uploads of this part size. */
const PART_SIZE = 8 * 1024 * 1024;
const UPLOAD_QUEUE = 2;
/**
 * Conditional puts of streams go up as one PutObject up to this size (the header is then enforced by every
 * store that supports it); beyond, as a multipart upload whose completion carries the condition, which
 * only newer stores check (AWS since 2024).
 */
const CONDITIONAL_PART_SIZE = 32 * 1024 * 1024;

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
    if (options.contentAddressed && options.ifNoneMatch && options.ifMatch === undefined) {
      // Same key, same bytes: the header alone is enough (enforced: 412; ignored: the same bytes again).
      if (!Buffer.isBuffer(body)) return this.put(key, body, {...options, ifNoneMatch: undefined, contentAddressed: undefined});
      return this.putBuffer(key, body, options, {IfNoneMatch: '*'});
    }
    const conditional = options.ifNoneMatch !== undefined || options.ifMatch !== undefined;
    if (conditional && !Buffer.isBuffer(body) && !(await this.conditionalWrites().then(() => this.multipartConditional))) {
      // This store ignores conditions on CompleteMultipartUpload (radosgw 16 does): read up to one part; a body
      // that fits goes as one PutObject, where the condition holds; a bigger one is checked first (safe path).
      const {head, rest} = await readUpTo(body, CONDITIONAL_PART_SIZE);
      if (!rest) return this.put(key, head, options);
      await this.checkCondition(key, options);
      const joined = new PassThrough();
      joined.write(head);
      rest.on('error', (error) => joined.destroy(error));
      rest.pipe(joined);
      return this.put(key, joined, {...options, ifNoneMatch: undefined, ifMatch: undefined});
    }
    let ifMatch = options.ifMatch;
    if (conditional) {
      // A store that ignores the headers would silently overwrite: there, check first (not atomic; the
      // callers' documented safe path makes it enough: see README "Conditional writes").
      const support = await this.conditionalWrites();
      const enforced = options.ifNoneMatch ? support.createOnly : support.compareAndSwap;
      if (!enforced) await this.checkCondition(key, options);
      // radosgw 16 compares If-Match with the ETag without its quotes (a quoted one never matches).
      if (ifMatch !== undefined && this.etagForm === 'unquoted') ifMatch = unquote(ifMatch);
    }
    const condition = {IfNoneMatch: options.ifNoneMatch, IfMatch: ifMatch};
    if (Buffer.isBuffer(body)) return this.putBuffer(key, body, options, condition);
    // When the source fails, Upload aborts the multipart upload; if that abort fails too (s3rver answers
    // 405, or the endpoint is gone), Upload rejects with the abort's error. Report the source's error.
    let sourceError: unknown;
    try {
      const counter = new HashCounter(options.onProgress);
      const source = body.pipe(counter);
      body.on('error', (error) => {
        sourceError ??= error;
        counter.destroy(error);
      });
      const upload = new Upload({
        client: this.client,
        params: {Bucket: this.settings.bucket, Key: this.keyOf(key), Body: source, ...condition, ...writeParams(this.settings.write ?? {}, new Date())},
        partSize: conditional ? CONDITIONAL_PART_SIZE : PART_SIZE,
        queueSize: UPLOAD_QUEUE,
        leavePartsOnError: false,
      });
      const result = await upload.done();
      // radosgw answers CompleteMultipartUpload with an empty ETag; HeadObject has the right one.
      const version = (result as {ETag?: string}).ETag || (await this.stat(key))?.version;
      if (!version) throw new RepositoryError(`${key} in ${this.description} has no ETag after upload`);
      await this.retain(key, (result as {VersionId?: string}).VersionId);
      return {key, sizeBytes: counter.bytes, sha256: counter.digest(), modified: new Date(), version};
    } catch (error) {
      if (isPreconditionFailed(sourceError ?? error)) {
        throw new PreconditionFailedError(key, options.ifNoneMatch ? 'if-none-match' : 'if-match', {cause: error});
      }
      throw this.wrap(sourceError ?? error, `cannot write ${key}`);
    }
  }

  /** One PutObject of a buffer, with the given condition headers. */
  private async putBuffer(key: string, body: Buffer, options: PutOptions, condition: {IfNoneMatch?: string; IfMatch?: string}): Promise<PutResult> {
    const md5 = createHash('md5').update(body).digest('hex');
    let etag: string | undefined;
    try {
      try {
        const response = await this.client.send(new PutObjectCommand({
          Bucket: this.settings.bucket, Key: this.keyOf(key), Body: body, ContentLength: body.length, ...condition,
          ...writeParams(this.settings.write ?? {}, new Date(), Buffer.from(md5, 'hex').toString('base64')),
        }));
        etag = response.ETag;
      } catch (error) {
        // A retried PUT whose first attempt succeeded (the answer was lost) fails its own condition: the
        // object stored is then ours, byte for byte (a single PUT's ETag is the MD5 of the body).
        // Content-addressed: an existing object is the same content, whoever wrote it; the caller confirms it.
        if (!isPreconditionFailed(error) || options.contentAddressed) throw error;
        const head = await this.stat(key);
        if (head?.version === undefined || unquote(head.version) !== md5) throw error;
        etag = head.version;
      }
    } catch (error) {
      if (isPreconditionFailed(error)) {
        throw new PreconditionFailedError(key, options.ifNoneMatch ? 'if-none-match' : 'if-match', {cause: error});
      }
      throw this.wrap(error, `cannot write ${key}`);
    }
    options.onProgress?.(body.length);
    return {
      key, sizeBytes: body.length, sha256: createHash('sha256').update(body).digest('hex'), modified: new Date(),
      version: etag || `"${md5}"`,
    };
  }

  /**
   * Object Lock after a streamed upload: a multipart upload's retention is set once it is complete (radosgw ignores
   * it on CreateMultipartUpload; a small stream went up as one PutObject without Content-MD5, which cannot carry it).
   */
  private async retain(key: string, versionId: string | undefined): Promise<void> {
    const lock = this.settings.write?.objectLock;
    if (!lock) return;
    try {
      await this.client.send(new PutObjectRetentionCommand({
        Bucket: this.settings.bucket, Key: this.keyOf(key), VersionId: versionId, Retention: retentionOf(lock, new Date()),
      }));
    } catch (error) {
      throw this.wrap(error, `cannot set the Object Lock retention of ${key}`);
    }
  }

  async objectLock(): Promise<ObjectLockStatus> {
    try {
      const answer = await this.client.send(new GetObjectLockConfigurationCommand({Bucket: this.settings.bucket}));
      const rule = answer.ObjectLockConfiguration?.Rule?.DefaultRetention;
      return {
        enabled: answer.ObjectLockConfiguration?.ObjectLockEnabled === 'Enabled',
        ...(rule ? {defaultRetention: `${rule.Mode ?? '?'} ${rule.Days !== undefined ? `${rule.Days} days` : `${rule.Years} years`}`} : {}),
      };
    } catch (error) {
      const code = (error as {name?: string; Code?: string}).name ?? '';
      if (/ObjectLockConfigurationNotFound/i.test(code)) return {enabled: false};
      throw this.wrap(error, `cannot read the Object Lock configuration of bucket ${this.settings.bucket}`);
    }
  }

  /** The safe path where the store ignores conditional headers: look first (a HEAD), then write. */
  private async checkCondition(key: string, options: PutOptions): Promise<void> {
    const current = await this.stat(key);
    if (options.ifNoneMatch && current) throw new PreconditionFailedError(key, 'if-none-match');
    if (options.ifMatch !== undefined && current?.version !== options.ifMatch) throw new PreconditionFailedError(key, 'if-match');
  }

  async getVersioned(key: string): Promise<{body: Buffer; version: string}> {
    try {
      const response = await this.client.send(new GetObjectCommand({Bucket: this.settings.bucket, Key: this.keyOf(key)}));
      const body = Buffer.from(await response.Body!.transformToByteArray());
      return {body, version: response.ETag ?? ''};
    } catch (error) {
      if (isNotFound(error)) throw new ObjectNotFoundError(key, {cause: error});
      throw this.wrap(error, `cannot read ${key}`);
    }
  }

  private support?: Promise<ConditionalWriteSupport>;
  /** How this store wants the ETag in If-Match (learned with the support). */
  private etagForm: 'quoted' | 'unquoted' = 'quoted';
  /** The store enforces If-None-Match on CompleteMultipartUpload too (learned with the support). */
  private multipartConditional = false;

  conditionalWrites(): Promise<ConditionalWriteSupport> {
    this.support ??= this.learnConditionalWrites();
    this.support.catch(() => {
      this.support = undefined; // an outage: ask again next time
    });
    return this.support;
  }

  /** capabilities.json when recorded; else a probe on a key of its own, then recorded. */
  private async learnConditionalWrites(): Promise<ConditionalWriteSupport> {
    try {
      const {body} = await this.getVersioned(CAPABILITIES_KEY);
      const record = JSON.parse(body.toString('utf8')) as {conditionalWrites?: {createOnly?: unknown; compareAndSwap?: unknown; ifMatchEtag?: unknown}};
      const cw = record.conditionalWrites;
      if (typeof cw?.createOnly === 'boolean' && typeof cw.compareAndSwap === 'boolean') {
        this.etagForm = cw.ifMatchEtag === 'unquoted' ? 'unquoted' : 'quoted';
        this.multipartConditional = (cw as {multipart?: unknown}).multipart === true;
        return {createOnly: cw.createOnly, compareAndSwap: cw.compareAndSwap, source: 'record'};
      }
    } catch (error) {
      if (!(error instanceof ObjectNotFoundError) && !(error instanceof SyntaxError)) throw error;
    }
    const probed = await this.probeConditionalWrites();
    const record = {
      formatVersion: 1,
      conditionalWrites: {
        createOnly: probed.createOnly, compareAndSwap: probed.compareAndSwap, ifMatchEtag: this.etagForm, multipart: this.multipartConditional,
      },
      probedAt: new Date().toISOString(),
      note: 'written by pgbk after probing the store; remove it to probe again',
    };
    await this.client.send(new PutObjectCommand({
      Bucket: this.settings.bucket, Key: this.keyOf(CAPABILITIES_KEY), Body: `${JSON.stringify(record, null, 2)}\n`,
    })).catch((error: unknown) => {
      throw this.wrap(error, `cannot write ${CAPABILITIES_KEY}`);
    });
    return probed;
  }

  /**
   * Creates a probe key, then: If-None-Match: * on it must fail (412); If-Match with a wrong ETag must fail;
   * If-Match with the right one must succeed. A store ignoring the headers overwrites the probe, not data.
   */
  private async probeConditionalWrites(): Promise<ConditionalWriteSupport> {
    const probeKey = this.keyOf(`${CAPABILITIES_KEY}.probe-${process.pid}-${createHash('sha1').update(String(Math.random())).digest('hex').slice(0, 8)}`);
    const send = async (body: string, condition: {IfNoneMatch?: string; IfMatch?: string}): Promise<'ok' | 'refused' | string> => {
      try {
        const response = await this.client.send(new PutObjectCommand({Bucket: this.settings.bucket, Key: probeKey, Body: body, ...condition}));
        return response.ETag ?? 'ok';
      } catch (error) {
        if (isPreconditionFailed(error)) return 'refused';
        const status = (error as {$metadata?: {httpStatusCode?: number}}).$metadata?.httpStatusCode;
        if (status === 501 || status === 400) return 'refused-unsupported';
        throw this.wrap(error, 'cannot probe conditional writes');
      }
    };
    try {
      const first = await send('probe 1', {IfNoneMatch: '*'});
      if (first.startsWith('refused')) return {createOnly: false, compareAndSwap: false, source: 'probe'};
      const second = await send('probe 2', {IfNoneMatch: '*'});
      const createOnly = second === 'refused';
      const etag = (await this.stat(unprefixed(probeKey, this.settings.prefix)))?.version;
      const wrong = await send('probe 3', {IfMatch: '"00000000000000000000000000000000"'});
      let right = etag ? await send('probe 4', {IfMatch: etag}) : 'refused';
      if (etag && right === 'refused') {
        // radosgw 16 matches only the bare ETag; AWS and MinIO take the quoted one.
        right = await send('probe 5', {IfMatch: unquote(etag)});
        if (!right.startsWith('refused')) this.etagForm = 'unquoted';
      }
      const compareAndSwap = wrong === 'refused' && !right.startsWith('refused');
      if (createOnly) this.multipartConditional = await this.probeMultipartCreateOnly(probeKey);
      return {createOnly, compareAndSwap, source: 'probe'};
    } finally {
      await this.client.send(new DeleteObjectsCommand({Bucket: this.settings.bucket, Delete: {Objects: [{Key: probeKey}], Quiet: true}}))
        .catch(() => undefined);
    }
  }

  /** A one-part multipart upload onto the existing probe key, completed with If-None-Match: * — refused? */
  private async probeMultipartCreateOnly(probeKey: string): Promise<boolean> {
    const bucket = this.settings.bucket;
    let uploadId: string | undefined;
    try {
      uploadId = (await this.client.send(new CreateMultipartUploadCommand({Bucket: bucket, Key: probeKey}))).UploadId;
      const part = await this.client.send(new UploadPartCommand({Bucket: bucket, Key: probeKey, UploadId: uploadId, PartNumber: 1, Body: 'probe'}));
      await this.client.send(new CompleteMultipartUploadCommand({
        Bucket: bucket, Key: probeKey, UploadId: uploadId, IfNoneMatch: '*', MultipartUpload: {Parts: [{PartNumber: 1, ETag: part.ETag}]},
      }));
      uploadId = undefined;
      return false;
    } catch (error) {
      if (isPreconditionFailed(error)) return true;
      throw this.wrap(error, 'cannot probe conditional multipart uploads');
    } finally {
      if (uploadId) {
        await this.client.send(new AbortMultipartUploadCommand({Bucket: bucket, Key: probeKey, UploadId: uploadId})).catch(() => undefined);
      }
    }
  }

  async cleanUpIncomplete(olderThan: Date): Promise<IncompleteUpload[]> {
    const removed: IncompleteUpload[] = [];
    let keyMarker: string | undefined;
    let uploadIdMarker: string | undefined;
    for (;;) {
      let page;
      try {
        page = await this.client.send(new ListMultipartUploadsCommand({
          Bucket: this.settings.bucket, Prefix: this.settings.prefix || undefined, KeyMarker: keyMarker, UploadIdMarker: uploadIdMarker,
        }));
      } catch (error) {
        // s3rver has no ListMultipartUploads (501): it cannot list, so nothing can be aborted either.
        if ((error as {$metadata?: {httpStatusCode?: number}}).$metadata?.httpStatusCode === 501) return removed;
        throw this.wrap(error, 'cannot list incomplete multipart uploads');
      }
      for (const upload of page.Uploads ?? []) {
        if (!upload.Key || !upload.UploadId || !upload.Initiated || upload.Initiated >= olderThan) continue;
        try {
          await this.client.send(new AbortMultipartUploadCommand({Bucket: this.settings.bucket, Key: upload.Key, UploadId: upload.UploadId}));
        } catch (error) {
          if (!isNotFound(error)) throw this.wrap(error, `cannot abort the multipart upload of ${upload.Key}`);
        }
        removed.push({key: unprefixed(upload.Key, this.settings.prefix), startedAt: upload.Initiated});
      }
      if (!page.IsTruncated) break;
      keyMarker = page.NextKeyMarker;
      uploadIdMarker = page.NextUploadIdMarker;
    }
    return removed;
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
      return {key, sizeBytes: head.ContentLength ?? 0, modified: head.LastModified, version: head.ETag};
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
    if (error instanceof RepositoryError || error instanceof ObjectNotFoundError || error instanceof PreconditionFailedError) return error;
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

function isPreconditionFailed(error: unknown): boolean {
  const err = error as {name?: string; $metadata?: {httpStatusCode?: number}};
  // 409 ConditionalRequestConflict: AWS's answer to a conditional write racing another on the same key.
  return err?.name === 'PreconditionFailed' || err?.$metadata?.httpStatusCode === 412 || err?.name === 'ConditionalRequestConflict';
}

/** Reads `body` until `limit` bytes or its end: `rest` (the same stream, to read on) when more is coming. */
async function readUpTo(body: Readable, limit: number): Promise<{head: Buffer; rest?: Readable}> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body.iterator({destroyOnReturn: false})) {
    const buffer = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as Uint8Array);
    chunks.push(buffer);
    size += buffer.length;
    if (size > limit) return {head: Buffer.concat(chunks), rest: body};
  }
  return {head: Buffer.concat(chunks)};
}

function unquote(etag: string): string {
  return etag.replace(/^"|"$/g, '');
}

function unprefixed(key: string, prefix: string): string {
  return key.startsWith(prefix) ? key.slice(prefix.length) : key;
}

function isNotFound(error: unknown): boolean {
  const err = error as {name?: string; $metadata?: {httpStatusCode?: number}};
  return err?.name === 'NoSuchKey' || err?.name === 'NotFound' || err?.$metadata?.httpStatusCode === 404;
}
