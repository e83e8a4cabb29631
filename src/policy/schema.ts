// The policy file format, declared once: zod schema → type, strategy defaults and messages.

import {z} from 'zod';
import {validateDetailed as validateCron} from 'node-cron';
import {parseDuration} from './duration.js';
import {parseSize} from '../util/size.js';
import type {Strategy} from './types.js';

/** Objectives each strategy promises by default (the backup strategy matrix in CONTRACT.md). */
export const STRATEGY_OBJECTIVES: Record<Strategy, {rpo: string; rto: string}> = {
  dump: {rpo: '24h', rto: '4h'},
  pitr: {rpo: '5m', rto: '30m'},
  replica: {rpo: '30s', rto: '5m'},
  patroni: {rpo: '5s', rto: '1m'},
};

const duration = z.string().refine((value) => parseDuration(value) !== undefined, {
  message: 'expected a duration such as 30s, 5m, 1h or 2d',
});

// Five or six cron fields (no @nicknames), each checked by node-cron, which runs them in `pgbk schedule`.
const cron = z.string().superRefine((value, ctx) => {
  if (![5, 6].includes(value.trim().split(/\s+/).length)) {
    ctx.addIssue({code: 'custom', message: 'expected a cron expression with 5 fields (or 6, seconds first)'});
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
  }),
  schedule: z.strictObject({
    backup: cron.optional(), expire: cron.optional(), drill: cron.optional(),
    /** Per job: a scheduled run still going after this long is stopped (SIGTERM, then SIGKILL). */
    timeout: z.strictObject({backup: duration.optional(), expire: duration.optional(), drill: duration.optional()}).optional(),
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
  }).optional(),
  replica: z.strictObject({
    standby_url: z.string().regex(/^postgres(ql)?:\/\//, 'expected a libpq URL such as postgresql://postgres@standby:5432/postgres').optional(),
    primary_conninfo: z.string().min(1).optional(),
    max_lag: duration.optional(),
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
