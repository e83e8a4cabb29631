// Locates a policy file, reads it, expands ${ENV}, validates it and returns a frozen Policy.

import {assertWritable, defaultCompression, LEVELS, type Compression} from '../util/codec.js';
import {parseSize} from '../util/size.js';
import {readFile, stat} from 'node:fs/promises';
import {join} from 'node:path';
import {homedir} from 'node:os';
import {isMap, isScalar, isSeq, LineCounter, parseDocument, type Document, type Node as YamlNode} from 'yaml';
import {PolicyError} from '../errors.js';
import {parseDuration} from './duration.js';
import {policySchema, STRATEGY_OBJECTIVES, type PolicyDocument} from './schema.js';
import type {Policy, WalStreamingConfig} from './types.js';
import {assertPolicyNotWritableByOthers, policyNameOf, resolvePolicyPath, type PolicyLookup} from './locate.js';

export {policiesDirectory, resolvePolicyPath, type PolicyLookup} from './locate.js';

export async function loadPolicy(lookup: PolicyLookup): Promise<Policy> {
  const file = resolvePolicyPath(lookup);
  assertPolicyNotWritableByOthers(file);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new PolicyError(
      `cannot read policy file ${file}: ${code === 'ENOENT' ? 'no such file' : code}`,
      code === 'ENOENT' ? 'give the path of an existing policy file, or a name in the policies directory (--policies, else PGBK_POLICIES, else /etc/pgbk/policies)' : undefined,
    );
  }
  const policy = parsePolicy(text, file, lookup.env);
  const mode = (await stat(file)).mode;
  if ((mode & 0o004) !== 0 && (policy.repository.secretAccessKey || policy.repository.encryption || policy.patroni?.password || [policy.postgres.url, policy.replica?.standbyUrl ?? ''].some((url) => /:[^@/]*@/.test(url)) || /password\s*=/i.test(policy.replica?.primaryConninfo ?? ''))) {
    process.stderr.write(`pgbk: warning: ${file} holds a secret and is readable by every user; chmod o-r it\n`);
  }
  return policy;
}

