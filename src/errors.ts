// Every error pgbk raises, each with a stable code and the exit code the contract gives it.

export abstract class PgbkError extends Error {
  abstract readonly code: string;
  readonly exitCode: number = 1;
  /** Expected outcomes (a WAL file not archived) exit with their code without a message, unless --verbose. */
  readonly quiet: boolean = false;
  /**
   * Under --json: the command's own report (status, check, verify, drill findings), printed with the error as
   * one document, `{...report, ok: false, error: {code, message, hint}}`.
   */
  report?: Record<string, unknown>;
  constructor(message: string, readonly hint?: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
  }

  /** Attaches the command's --json report (see `report`); returns this, to throw. */
  withReport(report: Record<string, unknown>): this {
    this.report = report;
    return this;
  }
}

/** Code of anything thrown that is not a PgbkError (a bug or an unexpected system error): exit 1. */
export const UNEXPECTED_CODE = 'unexpected';

/** Bad command-line input: unknown flag or command, malformed value, conflicting options (commander's errors too). */
export class UsageError extends PgbkError {
  readonly code = 'usage';
  override readonly exitCode = 2;
}

/** A policy file that cannot be found, parsed or validated. */
export class PolicyError extends PgbkError {
  readonly code = 'policy.invalid';
  override readonly exitCode = 2;
}

/** A restore target that is malformed, or outside what the repository can reach. */
export class TargetError extends PgbkError {
  readonly code = 'target.invalid';
  override readonly exitCode = 2;
}

/** Nothing in the repository to restore from, or a restore destination that must not be written. */
export class NothingToRestoreError extends PgbkError {
  readonly code = 'restore.nothing';
  override readonly exitCode = 2;
}

/** The destination of a restore is unusable (not empty, not writable). */
export class DestinationError extends PgbkError {
  readonly code = 'restore.destination';
  override readonly exitCode = 2;
}

/** A WAL file name that is not a segment, history, partial or backup-label name. */
export class WalNameError extends PgbkError {
  readonly code = 'wal.name';
  override readonly exitCode = 2;
}

/** Archive-get: the requested WAL file is not in the repository. Exit 1 tells PostgreSQL "not archived". */
export class WalNotFoundError extends PgbkError {
  readonly code = 'wal.not-found';
  // PostgreSQL asks for files that do not exist as a matter of course (the next timeline's history file, the
  // segment after the end of the archive): saying so each time would only fill the server log.
  override readonly quiet = true;
}

/** Archive-push: a different file is already archived under this name (split brain, two primaries). */
export class WalConflictError extends PgbkError {
  readonly code = 'wal.conflict';
}

/** An object in the repository does not match its recorded checksum, or is unreadable as stored. */
export class CorruptObjectError extends PgbkError {
  readonly code = 'repo.corrupt';
}

/** Rejected by a lookup: the object does not exist. */
export class ObjectNotFoundError extends PgbkError {
  readonly code = 'repo.not-found';
  constructor(readonly key: string, options?: ErrorOptions) {
    super(`object not found in repository: ${key}`, undefined, options);
  }
}

/**
 * A conditional put (create-only, or compare-and-swap) found the object not as required: it exists
 * already, or changed since it was read. Nothing was written.
 */
export class PreconditionFailedError extends PgbkError {
  readonly code = 'repo.precondition-failed';
  constructor(readonly key: string, readonly condition: 'if-none-match' | 'if-match', options?: ErrorOptions) {
    super(condition === 'if-none-match'
      ? `object already exists in repository: ${key}`
      : `object changed in repository since it was read: ${key}`, undefined, options);
  }
}

/** The repository could not be read or written after retries (outage, permissions). */
export class RepositoryError extends PgbkError {
  readonly code = 'repo.unavailable';
}

/** A PostgreSQL program (pg_basebackup, pg_dump, pg_ctl...) failed. */
export class PgToolError extends PgbkError {
  readonly code = 'pg.tool';
}

/** PostgreSQL binaries could not be found. */
export class PgBinaryError extends PgbkError {
  readonly code = 'pg.binaries';
  override readonly exitCode = 2;
}

/** A query against the server failed, or the server is not configured as the command needs. */
export class PgServerError extends PgbkError {
  readonly code = 'pg.server';
}

/** A backup is incomplete or inconsistent (missing WAL, bad manifest). */
export class BackupError extends PgbkError {
  readonly code = 'backup.failed';
}

/** Another backup of the policy is running (it holds the backup lease): this one did not start. */
export class BackupBusyError extends PgbkError {
  readonly code = 'backup.busy';
}

/** A restore did not reach its target or could not be laid out. */
export class RestoreError extends PgbkError {
  readonly code = 'restore.failed';
}

/** "Cannot happen": a bug in pgbk, never shown as bad input. */
export class AssertError extends PgbkError {
  readonly code = 'assert';
}

export function assert(condition: unknown, message: string): asserts condition {
  if (!condition) throw new AssertError(`internal error: ${message}`);
}

/**
 * archive-get could not read the repository (after retries) or found a corrupt object while recovering:
 * exit 126 makes PostgreSQL abort recovery instead of ending it early at the wrong point.
 */
export class RecoveryAbortError extends PgbkError {
  readonly code = 'wal.get-aborted';
  override readonly exitCode = 126;
}

/**
 * The repository belongs to another database system, has no identity yet, or is not where the policy says (a
 * missing mount). Nothing was written.
 */
export class RepositoryIdentityError extends PgbkError {
  readonly code = 'repo.identity';
  override readonly exitCode = 2;
}

/** archive-get: the WAL file is missing while later WAL of its timeline is archived (a hole in the archive). */
export class WalGapError extends PgbkError {
  readonly code = 'wal.gap';
  override readonly exitCode = 126;
}

/** A WAL file in the repository (or handed to archive-push) belongs to another database system. */
export class ForeignWalError extends PgbkError {
  readonly code = 'wal.foreign';
  override readonly exitCode = 126;
}

/** archive-get on a standby: whatever went wrong, exit 1 so the server falls back to streaming replication. */
export class StandbyFallbackError extends PgbkError {
  readonly code = 'wal.standby-fallback';
}

/** The local clock disagrees with the repository's (or a backup lies in the future): expire removes nothing. */
export class ClockSkewError extends PgbkError {
  readonly code = 'clock.skew';
}

/** The server is older than pgbk supports (see src/pg/version.ts). */
export class UnsupportedServerError extends PgbkError {
  readonly code = 'pg.unsupported-version';
  override readonly exitCode = 2;
}
