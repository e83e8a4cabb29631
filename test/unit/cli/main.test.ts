// The program in-process: error codes and exit codes, --json errors, help, version, man page and completion.
import {readFileSync} from 'node:fs';
import {CommanderError} from 'commander';
import {describe, expect, it} from 'vitest';
import * as core from '../../../src/errors.js';
import {PgbkError} from '../../../src/errors.js';
import {buildProgram, describeError, registrations, run, VERSION} from '../../../src/main.js';
import {renderMan} from '../../../src/cli/man.js';
import {bashCompletion, zshCompletion} from '../../../src/cli/completion.js';
import {PatroniError} from '../../../src/patroni/errors.js';
import {WalFileUnreadableError} from '../../../src/wal/push.js';
import {SchedulerError} from '../../../src/scheduler/daemon.js';
import {DrillFailedError, DrillInterruptedError} from '../../../src/drill/errors.js';
import {VerifyFailedError} from '../../../src/verify/verify.js';
import {ObjectivesMissedError} from '../../../src/status/status.js';
import {CheckFailedError} from '../../../src/status/check.js';
import type {Io} from '../../../src/cli/context.js';

const root = new URL('../../../', import.meta.url);
const readme = readFileSync(new URL('README.md', root), 'utf8');

function memoryIo(): Io & {out: () => string; err: () => string} {
  let out = '';
  let err = '';
  const stream = (append: (text: string) => void) => ({write: (chunk: string | Uint8Array) => { append(String(chunk)); return true; }}) as unknown as NodeJS.WritableStream;
  return {
    env: {}, cwd: '/', now: () => new Date(),
    stdout: stream((text) => { out += text; }), stderr: stream((text) => { err += text; }),
    out: () => out, err: () => err,
  };
}

/** One instance of every error class pgbk throws. */
function everyError(): PgbkError[] {
  const errors: PgbkError[] = [];
  for (const value of Object.values(core)) {
    if (typeof value !== 'function' || !(value.prototype instanceof PgbkError)) continue;
    const Class = value as unknown as new (...args: unknown[]) => PgbkError;
    errors.push(Class === core.PreconditionFailedError ? new Class('k', 'if-match') : new Class('message'));
  }
  errors.push(new PatroniError('m'), new WalFileUnreadableError('m'), new SchedulerError('m'), new DrillFailedError('m'),
    new DrillInterruptedError('m'), new VerifyFailedError('m'), new ObjectivesMissedError('m'), new CheckFailedError('m'));
  return errors;
}

describe('error codes', () => {
  it('maps every error class to its code and exit code', () => {
    const seen = new Map<string, string>();
    for (const error of everyError()) {
      const described = describeError(error);
      expect(described.code).toBe(error.code);
      expect(described.exitCode).toBe(error.exitCode);
      expect(described.code).toMatch(/^[a-z]+(\.[a-z-]+)?$/);
      // one class per code
      expect(seen.get(described.code) ?? error.name, described.code).toBe(error.name);
      seen.set(described.code, error.name);
    }
    expect(describeError(new core.PolicyError('x'))).toMatchObject({code: 'policy.invalid', exitCode: 2});
    expect(describeError(new core.RepositoryError('x'))).toMatchObject({code: 'repo.unavailable', exitCode: 1});
    expect(describeError(new core.RecoveryAbortError('x'))).toMatchObject({code: 'wal.get-aborted', exitCode: 126});
    expect(describeError(new Error('boom'))).toMatchObject({code: 'unexpected', exitCode: 1, message: 'boom'});
    expect(describeError(new CommanderError(1, 'commander.unknownOption', "error: unknown option '--x'")))
      .toMatchObject({code: 'usage', exitCode: 2, message: "unknown option '--x'"});
    expect(describeError(new CommanderError(0, 'commander.helpDisplayed', '(outputHelp)')).exitCode).toBe(0);
  });

  it('lists every code in the README', () => {
    const codes = new Set([...everyError().map((error) => error.code), 'usage', 'unexpected']);
    for (const code of codes) expect(readme, `README lacks error code ${code}`).toContain(`| \`${code}\` |`);
  });

  it('never shows a password in the message or the hint', () => {
    const described = describeError(new core.PgServerError('cannot connect to postgresql://app:S3cr3t@h/d', 'or host=h password=S3cr3t'));
    expect(JSON.stringify(described)).not.toContain('S3cr3t');
  });
});

