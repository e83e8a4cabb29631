// Option values shared by commands: durations in the one syntax policies use too.

import {UsageError} from '../errors.js';
import {DURATION_SYNTAX, parseDuration} from '../policy/duration.js';

/** Seconds of a duration flag's value; bad input (exit 2) naming the flag otherwise. */
export function durationFlag(flag: string, text: string, options: {minSeconds?: number} = {}): number {
  const seconds = parseDuration(text);
  const min = options.minSeconds ?? 0;
  if (seconds === undefined || seconds < min) {
    throw new UsageError(`${flag}: "${text}" is not ${min > 0 ? `a duration of ${min}s or more` : 'a duration'}`, `give ${DURATION_SYNTAX}`);
  }
  return seconds;
}
