// The policy file format, declared once: zod schema → type, strategy defaults and messages.

import {z} from 'zod';
import {validateDetailed as validateCron} from 'node-cron';
import {DURATION_SYNTAX, parseDuration} from './duration.js';
import {parseSize} from '../util/size.js';
import type {Strategy} from './types.js';

/** Objectives each strategy promises by default (the backup strategy matrix in CONTRACT.md). */
export const STRATEGY_OBJECTIVES: Record<Strategy, {rpo: string; rto: string}> = {
  dump: {rpo: '24h', rto: '4h'},
  pitr: {rpo: '5m', rto: '30m'},
  replica: {rpo: '30s', rto: '5m'},
  patroni: {rpo: '5s', rto: '1m'},
};

// A number in YAML (rpo: 300) is seconds, like a bare number in text.
const duration = z.preprocess((value) => (typeof value === 'number' ? String(value) : value), z.string().refine((value) => parseDuration(value) !== undefined, {
  message: `expected ${DURATION_SYNTAX}`,
}));

/** An IANA time zone name (Europe/Berlin, UTC) that this Node.js knows. */
export function isTimeZone(name: string): boolean {
  if (!/^[A-Za-z][A-Za-z0-9_+\-/]*$/.test(name)) return false;
  try {
    new Intl.DateTimeFormat('en-US', {timeZone: name});
    return true;
  } catch {
    return false;
  }
}

/** Cron nicknames node-cron runs (and so pgbk accepts); @reboot and @every are not among them. */
export const CRON_ALIASES = ['@yearly', '@annually', '@monthly', '@weekly', '@daily', '@midnight', '@hourly'];

// Five or six cron fields, or a nickname (@daily...), each checked by node-cron, which runs them in `pgbk schedule`.
const cron = z.string().superRefine((value, ctx) => {
  if (value.trim().startsWith('@')) {
    if (!CRON_ALIASES.includes(value.trim())) ctx.addIssue({code: 'custom', message: `expected a cron expression or one of ${CRON_ALIASES.join(', ')}`});
    return;
  }
  if (![5, 6].includes(value.trim().split(/\s+/).length)) {
    ctx.addIssue({code: 'custom', message: 'expected a cron expression with 5 fields (or 6, seconds first), or a nickname such as @daily'});
    return;
  }
  const problem = validateCron(value).errors[0];
  if (problem) ctx.addIssue({code: 'custom', message: `expected a cron expression: ${problem.message}`});
});

/** Bounds of backup.max_object_size. */
export const MIN_OBJECT_SIZE = 1024 ** 2;
export const MAX_OBJECT_SIZE = 64 * 1024 ** 3;

