// Errors of pgbk drill (kept next to the drill; src/errors.ts lists the core ones).

import {PgbkError} from '../errors.js';

/** A drill ran and something is not as it must be: a failed check, a missed objective, a restore that broke. */
export class DrillFailedError extends PgbkError {
  readonly code = 'drill.failed';
  /** The report has already been printed: main.ts exits 1 without repeating it. */
  override readonly quiet: boolean;
  constructor(message: string, options: {quiet?: boolean; hint?: string; cause?: unknown} = {}) {
    super(message, options.hint, {cause: options.cause});
    this.quiet = options.quiet ?? false;
  }
}

/** The drill was stopped by SIGTERM or SIGINT; the scratch server and directory were removed first. */
export class DrillInterruptedError extends PgbkError {
  readonly code = 'drill.interrupted';
}
