// The validated, normalized policy every command works from.

import type {Compression} from '../util/codec.js';

export type Strategy = 'dump' | 'pitr' | 'replica' | 'patroni';

export interface RepositoryConfig {
  url: string;
  endpoint?: string;
  region?: string;
  forcePathStyle?: boolean;
  accessKeyId?: string;
  secretAccessKey?: string;
  /** Client-side encryption (repository.encryption): passphrases, never printed. */
  encryption?: {key: string; oldKeys: string[]};
  /** S3 Object Lock retention of every object written (repository.object_lock). */
  objectLock?: {mode: 'governance' | 'compliance'; days: number};
  /** S3 storage class of every object written (repository.storage_class). */
  storageClass?: string;
  /** S3 server-side encryption (repository.sse, kms_key_id). */
  sse?: 'AES256' | 'aws:kms';
  kmsKeyId?: string;
}

export interface PostgresConfig {
  /** libpq URL; may hold a password (never printed: see redactUrl). */
  url: string;
  dataDir?: string;
  binDir?: string;
}

export interface Policy {
  /** The file name without .yaml. */
  name: string;
  /** Absolute path of the policy file (restore_command refers to it). */
  file: string;
  strategy: Strategy;
  postgres: PostgresConfig;
  repository: RepositoryConfig;
  /** Cron expressions (or @daily...) per job, read in `timezone` (an IANA name; default UTC). */
  schedule: {backup?: string; expire?: string; drill?: string; timezone: string};
  /** How long a scheduled run of each job may take before the scheduler stops it (schedule.timeout). */
  jobTimeoutSeconds: {backup: number; expire: number; drill: number};
  retention: {backups?: number; days?: number};
  objectives: {rpoSeconds: number; rtoSeconds: number};
  backup: {
    /** pg_basebackup --checkpoint: fast starts at once, spread eases the I/O load on the server. */
    checkpoint: 'fast' | 'spread';
    /** backup.max_object_size: the most bytes one stored object of a base backup holds (default 1 GiB). */
    maxObjectBytes: number;
  };
  /** Codec and level of new WAL and base backup objects (each object records its own, so old ones stay readable). */
  compression: Compression;
  dump: {tables: string[]};
  /** patroni strategy: where the cluster's REST API answers, and how far behind a replica may be to serve backups. */
  patroni?: PatroniConfig;
  /** replica strategy: the standby backups are taken from, how new standbys reach the primary, the lag allowed. */
  replica?: ReplicaConfig;
  /** pgbk wal-receive: stream WAL from a physical slot and upload the segment being written (absent: no streaming). */
  walStreaming?: WalStreamingConfig;
  /** pgbk drill: the user's checks on the restored data, the opt-in heartbeat, how long a drill may take. */
  drill: {checks: DrillCheckConfig[]; heartbeat: boolean; timeoutSeconds: number};
}

export interface ReplicaConfig {
  /** libpq URL of the standby pg_basebackup reads from (postgres.url stays the primary). */
  standbyUrl?: string;
  /** primary_conninfo for `pgbk restore --standby`; default: postgres.url without its password. */
  primaryConninfo?: string;
  /** A standby further behind than this is not backed up from (and status reports it); default: objectives.rpo. */
  maxLagSeconds?: number;
}

export interface DrillCheckConfig {
  name: string;
  sql: string;
  /** The first column of the first row, as text, must equal this. */
  expect?: string;
  /** Or lie within these bounds (numbers). */
  min?: number;
  max?: number;
}

export interface PatroniConfig {
  /** Base URLs of the members' REST APIs (http://host:8008); the first that answers describes the cluster. */
  restApi: string[];
  /** Bytes a replica may lag behind the leader and still be the backup source (Patroni's maximum_lag_on_failover). */
  maximumLagOnFailover: number;
  /** PEM CA file that https:// REST APIs' certificates are verified against (default: the system CAs). */
  caFile?: string;
  /** https:// without certificate verification (explicit opt-out). */
  insecure: boolean;
  /** HTTP basic auth for the REST API; the password is never printed. */
  username?: string;
  password?: string;
}

export interface WalStreamingConfig {
  enabled: boolean;
  /** The physical replication slot pg_receivewal streams from (created when absent). */
  slot: string;
  /** How often the segment being received is uploaded. */
  flushIntervalSeconds: number;
  /** Where pg_receivewal writes (default ~/.pgbk/wal-receive/<policy>). */
  spoolDir: string;
}
