// pgbk: builds the program, runs it, and turns any error into an exit code (the only process.exit).

import {Command, CommanderError} from 'commander';
import {PgbkError} from './errors.js';
import {registerArchiveCommands} from './cli/archive.js';
import {registerBackupCommand} from './cli/backup.js';
import {registerListCommand} from './cli/list.js';
import {registerRestoreCommand} from './cli/restore.js';
import {registerDemoCommand} from './cli/demo.js';
import {registerDrillCommand} from './cli/drill.js';
import {registerStatusCommand} from './cli/status.js';
import {registerCheckCommand} from './cli/check.js';
import {registerScheduleCommand} from './cli/schedule.js';
import {registerExpireCommand} from './cli/expire.js';
import {registerVerifyCommand} from './cli/verify.js';
import {registerPatroniReplicaCommand} from './cli/patroni-replica.js';
import type {GlobalOptions, Io} from './cli/context.js';

export function buildProgram(io: Io): Command {
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
  registerArchiveCommands(program, io, globals);
  registerBackupCommand(program, io, globals);
  registerListCommand(program, io, globals);
  registerRestoreCommand(program, io, globals);
  registerDemoCommand(program, io, globals);
  registerDrillCommand(program, io, globals);
  registerStatusCommand(program, io, globals);
  registerCheckCommand(program, io, globals);
  registerScheduleCommand(program, io, globals);
  registerExpireCommand(program, io, globals);
  registerVerifyCommand(program, io, globals);
  registerPatroniReplicaCommand(program, io, globals);
  for (const command of program.commands) command.exitOverride();
  return program;
}

export async function run(argv: string[], io: Io): Promise<number> {
  const program = buildProgram(io);
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
