// The one wrapper around PostgreSQL programs (execa): finds the binary, sets the environment, maps failures.

import {fileURLToPath} from 'node:url';
import {execa, type Options, type ResultPromise} from 'execa';
import {PgToolError} from '../errors.js';
import {pgBinary} from './bin.js';

export interface PgRunOptions {
  binDir?: string;
  env?: Record<string, string>;
  cwd?: string;
  cancelSignal?: AbortSignal;
  /** Feed this stream / buffer to stdin. */
  input?: NodeJS.ReadableStream | Buffer;
  /**
   * The program dies with pgbk, even when pgbk is killed with SIGKILL (bin/pgbk-tool-watchdog: it watches a
   * pipe from pgbk that closes when pgbk is gone). Not with `input`.
   */
  dieWithParent?: boolean;
}

/** bin/pgbk-tool-watchdog of this installation (dist/pg/run.js → ../../bin; likewise from src/ under vitest). */
const WATCHDOG = fileURLToPath(new URL('../../bin/pgbk-tool-watchdog', import.meta.url));

const BASE_ENV = {LC_ALL: 'C', LC_MESSAGES: 'C', PGAPPNAME: 'pgbk'};

/** Runs a program to completion, collecting its (small) output. */
export async function runPg(program: string, args: string[], options: PgRunOptions = {}): Promise<{stdout: string; stderr: string}> {
  const file = pgBinary(options.binDir, program);
  try {
    const result = await execa(file, args, {
      env: {...BASE_ENV, ...options.env},
      cwd: options.cwd,
      cancelSignal: options.cancelSignal,
      input: options.input as Options['input'],
      stripFinalNewline: true,
    });
    return {stdout: String(result.stdout), stderr: String(result.stderr)};
  } catch (error) {
    throw toolError(program, error);
  }
}

/**
 * Starts a program whose stdout is streamed (never buffered: memory stays flat); stderr is kept for messages.
 * Await the returned process to learn how it ended; map errors with toolError().
 */
export function spawnPg(program: string, args: string[], options: PgRunOptions = {}): ResultPromise<{buffer: {stdout: false; stderr: true}; stdin: 'pipe' | 'ignore'}> {
  const file = pgBinary(options.binDir, program);
  const watched = Boolean(options.dieWithParent) && !options.input;
  // Watched: stdin is the pipe the watchdog waits on; nothing is ever written to it and pgbk never ends it.
  return execa(watched ? WATCHDOG : file, watched ? [file, ...args] : args, {
    env: {...BASE_ENV, ...options.env},
    cwd: options.cwd,
    cancelSignal: options.cancelSignal,
    buffer: {stdout: false, stderr: true},
    stdin: options.input || watched ? 'pipe' : 'ignore',
  }) as never;
}

/** A PgToolError with execa's short message and the last lines of the program's stderr. */
export function toolError(program: string, error: unknown): PgToolError {
  const err = error as {shortMessage?: string; stderr?: unknown; message?: string};
  const stderr = typeof err.stderr === 'string' ? err.stderr.trim().split('\n').slice(-5).join('\n') : '';
  const summary = (err.shortMessage ?? err.message ?? String(error)).replace(`${WATCHDOG} `, '');
  return new PgToolError(`${program} failed: ${summary.split('\n')[0]}${stderr ? `\n${stderr}` : ''}`, undefined, {cause: error});
}
