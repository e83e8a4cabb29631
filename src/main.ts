// pgbk: builds the program, runs it, and turns any error into an exit code (the only process.exit).

import {Command, CommanderError} from 'commander';
import {PgbkError, UNEXPECTED_CODE} from './errors.js';
import {redactSecrets} from './pg/conninfo.js';
import {VERSION} from './version.js';
import type {GlobalOptions, Io} from './cli/context.js';

export type Register = (program: Command, io: Io, globals: () => GlobalOptions) => void;

/** The commands PostgreSQL runs once per WAL file: they load nothing else (start-up time is their cost). */
const ARCHIVE_COMMANDS = new Set(['archive-push', 'archive-get', 'archive-prefetch', 'archive-push-ahead']);
const OPTIONS_WITH_VALUE = new Set(['--policy', '--policies']);

export {VERSION} from './version.js';

/** The command word of argv (skipping global options and their values). */
export function commandOf(argv: string[]): string | undefined {
  for (let index = 2; index < argv.length; index++) {
    const word = argv[index]!;
    if (OPTIONS_WITH_VALUE.has(word)) index++;
    else if (!word.startsWith('-')) return word;
  }
  return undefined;
}

/** Every command's registration; only the archive commands when argv runs one of them (their start-up is hot). */
export async function registrations(argv?: string[]): Promise<Register[]> {
  const archive = (await import('./cli/archive.js')).registerArchiveCommands;
  if (argv && ARCHIVE_COMMANDS.has(commandOf(argv) ?? '')) return [archive];
  const modules = await Promise.all([
    import('./cli/backup.js'), import('./cli/list.js'), import('./cli/restore.js'), import('./cli/demo.js'),
    import('./cli/drill.js'), import('./cli/status.js'), import('./cli/check.js'), import('./cli/schedule.js'),
    import('./cli/expire.js'), import('./cli/verify.js'), import('./cli/patroni-replica.js'), import('./cli/init.js'),
    import('./cli/completion.js'),
  ]);
  const [backup, list, restore, demo, drill, status, check, schedule, expire, verify, patroni, init, completion] = modules;
  return [
    init.registerInitCommand, archive, backup.registerBackupCommand, list.registerListCommand, restore.registerRestoreCommand, demo.registerDemoCommand,
    drill.registerDrillCommand, status.registerStatusCommand, check.registerCheckCommand, schedule.registerScheduleCommand,
    expire.registerExpireCommand, verify.registerVerifyCommand, patroni.registerPatroniReplicaCommand, completion.registerCompletionCommand,
  ];
}

export function buildProgram(io: Io, register: Register[]): Command {
  const program = new Command('pgbk')
    .description('PostgreSQL backups, WAL archiving and point-in-time recovery')
    .version(VERSION, '-V, --version', 'print the version of pgbk')
    .option('--policy <name|path>', 'policy name (<policies dir>/<name>.yaml or .yml) or file; default $PGBK_POLICY')
    .option('--policies <dir>', 'policies directory; default $PGBK_POLICIES, else /etc/pgbk/policies')
    .option('--json', 'print one machine-readable JSON document on stdout (errors too)')
    .option('--verbose', 'more detail, and the cause chain of errors')
    .helpOption('-h, --help', 'show the options of this command, with examples')
    .enablePositionalOptions(false)
    .showHelpAfterError(false)
    .configureHelp({showGlobalOptions: true, sortSubcommands: false})
    .exitOverride()
    .configureOutput({
      writeOut: (text) => io.stdout.write(text),
      writeErr: (text) => io.stderr.write(text),
      // commander's own errors ("error: unknown option '--x'"), like every other: "pgbk: error: ..."
      outputError: (text, write) => write(`pgbk: ${text}`),
    });
  const globals = () => program.opts<GlobalOptions>();
  for (const add of register) add(program, io, globals);
  for (const command of program.commands) command.exitOverride();
  return program;
}

export async function run(argv: string[], io: Io): Promise<number> {
  const json = jsonRequested(argv);
  // Under --json, a command that already printed its one document (then failed) gets no second one.
  let printed = false;
  const watched: Io = json ? {...io, stdout: watchWrites(io.stdout, () => { printed = true; })} : io;
  try {
    const program = buildProgram(watched, await registrations(argv));
    (await import('./cli/help.js')).addExamples(program);
    await program.parseAsync(argv);
    return 0;
  } catch (error) {
    return report(error, io, {verbose: argv.includes('--verbose'), json: json && !printed});
  }
}

/**
 * stderr as PGBK_LOG_LEVEL and the command want it: lines below the level dropped; under schedule, JSON lines
 * (also what other modules write to process.stderr directly), with the syslog priority when it is the journal.
 */