/** Parses and validates policy text; `file` names it in messages. */
export function parsePolicy(text: string, file: string, env: NodeJS.ProcessEnv): Policy {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, {lineCounter, prettyErrors: false, uniqueKeys: true});
  if (doc.errors.length > 0) {
    const first = doc.errors[0]!;
    const pos = first.linePos?.[0] ?? lineCounter.linePos(first.pos[0]);
    throw new PolicyError(`${file}${pos ? `:${pos.line}:${pos.col}` : ''}: YAML syntax error: ${first.message.split('\n')[0]}`);
  }
  expandEnv(doc, file, env, lineCounter);
  const data = doc.toJS() ?? {};
  const parsed = policySchema.safeParse(data);
  if (!parsed.success) {
    // An unknown key first: "repositories:" should be reported as unknown, not as a missing "repository".
    const issue = parsed.error.issues.find((candidate) => candidate.code === 'unrecognized_keys') ?? parsed.error.issues[0]!;
    let path = issue.path.map(String);
    let message = issue.message;
    if (issue.code === 'unrecognized_keys') {
      path = [...path, issue.keys[0]!];
      message = 'unknown key';
    }
    const line = lineOf(doc, path, lineCounter);
    throw new PolicyError(`${file}${line ? `:${line}` : ''}: ${path.join('.') || '(top level)'}: ${message}`);
  }
  const value = parsed.data;
  const s3Only = (['object_lock', 'storage_class', 'sse', 'kms_key_id'] as const).find((key) => value.repository[key] !== undefined);
  if (s3Only && value.repository.url.startsWith('file://')) {
    throw new PolicyError(`${file}${lineAt(doc, ['repository', s3Only], lineCounter)}: repository.${s3Only}: only an s3:// repository has it (repository.url is ${value.repository.url})`,
      s3Only === 'object_lock' ? 'immutable backups need an S3 bucket with Object Lock enabled; remove object_lock for a local repository' : undefined);
  }
  if (value.repository.kms_key_id !== undefined && value.repository.sse !== 'aws:kms') {
    throw new PolicyError(`${file}${lineAt(doc, ['repository', 'kms_key_id'], lineCounter)}: repository.kms_key_id: needs sse: aws:kms`);
  }
  const defaults = STRATEGY_OBJECTIVES[value.strategy];
  const name = policyNameOf(file);
  const policy: Policy = {
    name,
    file,
    strategy: value.strategy,
    postgres: {url: value.postgres.url, dataDir: value.postgres.data_dir, binDir: value.postgres.bin_dir},
    repository: {
      url: value.repository.url,
      endpoint: value.repository.endpoint,
      region: value.repository.region,
      forcePathStyle: value.repository.force_path_style,
      accessKeyId: value.repository.access_key_id,
      secretAccessKey: value.repository.secret_access_key,
      ...(value.repository.encryption ? {encryption: {key: value.repository.encryption.key, oldKeys: value.repository.encryption.old_keys ?? []}} : {}),
      ...(value.repository.object_lock ? {objectLock: {...value.repository.object_lock}} : {}),
      ...(value.repository.storage_class ? {storageClass: value.repository.storage_class} : {}),
      ...(value.repository.sse ? {sse: value.repository.sse} : {}),
      ...(value.repository.kms_key_id ? {kmsKeyId: value.repository.kms_key_id} : {}),
    },
    schedule: {backup: value.schedule?.backup, expire: value.schedule?.expire, drill: value.schedule?.drill, timezone: value.schedule?.timezone ?? 'UTC'},
    // Defaults: a backup of several TB at ~100 MB/s fits in 12 h; expire is listing and deleting; a drill gets
    // its own restore timeout plus time to set up and tear down.
    jobTimeoutSeconds: {
      backup: parseDuration(value.schedule?.timeout?.backup ?? '12h')!,
      expire: parseDuration(value.schedule?.timeout?.expire ?? '2h')!,
      drill: value.schedule?.timeout?.drill !== undefined ? parseDuration(value.schedule.timeout.drill)!
        : parseDuration(value.drill?.timeout ?? '1h')! + 1800,
    },
    retention: {...value.retention},
    objectives: {
      rpoSeconds: parseDuration(value.objectives?.rpo ?? defaults.rpo)!,
      rtoSeconds: parseDuration(value.objectives?.rto ?? defaults.rto)!,
    },
    backup: {checkpoint: value.backup?.checkpoint ?? 'fast', maxObjectBytes: parseSize(value.backup?.max_object_size ?? '1GiB')!},
    compression: compressionOf(value, file),
    dump: {tables: value.dump?.tables ?? []},
    ...(value.patroni ? {patroni: {
      restApi: value.patroni.rest_api.map((url) => url.replace(/\/+$/, '')),
      maximumLagOnFailover: value.patroni.maximum_lag_on_failover ?? 1_048_576,
      insecure: value.patroni.insecure ?? false,
      ...(value.patroni.ca_file !== undefined ? {caFile: value.patroni.ca_file} : {}),
      ...(value.patroni.username !== undefined ? {username: value.patroni.username, password: value.patroni.password} : {}),
    }} : {}),
    ...(value.replica ? {replica: {
      standbyUrl: value.replica.standby_url,
      primaryConninfo: value.replica.primary_conninfo,
      maxLagSeconds: value.replica.max_lag === undefined ? undefined : parseDuration(value.replica.max_lag)!,
    }} : {}),
    ...(value.wal_streaming ? {walStreaming: walStreamingOf(value, file, name)} : {}),
    drill: {
      checks: (value.drill?.checks ?? []).map((check, index) => ({
        name: check.name ?? `check ${index + 1}`,
        sql: check.sql,
        ...(check.expect !== undefined ? {expect: String(check.expect)} : {}),
        ...(check.min !== undefined ? {min: check.min} : {}),
        ...(check.max !== undefined ? {max: check.max} : {}),
      })),
      heartbeat: value.drill?.heartbeat ?? false,
      timeoutSeconds: parseDuration(value.drill?.timeout ?? '1h')!,
    },
  };
  return deepFreeze(policy);
}

