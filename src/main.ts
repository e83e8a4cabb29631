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
    import('./cli/wal-receive.js'),
  ]);
  const [backup, list, restore, demo, drill, status, check, schedule, expire, verify, patroni, init, walReceive] = modules;
  return [
    init.registerInitCommand, archive, backup.registerBackupCommand, list.registerListCommand, restore.registerRestoreCommand, demo.registerDemoCommand,
    drill.registerDrillCommand, status.registerStatusCommand, check.registerCheckCommand, schedule.registerScheduleCommand,
    expire.registerExpireCommand, verify.registerVerifyCommand, patroni.registerPatroniReplicaCommand,
    walReceive.registerWalReceiveCommand,
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

function report(error: unknown, io: Io, verbose: boolean): number {
  if (error instanceof CommanderError) {
    if (error.code === 'commander.helpDisplayed' || error.code === 'commander.version' || error.code === 'commander.help') return 0;
    return 2; // commander already printed what was wrong
  }
  if (error instanceof PgbkError) {
    if (error.quiet && !verbose) return error.exitCode;
    io.stderr.write(`pgbk: error: ${error.message}\n`);
    if (error.hint) io.stderr.write(`HINT: ${error.hint}\n`);
    if (verbose) writeCauses(error, io);
    return error.exitCode;
  }
  io.stderr.write(`pgbk: error: ${(error as Error)?.message ?? String(error)}\n`);
  if (verbose) io.stderr.write(`${(error as Error)?.stack ?? ''}\n`);
  return 1;
}

function writeCauses(error: Error, io: Io): void {
  let cause = error.cause as Error | undefined;
  while (cause) {
    io.stderr.write(`  caused by: ${cause.message ?? String(cause)}\n`);
    cause = cause.cause as Error | undefined;
  }
}

export async function main(argv: string[]): Promise<void> {
  const code = await run(argv, {env: process.env, cwd: process.cwd(), stdout: process.stdout, stderr: process.stderr, now: () => new Date()});
  process.exitCode = code;
  // Let pending output flush, then leave even if a library kept a socket or timer open.
  setImmediate(() => process.exit(code));
}