async function diagnostics(argv: string[]): Promise<NodeJS.WritableStream> {
  const {logLevelOf, diagnosticsStream, isJournalStream} = await import('./util/log.js');
  const command = commandOf(argv);
  let level = logLevelOf(process.env);
  if (level === undefined) {
    process.stderr.write(`pgbk: warning: PGBK_LOG_LEVEL="${process.env.PGBK_LOG_LEVEL}" is not a log level (error, warn, info, debug): using info\n`);
    level = 'info';
  }
  if (level === 'debug' && !argv.includes('--verbose')) argv.splice(2, 0, '--verbose');
  const journal = isJournalStream(process.env, 2);
  const schedule = command === 'schedule';
  if (!schedule && (level === 'info' || level === 'debug')) return process.stderr;
  // Modules that write to process.stderr directly are filtered (and, under schedule, turned into JSON) too.
  const write = process.stderr.write.bind(process.stderr);
  const stream = diagnosticsStream({write: (text: string) => write(text)} as unknown as NodeJS.WritableStream, {level, json: schedule, journal: schedule && journal});
  process.stderr.write = ((chunk: string | Uint8Array, ...rest: unknown[]) => {
    stream.write(typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString());
    const callback = rest.find((arg) => typeof arg === 'function') as (() => void) | undefined;
    callback?.();
    return true;
  }) as typeof process.stderr.write;
  return process.stderr;
}

/** `stream`, calling `onWrite` at each write. */
function watchWrites(stream: NodeJS.WritableStream, onWrite: () => void): NodeJS.WritableStream {
  return new Proxy(stream, {
    get(target, property) {
      const value = Reflect.get(target, property, target) as unknown;
      if (property === 'write') return (...args: unknown[]) => { onWrite(); return (value as (...a: unknown[]) => boolean).apply(target, args); };
      return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
    },
  });
}

/** --json among the options (before any "--"). */
function jsonRequested(argv: string[]): boolean {
  const end = argv.indexOf('--');
  return (end < 0 ? argv : argv.slice(0, end)).includes('--json');
}

/** What an error is, for people and for programs: code, exit code, message and hint (secrets removed). */
export interface ErrorReport {
  code: string;
  exitCode: number;
  message: string;
  hint?: string;
  /** Exit silently unless --verbose (an archive-get of a file that is not archived). */
  quiet?: boolean;
  report?: Record<string, unknown>;
}

export function describeError(error: unknown): ErrorReport {
  if (error instanceof CommanderError) {
    const displayed = ['commander.helpDisplayed', 'commander.version'].includes(error.code) || (error.code === 'commander.help' && error.exitCode === 0);
    if (displayed) return {code: 'ok', exitCode: 0, message: ''};
    const message = error.code === 'commander.help'
      ? 'no command given'
      : error.message.replace(/^error: /, '');
    return {code: 'usage', exitCode: 2, message: redactSecrets(message), hint: 'run "pgbk --help" for the commands, "pgbk <command> --help" for their options'};
  }
  if (error instanceof PgbkError) {
    return {
      code: error.code, exitCode: error.exitCode, message: redactSecrets(error.message),
      ...(error.hint ? {hint: redactSecrets(error.hint)} : {}), quiet: error.quiet, ...(error.report ? {report: error.report} : {}),
    };
  }
  return {code: UNEXPECTED_CODE, exitCode: 1, message: redactSecrets((error as Error)?.message ?? String(error))};
}

function report(error: unknown, io: Io, options: {verbose: boolean; json: boolean}): number {
  const described = describeError(error);
  if (described.exitCode === 0) return 0;
  if (options.json) {
    const {report: body, code, message, hint} = described;
    io.stdout.write(`${JSON.stringify({...body, ok: false, error: {code, message, ...(hint ? {hint} : {})}}, null, 2)}\n`);
  }
  if (error instanceof CommanderError) return described.exitCode; // commander already said what was wrong
  if (described.quiet && !options.verbose) return described.exitCode;
  io.stderr.write(prefixLines('pgbk: error: ', described.message));
  if (described.hint) io.stderr.write(prefixLines('pgbk: hint: ', described.hint));
  if (options.verbose) {
    if (error instanceof PgbkError) writeCauses(error, io);
    else io.stderr.write(`${redactSecrets((error as Error)?.stack ?? '')}\n`);
  }
  return described.exitCode;
}

/**
 * Every line starts with `pgbk:` — archive_command's stderr lands in PostgreSQL's log, where a bare line (a server log
 * tail inside a message, a "HINT:") would pass for the server's own.
 */
export function prefixLines(first: string, text: string): string {
  const [head = '', ...rest] = text.split('\n');
  return `${[`${first}${head}`, ...rest.map((line) => `pgbk:   ${line}`)].join('\n')}\n`;
}

function writeCauses(error: Error, io: Io): void {
  let cause = error.cause as Error | undefined;
  while (cause) {
    io.stderr.write(prefixLines('pgbk:   caused by: ', redactSecrets(cause.message ?? String(cause))));
    cause = cause.cause as Error | undefined;
  }
}

export async function main(argv: string[]): Promise<void> {
  const code = await run(argv, {env: process.env, cwd: process.cwd(), stdout: process.stdout, stderr: await diagnostics(argv), now: () => new Date()});
  process.exitCode = code;
  // Let pending output flush, then leave even if a library kept a socket or timer open.
  setImmediate(() => process.exit(code));
}