describe('the program', () => {
  it('--json: a commander error is one JSON document on stdout, exit 2, and "pgbk: error:" on stderr', async () => {
    const io = memoryIo();
    expect(await run(['node', 'pgbk', 'list', '--no-such-flag', '--json'], io)).toBe(2);
    expect(JSON.parse(io.out())).toEqual({ok: false, error: {code: 'usage', message: "unknown option '--no-such-flag'", hint: expect.any(String)}});
    expect(io.err()).toBe("pgbk: error: unknown option '--no-such-flag'\n");
  });

  it('--json: a bad policy is one JSON document naming the file', async () => {
    const io = memoryIo();
    expect(await run(['node', 'pgbk', 'backup', '--json', '--policy', '/nonexistent/p.yml'], io)).toBe(2);
    const doc = JSON.parse(io.out());
    expect(doc).toEqual({ok: false, error: {code: 'policy.invalid', message: 'cannot read policy file /nonexistent/p.yml: no such file', hint: expect.any(String)}});
  });

  it('without --json, nothing on stdout for an error', async () => {
    const io = memoryIo();
    expect(await run(['node', 'pgbk', 'nosuchcommand'], io)).toBe(2);
    expect(io.out()).toBe('');
    expect(io.err()).toBe("pgbk: error: unknown command 'nosuchcommand'\n");
  });

  it('--version prints package.json\'s version', async () => {
    const io = memoryIo();
    expect(await run(['node', 'pgbk', '--version'], io)).toBe(0);
    expect(io.out()).toBe(`${JSON.parse(readFileSync(new URL('package.json', root), 'utf8')).version}\n`);
    expect(VERSION).toBe(JSON.parse(readFileSync(new URL('package.json', root), 'utf8')).version);
  });

  it('every command\'s --help shows --policy and --json (not demo\'s and completion\'s, which take no policy) and an example', async () => {
    const program = buildProgram(memoryIo(), await registrations());
    const names = program.commands.filter((command) => !(command as unknown as {_hidden: boolean})._hidden).map((command) => command.name());
    expect(names).toEqual(expect.arrayContaining(['init', 'archive-push', 'archive-get', 'backup', 'list', 'restore', 'drill', 'expire', 'verify', 'check', 'status', 'schedule', 'demo', 'completion']));
    for (const name of names) {
      const io = memoryIo();
      expect(await run(['node', 'pgbk', name, '--help'], io)).toBe(0);
      if (['demo', 'completion'].includes(name)) expect(io.out(), name).not.toContain('--policy');
      else expect(io.out(), name).toContain('--policy <name|path>');
      if (!['demo', 'completion'].includes(name)) expect(io.out(), name).toContain('--json');
      expect(io.out(), name).toMatch(/\nExamples:\n {2}\S/);
    }
  });

  it('man/pgbk.1 is what the command definitions generate (npm run man)', async () => {
    const program = buildProgram(memoryIo(), await registrations());
    expect(readFileSync(new URL('man/pgbk.1', root), 'utf8')).toBe(renderMan(program, VERSION));
  });

  it('completion lists every command and its options', async () => {
    const program = buildProgram(memoryIo(), await registrations());
    const bash = bashCompletion(program);
    const zsh = zshCompletion(program);
    for (const command of ['backup', 'restore', 'schedule', 'check']) {
      expect(bash).toContain(`    ${command}) opts="`);
      expect(zsh).toContain(`    (${command})`);
    }
    expect(bash).toMatch(/ {4}restore\) opts="[^"]*--target-time[^"]*--policy/);
    expect(bash).toContain('--archive-mode) COMPREPLY=($(compgen -W "preserve off" -- "$cur")); return ;;');
    expect(zsh).toContain("'--archive-mode[");
    expect(bash).not.toContain('archive-prefetch'); // hidden commands stay hidden
  });

  it('refuses a malformed duration flag (exit 2, naming it) and takes PostgreSQL\'s min', async () => {
    const io = memoryIo();
    expect(await run(['node', 'pgbk', 'check', '--wait', 'soon', '--policy', '/nonexistent.yaml'], io)).toBe(2);
    expect(io.err()).toContain('pgbk: error: --wait: "soon" is not a duration of 1s or more');
  });
});
