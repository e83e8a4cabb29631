// Errors of the patroni strategy (kept beside it; the stable codes follow src/errors.ts).

import {PgbkError} from '../errors.js';

/** The Patroni REST API could not be reached, or described a cluster pgbk cannot use. */
export class PatroniError extends PgbkError {
  readonly code = 'patroni.unavailable';
}