/** Replaces ${NAME} in every string value; an unset variable is an error naming it and where. */
function expandEnv(doc: Document, file: string, env: NodeJS.ProcessEnv, lineCounter: LineCounter): void {
  const visit = (node: unknown, path: string[]): void => {
    if (isMap(node)) {
      for (const pair of node.items) visit(pair.value, [...path, String(isScalar(pair.key) ? pair.key.value : pair.key)]);
    } else if (isSeq(node)) {
      node.items.forEach((item, index) => visit(item, [...path, String(index)]));
    } else if (isScalar(node) && typeof node.value === 'string') {
      node.value = node.value.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (_whole, name: string) => {
        const value = env[name];
        if (value === undefined) {
          const line = node.range ? lineCounter.linePos(node.range[0]).line : undefined;
          throw new PolicyError(
            `${file}${line ? `:${line}` : ''}: ${path.join('.')}: environment variable ${name} is not set`,
            `export ${name} in the environment pgbk runs in (for archive_command: the PostgreSQL server's environment)`,
          );
        }
        return value;
      });
    }
  };
  visit(doc.contents, []);
}

function lineOf(doc: Document, path: string[], lineCounter: LineCounter): number | undefined {
  for (let depth = path.length; depth > 0; depth--) {
    const sub = path.slice(0, depth);
    const parent = sub.length > 1 ? doc.getIn(sub.slice(0, -1), true) : doc.contents;
    if (isMap(parent)) {
      const pair = parent.items.find((item) => isScalar(item.key) && String(item.key.value) === sub[sub.length - 1]);
      const node = (pair?.key ?? undefined) as YamlNode | undefined;
      if (node?.range) return lineCounter.linePos(node.range[0]).line;
    }
  }
  return undefined;
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object') {
    for (const inner of Object.values(value)) deepFreeze(inner);
    Object.freeze(value);
  }
  return value;
}

/** `compression: {codec, level}`; the deprecated `backup.compression_level` alone means gzip at that level. */
function compressionOf(value: PolicyDocument, file: string): Compression {
  const section = value.compression;
  if (!section) {
    if (value.backup?.compression_level !== undefined) return {codec: 'gzip', level: Math.max(1, value.backup.compression_level)};
    return defaultCompression();
  }
  const codec = section.codec ?? defaultCompression().codec;
  assertWritable(codec, `${file}: compression.codec`);
  const range = LEVELS[codec];
  const level = section.level ?? range.default;
  if (level < range.min || level > range.max) {
    throw new PolicyError(`${file}: compression.level: ${level} is out of range for ${codec} (${range.min}..${range.max})`);
  }
  return {codec, level};
}

function lineAt(doc: Document, path: string[], lineCounter: LineCounter): string {
  const line = lineOf(doc, path, lineCounter);
  return line ? `:${line}` : '';
}

/** wal_streaming: only for the strategies that archive WAL. */
function walStreamingOf(value: PolicyDocument, file: string, name: string): WalStreamingConfig {
  const section = value.wal_streaming!;
  const enabled = section.enabled ?? true;
  if (enabled && value.strategy === 'dump') {
    throw new PolicyError(`${file}: wal_streaming: the dump strategy archives no WAL; remove the section or set enabled: false`);
  }
  return {
    enabled, slot: section.slot, flushIntervalSeconds: parseDuration(section.flush_interval ?? '1s')!,
    spoolDir: section.spool_dir ?? join(homedir(), '.pgbk', 'wal-receive', name),
  };
}