export const policySchema = z.strictObject({
  strategy: z.enum(['dump', 'pitr', 'replica', 'patroni']),
  postgres: z.strictObject({
    url: z.string().regex(/^postgres(ql)?:\/\//, 'expected a libpq URL such as postgresql://postgres@127.0.0.1:5432/orders'),
    data_dir: z.string().startsWith('/', 'expected an absolute path').optional(),
    bin_dir: z.string().startsWith('/', 'expected an absolute path').optional(),
  }),
  repository: z.strictObject({
    url: z.string().regex(/^(s3|file):\/\/./, 'expected s3://<bucket>/<prefix> or file:///<absolute path>'),
    endpoint: z.string().regex(/^https?:\/\//, 'expected an http:// or https:// URL').optional(),
    region: z.string().min(1).optional(),
    force_path_style: z.boolean().optional(),
    access_key_id: z.string().min(1).optional(),
    secret_access_key: z.string().min(1).optional(),
    encryption: z.strictObject({
      key: z.string().min(12, 'expected a passphrase of at least 12 characters (use a long random one)'),
      old_keys: z.array(z.string().min(1, 'expected a passphrase')).optional(),
    }).optional(),
    object_lock: z.strictObject({
      mode: z.enum(['governance', 'compliance']),
      days: z.number().int().min(1, 'expected a whole number of days, at least 1').max(36_500),
    }).optional(),
    storage_class: z.string().regex(/^[A-Z_]+$/, 'expected an S3 storage class such as STANDARD, STANDARD_IA or GLACIER_IR').optional(),
    sse: z.enum(['AES256', 'aws:kms']).optional(),
    kms_key_id: z.string().min(1).optional(),
  }),
  schedule: z.strictObject({
    backup: cron.optional(), expire: cron.optional(), drill: cron.optional(),
    /** Per job: a scheduled run still going after this long is stopped (SIGTERM, then SIGKILL). */
    timeout: z.strictObject({backup: duration.optional(), expire: duration.optional(), drill: duration.optional()}).optional(),
    /** The zone the cron times are read in (default UTC), so jobs do not shift with the host's daylight saving time. */
    timezone: z.string().refine(isTimeZone, {message: 'expected an IANA time zone name such as UTC or Europe/Berlin'}).optional(),
  }).optional(),
  retention: z.strictObject({
    backups: z.number().int().min(1).optional(),
    days: z.number().min(0).optional(),
  }).optional(),
  objectives: z.strictObject({rpo: duration.optional(), rto: duration.optional()}).optional(),
  backup: z.strictObject({
    checkpoint: z.enum(['fast', 'spread']).optional(),
    /** Deprecated: the gzip level before `compression:` existed (means codec gzip at this level). */
    compression_level: z.number().int().min(0).max(9).optional(),
    /** Each stored object of a base backup holds at most this many bytes; larger backups are stored in parts. */
    max_object_size: z.union([z.string(), z.number()]).superRefine((value, ctx) => {
      const bytes = parseSize(value);
      if (bytes === undefined) ctx.addIssue({code: 'custom', message: 'expected a size such as 1GiB, 64MiB or 500MB'});
      else if (bytes < MIN_OBJECT_SIZE || bytes > MAX_OBJECT_SIZE) ctx.addIssue({code: 'custom', message: 'expected a size from 1MiB to 64GiB (an S3 upload holds at most 10,000 parts of 8 MiB)'});
    }).optional(),
  }).optional(),
  compression: z.strictObject({
    codec: z.enum(['zstd', 'gzip', 'none']).optional(),
    level: z.number().int().optional(),
  }).optional(),
  dump: z.strictObject({tables: z.array(z.string().min(1)).optional()}).optional(),
  patroni: z.strictObject({
    rest_api: z.array(z.string().regex(/^https?:\/\/[^/]/, 'expected a REST API base URL such as http://10.0.0.11:8008')).min(1, 'list at least one member\'s REST API'),
    maximum_lag_on_failover: z.number().int().min(0).optional(),
    /** https:// REST APIs: the PEM CA their certificates are verified against (default: the system CAs). */
    ca_file: z.string().startsWith('/', 'expected an absolute path').optional(),
    /** https:// without certificate verification: only ever as this explicit opt-out. */
    insecure: z.boolean().optional(),
    /** HTTP basic auth (Patroni's restapi.authentication, or a proxy in front of the REST API). */
    username: z.string().min(1).optional(),
    password: z.string().min(1).optional(),
  }).superRefine((value, ctx) => {
    if ((value.username === undefined) !== (value.password === undefined)) {
      ctx.addIssue({code: 'custom', path: [value.username === undefined ? 'username' : 'password'],
        message: 'give patroni.username and patroni.password together (password typically ${PGBK_PATRONI_PASSWORD})'});
    }
    value.rest_api.forEach((url, index) => {
      if (/^https?:\/\/[^/]*@/.test(url)) {
        ctx.addIssue({code: 'custom', path: ['rest_api', index], message: 'no credentials in the URL: use patroni.username and patroni.password'});
      }
    });
  }).optional(),
  replica: z.strictObject({
    standby_url: z.string().regex(/^postgres(ql)?:\/\//, 'expected a libpq URL such as postgresql://postgres@standby:5432/postgres').optional(),
    primary_conninfo: z.string().min(1).optional(),
    max_lag: duration.optional(),
  }).optional(),
  wal_streaming: z.strictObject({
    enabled: z.boolean().optional(),
    slot: z.string().regex(/^[a-z0-9_]{1,63}$/, 'expected a replication slot name: 1 to 63 lower-case letters, digits or _'),
    flush_interval: duration.refine((value) => parseDuration(value)! > 0, {message: 'expected a duration of at least 1s'}).optional(),
    spool_dir: z.string().startsWith('/', 'expected an absolute path').optional(),
  }).optional(),
  drill: z.strictObject({
    checks: z.array(z.strictObject({
      name: z.string().min(1).optional(),
      sql: z.string().min(1),
      expect: z.union([z.string(), z.number(), z.boolean()]).optional(),
      min: z.number().optional(),
      max: z.number().optional(),
    }).refine((check) => check.expect === undefined || (check.min === undefined && check.max === undefined), {
      message: 'give either expect or min/max, not both',
    })).optional(),
    heartbeat: z.boolean().optional(),
    timeout: duration.optional(),
  }).optional(),
});

export type PolicyDocument = z.infer<typeof policySchema>;
