// pgbk: builds the program, runs it, and turns any error into an exit code (the only process.exit).

import {Command, CommanderError} from 'commander';
import {PgbkError} from './errors.js';
import type {GlobalOptions, Io} from './cli/context.js';

type Register = (program: Command, io: Io, globals: () => GlobalOptions) => void;

/** The commands PostgreSQL runs once per WAL file: they load nothing else (start-up time is their cost). */
const ARCHIVE_COMMANDS = new Set(['archive-push', 'archive-get', 'archive-prefetch', 'archive-push-ahead']);
const OPTIONS_WITH_VALUE = new Set(['--policy', '--policies']);

/** The command word of argv (skipping global options and their values). */
export function commandOf(argv: string[]): string | undefined {
  for (let index = 2; index < argv.length; index++) {
    const word = argv[index]!;
    if (OPTIONS_WITH_VALUE.has(word)) index++;
    else if (!word.startsWith('-')) return word;
  }
  return undefined;
}

async function registrations(argv: string[]): Promise<Register[]> {
  const archive = (await import('./cli/archive.js')).registerArchiveCommands;
  if (ARCHIVE_COMMANDS.has(commandOf(argv) ?? '')) return [archive];
  const modules = await Promise.all([
    import('./cli/backup.js'), import('./cli/list.js'), import('./cli/restore.js'), import('./cli/demo.js'),
    import('./cli/drill.js'), import('./cli/status.js'), import('./cli/check.js'), import('./cli/schedule.js'),
    import('./cli/expire.js'), import('./cli/verify.js'), import('./cli/patroni-replica.js'), import('./cli/init.js'),
  ]);
  const [backup, list, restore, demo, drill, status, check, schedule, expire, verify, patroni, init] = modules;
  return [
    init.registerInitCommand, archive, backup.registerBackupCommand, list.registerListCommand, restore.registerRestoreCommand, demo.registerDemoCommand,
    drill.registerDrillCommand, status.registerStatusCommand, check.registerCheckCommand, schedule.registerScheduleCommand,
    expire.registerExpireCommand, verify.registerVerifyCommand, patroni.registerPatroniReplicaCommand,
  ];
}

export function buildProgram(io: Io, register: Register[]): Command {
  const program = new Command('pgbk')
    .description('PostgreSQL backups, WAL archiving and point-in-time recovery')
    .version('0.1.0')
    .option('--policy <name|path>', 'policy name (in the policies directory) or file; default $PGBK_POLICY')
    .option('--policies <dir>', 'policies directory; default $PGBK_POLICIES, ./policies, /etc/pgbk/policies')
    .option('--json', 'print one machine-readable JSON document on stdout')
    .option('--verbose', 'more detail, and the cause chain of errors')
    .enablePositionalOptions(false)
    .showHelpAfterError(false)
    .exitOverride()
    .configureOutput({writeOut: (text) => io.stdout.write(text), writeErr: (text) => io.stderr.write(text)});
  const globals = () => program.opts<GlobalOptions>();
  for (const add of register) add(program, io, globals);
  for (const command of program.commands) command.exitOverride();
  return program;
}

export async function run(argv: string[], io: Io): Promise<number> {
  const program = buildProgram(io, await registrations(argv));
  try {
    await program.parseAsync(argv);
    return 0;
  } catch (error) {
    return report(error, io, argv.includes('--verbose'));
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

function report(error: unknown, io: Io, verbose: boolean): number {
  if (error instanceof CommanderError) {
    if (error.code === 'commander.helpDisplayed' || error.code === 'commander.version' || error.code === 'commander.help') return 0;
    return 2; // commander already printed what was wrong
  }
  if (error instanceof PgbkError) {
    if (error.quiet && !verbose) return error.exitCode;
    io.stderr.write(prefixLines('pgbk: error: ', error.message));
    if (error.hint) io.stderr.write(prefixLines('pgbk: hint: ', error.hint));
    if (verbose) writeCauses(error, io);
    return error.exitCode;
  }
  io.stderr.write(prefixLines('pgbk: error: ', (error as Error)?.message ?? String(error)));
  if (verbose) io.stderr.write(`${(error as Error)?.stack ?? ''}\n`);
  return 1;
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
    io.stderr.write(`  caused by: ${cause.message ?? String(cause)}\n`);
    cause = cause.cause as Error | undefined;
  }
}

export async function main(argv: string[]): Promise<void> {
  const code = await run(argv, {env: process.env, cwd: process.cwd(), stdout: process.stdout, stderr: await diagnostics(argv), now: () => new Date()});
  process.exitCode = code;
  // Let pending output flush, then leave even if a library kept a socket or timer open.
  setImmediate(() => process.exit(code));
}
