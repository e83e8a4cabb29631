// pgbk restore: --to <dir> for physical strategies, --to-db <conninfo> for dumps.

import {Command, Option} from 'commander';
import {NothingToRestoreError, TargetError, UsageError} from '../errors.js';
import {readCatalog, catalogScopeOf} from '../backup/manifest.js';
import type {RestorePlan} from '../restore/plan.js';
import {describeTarget, parseTarget, parseTargetBehaviour, targetToJson, type TargetBehaviour, type TargetOptions} from '../restore/target.js';
import {formatBytes} from '../util/progress.js';
import {redactUrl} from '../pg/conninfo.js';
import {withContext, printJson, type GlobalOptions, type Io} from './context.js';
import {durationFlag} from './options.js';

interface RestoreOptions extends TargetOptions {
  to?: string;
  toDb?: string;
  backup?: string;
  start?: boolean;
  port?: string;
  dryRun?: boolean;
  force?: boolean;
  timeout?: string;
  targetTimeline?: string;
  archiveMode?: 'preserve' | 'off';
  standby?: boolean;
  primaryConninfo?: string;
  targetAction?: string;
  targetExclusive?: boolean;
  tablespaceMap?: string[];
}

export function addTargetOptions(command: Command): Command {
  return command
    .option('--target-time <timestamp>', 'recover to this time (ISO 8601 or timestamptz text, with a zone)')
    .option('--target-lsn <lsn>', 'recover to this WAL location (X/Y)')
    .option('--target-xid <xid>', 'recover to the commit of this transaction')
    .option('--target-name <name>', 'recover to this restore point (pg_create_restore_point)')
    .option('--latest', 'recover to the end of the archived WAL (default)')
    .option('--target <immediate>', 'immediate: stop as soon as the backup is consistent (recovery_target = \'immediate\')');
}

export function registerRestoreCommand(program: Command, io: Io, globals: () => GlobalOptions): void {
  addTargetOptions(program.command('restore')
    .description('lay out a data directory that recovers to a target (--to), or restore a dump into a database (--to-db)'))
    .option('--to <dir>', 'data directory to create (physical strategies)')
    .option('--to-db <conninfo>', 'database to restore a dump into (dump strategy)')
    .option('--backup <id>', 'restore this backup instead of the newest one that finished before the target')
    .addOption(new Option('--archive-mode <mode>', 'off: the restored server does not archive (a side copy); preserve: once promoted it archives its new timeline into the repository with the original archive_command (a replacement primary)')
      .choices(['preserve', 'off']).default('off'))
    .option('--target-timeline <tli>', 'timeline to recover along: a number, current (the backup\'s) or latest (the most recently archived); default: the one the policy\'s server is on, else the most recently archived')
    .addOption(new Option('--target-action <action>', 'what the server does at the target: promote (accept writes), pause (stay in recovery, read-only, for inspection), shutdown')
      .choices(['promote', 'pause', 'shutdown']))
    .option('--target-exclusive', 'stop just before the target (time, LSN, xid) instead of just after it')
    .option('--start', 'start the restored server, wait until it reaches the target and promotes, pauses or shuts down there')
    .option('--port <n>', 'port for --start (default: a free port on 127.0.0.1, printed)')
    .option('--timeout <duration>', 'with --start: how long to wait for recovery (30m, 2h...)', '1h')
    .option('--dry-run', 'print the plan, write nothing')
    .option('--force', 'replace the contents of a non-empty --to')
    .option('--tablespace-map <NAME=DIR>', 'restore the tablespace NAME (its name or oid) into DIR, which must be absent or empty (repeatable; default: its original location)',
      (value: string, previous: string[] = []) => [...previous, value])
    .option('--standby', 'lay out a standby (standby.signal, primary_conninfo) that follows the primary instead of promoting; no target')
    .option('--primary-conninfo <conninfo>', "with --standby: the standby's primary_conninfo (default: replica.primary_conninfo, else postgres.url, without password)")
    .action(async (options: RestoreOptions) => {
      const target = parseTarget(options);
      const behaviour = parseTargetBehaviour(options, target);
      if (options.standby || options.primaryConninfo !== undefined) {
        const {checkStandbyOptions} = await import('../replica/restore.js');
        checkStandbyOptions(options, target);
      }
      const timeline = options.targetTimeline;
      if (timeline !== undefined && !/^(latest|current|[1-9]\d{0,9})$/.test(timeline)) {
        throw new TargetError(`--target-timeline "${timeline}" is not a timeline`, 'give a timeline number (as in pgbk list), current or latest');
      }
      if (options.to && options.toDb) throw new UsageError('give either --to (physical backups) or --to-db (dumps), not both');
      const timeoutSeconds = durationFlag('--timeout', options.timeout ?? '1h', {minSeconds: 1});
      const port = options.port === undefined ? undefined : Number(options.port);
      if (port !== undefined && (!Number.isInteger(port) || port < 1 || port > 65535 || !/^\d+$/.test(options.port!))) throw new UsageError(`--port "${options.port}" is not a port number`);
      if (port !== undefined && !options.start) throw new UsageError('--port applies to --start only', 'add --start, or start the server yourself with pg_ctl -D <dir> -o "-p <port>" start');
      await withContext(globals(), io, async ({policy, repo}) => {
        if (policy.strategy === 'dump') {
          if (!options.toDb) throw new UsageError(`policy ${policy.name} uses the dump strategy: restore with --to-db <conninfo>`);
          if (options.tablespaceMap) throw new UsageError('--tablespace-map applies to physical backups (--to), not to dumps');
          await restoreDumpCommand(options, target, io, globals, policy, repo);
          return;
        }
        if (!options.to) throw new UsageError(`policy ${policy.name} uses the ${policy.strategy} strategy: restore with --to <dir>`);
        const {checkDestination, layOutDataDirectory, resolveTablespaceMap} = await import('../restore/layout.js');
        // Check everything before writing anything.
        // A manifest that cannot be read (damaged, or failing authentication in an encrypted repository) is said.
        const catalog = await readCatalog(repo, (key, error) => io.stderr.write(`pgbk: warning: backup manifest ${key} skipped: ${error.message}\n`));
        const state = await checkDestination(options.to, Boolean(options.force), {repo, policy, catalog});
        const {prepareRestore} = await import('../restore/prepare.js');
        const {choice, plan} = await prepareRestore(repo, policy, catalog, target, {
          targetTimeline: timeline, backupId: options.backup, commitTimes: target.kind === 'time' || target.kind === 'latest', standby: Boolean(options.standby),
        });
        if (target.kind === 'xid' && !options.standby) {
          const {checkXidReachable} = await import('../restore/xid.js');
          const warning = await checkXidReachable(policy, target, choice.timeline, plan.backup);
          if (warning) plan.warnings.push(warning);
        }
        for (const warning of plan.warnings) io.stderr.write(`pgbk: warning: ${warning}\n`);
        const tablespaces = await resolveTablespaceMap(plan.backup, options.to, options.tablespaceMap ?? []);
        if (!globals().json && !options.standby) io.stdout.write(`timeline: ${choice.timeline} (${choice.reason})\n`);
        if (options.dryRun) {
          renderPlan(plan, options.to, io, globals().json, choice, behaviour, tablespaces);
          return;
        }
        const standby = options.standby ? (await import('../replica/restore.js')).standbyRecovery(policy, options.primaryConninfo, io) : undefined;
        const archiveMode = options.archiveMode ?? 'off';
        const layout = await layOutDataDirectory(repo, policy, plan, options.to, state, {targetTimeline: standby ? 'latest' : String(choice.timeline), archiveMode, behaviour, tablespaces, ...(standby ? {standby} : {})});
        let started;
        let logical: string | null = null;
        if (options.start) {
          const {startRestored} = await import('../restore/start.js');
          started = await startOnPort(port, (chosen) => startRestored({
            dataDir: layout.dataDir, port: chosen, binDir: policy.postgres.binDir, timeoutMs: timeoutSeconds * 1000,
            action: target.kind === 'latest' ? 'promote' : behaviour.action, url: policy.postgres.url,
          }), port === undefined ? (chosen) => {
            if (!globals().json) io.stdout.write(`port: ${chosen} (free on 127.0.0.1; give --port to choose)\n`);
          } : undefined);
          // Subscriptions can be disabled only on a promoted server; paused, it keeps max_logical_replication_workers = 0.
          if (started.state === 'promoted') logical = await keepLogicalReplicationOff(policy.postgres.url, started.port, io);
          else if (started.state === 'paused') {
            io.stderr.write('pgbk: warning: paused in recovery with max_logical_replication_workers = 0 until restarted; before promoting and restarting it, ' +
              'see "Logical replication" in the README (its subscriptions would reconnect to the publisher)\n');
          }
        }
        if (globals().json) {
          printJson(io, {backup: plan.backup.id, target: targetToJson(target), targetAction: target.kind === 'latest' ? 'promote' : behaviour.action, targetExclusive: behaviour.exclusive, timeline: standby ? null : {timeline: choice.timeline, reason: choice.reason}, archiveMode, dataDir: layout.dataDir, fetchedBytes: layout.fetchedBytes, fetchMs: layout.fetchMs, started: started ?? null, logicalReplication: logical,
            ...(standby ? {standby: {primaryConninfo: standby.primaryConninfoShown}} : {})});
          return;
        }
        io.stdout.write(`restored backup ${plan.backup.id} into ${layout.dataDir} (${formatBytes(layout.fetchedBytes)} in ${(layout.fetchMs / 1000).toFixed(1)}s)\n`);
        if (standby) {
          io.stdout.write(`standby of ${standby.primaryConninfoShown}: start it with: pg_ctl -D ${layout.dataDir} -o "-p <port>" start   (it restores archived WAL, then streams from the primary)\n`);
          return;
        }
        io.stdout.write(`target: ${describeTarget(target)}\n`);
        io.stdout.write(archiveMode === 'off'
          ? 'archiving: off (a side copy: it never archives into the repository; give --archive-mode preserve for a replacement primary)\n'
          : 'archiving: preserve (once promoted, the server archives its new timeline into the repository)\n');
        if (started) {
          io.stdout.write(started.state === 'promoted'
            ? `server started on port ${started.port} and promoted${started.newTimeline ? ` on timeline ${started.newTimeline}` : ''}\n`
            : started.state === 'paused'
              ? `server started on port ${started.port}, paused at the target, in recovery (read-only): inspect it, then select pg_wal_replay_resume() to promote it, or stop it\n`
              : `server shut down at the target (pg_control: shut down in recovery); recovery.signal stays: the next start replays to the target again\n`);
          if (started.stoppedAt) io.stdout.write(`point reached: ${started.stoppedAt}\n`);
          if (started.replayedTo) io.stdout.write(`WAL replayed up to ${started.replayedTo}\n`);
          if (started.lastTransactionAt) io.stdout.write(`last replayed transaction: ${started.lastTransactionAt}\n`);
          if (started.redoDoneAt) io.stdout.write(`redo done at ${started.redoDoneAt}\n`);
          if (logical) io.stdout.write(`logical replication: ${logical}\n`);
        } else {
          io.stdout.write(`start it with: pg_ctl -D ${layout.dataDir} -o "-p <port> -c max_logical_replication_workers=0" start   (it replays WAL to the target and ${actionWords(target.kind === 'latest' ? 'promote' : behaviour.action)}; ` +
            'no subscription runs: see "Logical replication" in the README before enabling them)\n');
        }
      });
    });
}

/** What the server does at the target, in words. */
function actionWords(action: TargetBehaviour['action']): string {
  return action === 'promote' ? 'promotes' : action === 'pause' ? 'pauses there, in recovery' : 'shuts down there';
}

/** --start on the given port, or on a free loopback port (the restored server listens on 127.0.0.1 only). */
async function startOnPort<T>(given: number | undefined, start: (port: number) => Promise<T>, announce?: (port: number) => void): Promise<T> {
  if (given !== undefined) return start(given);
  const {freeLoopbackPort} = await import('../util/net.js');
  const port = await freeLoopbackPort();
  announce?.(port);
  return start(port);
}

function renderPlan(plan: RestorePlan, to: string, io: Io, json: boolean | undefined, choice: {timeline: number; reason: string}, behaviour: TargetBehaviour,
  tablespaces: Map<string, string> = new Map()): void {
  const action = plan.target.kind === 'latest' ? 'promote' : behaviour.action;
  const value = {
    targetAction: action, targetExclusive: behaviour.exclusive,
    timeline: {timeline: choice.timeline, reason: choice.reason}, warnings: plan.warnings,
    backup: plan.backup.id, backupStopTime: plan.backup.stopTime, backupStopLsn: plan.backup.stopLsn,
    target: targetToJson(plan.target), to, fetchBytes: plan.fetchBytes, walFrom: plan.walFrom, walTo: plan.walTo ?? null,
    ...(tablespaces.size > 0 ? {tablespaces: (plan.backup.tablespaces ?? []).map((space) => ({...space, to: tablespaces.get(space.oid)}))} : {}),
  };
  if (json) {
    printJson(io, value);
    return;
  }
  io.stdout.write([
    `plan (dry run, nothing written):`,
    `  backup:  ${plan.backup.id} (consistent from ${plan.backup.stopTime}, LSN ${plan.backup.stopLsn}, timeline ${plan.backup.timeline})`,
    `  fetch:   ${formatBytes(plan.fetchBytes)} of backup into ${to}`,
    `  WAL:     from ${plan.walFrom}${plan.walTo ? ` up to ${plan.walTo} at most` : ''}, fetched by restore_command as recovery needs it`,
    `  target:  ${describeTarget(plan.target)}${behaviour.exclusive ? ' (exclusive: stop just before it)' : ''} along timeline ${choice.timeline}, then ${action}`,
    ...(plan.backup.tablespaces ?? []).map((space) => `  tablespace ${space.name} (oid ${space.oid}): into ${tablespaces.get(space.oid) ?? space.location}`),
    '',
  ].join('\n'));
}

async function restoreDumpCommand(options: RestoreOptions, target: ReturnType<typeof parseTarget>, io: Io, globals: () => GlobalOptions,
  policy: import('../policy/types.js').Policy, repo: import('../storage/repository.js').Repository): Promise<void> {
  if (target.kind !== 'latest' && target.kind !== 'time') {
    throw new TargetError(`a dump can be restored by time only, not to ${describeTarget(target)}`, 'use --target-time or --latest');
  }
  const dumps = (await readCatalog(repo, undefined, catalogScopeOf(policy))).filter((backup) => backup.kind === 'dump');
  if (dumps.length === 0) throw new NothingToRestoreError('the repository holds no dump', 'take one with "pgbk backup"');
  const chosen = options.backup
    ? dumps.find((dump) => dump.id === options.backup)
    : [...dumps].reverse().find((dump) => target.kind === 'latest' || new Date(dump.startTime) <= target.time);
  if (!chosen) {
    throw options.backup
      ? new NothingToRestoreError(`--backup ${options.backup}: no such dump`)
      : new TargetError(`no dump at or before ${describeTarget(target)}: the oldest is from ${dumps[0]!.startTime}`);
  }
  if (options.dryRun) {
    const plan = {backup: chosen.id, startTime: chosen.startTime, toDb: redactUrl(options.toDb!), fetchBytes: chosen.storedBytes};
    if (globals().json) printJson(io, plan);
    else io.stdout.write(`plan (dry run, nothing written): restore dump ${chosen.id} (database as of ${chosen.startTime}, ${formatBytes(chosen.storedBytes)}) into ${plan.toDb}\n`);
    return;
  }
  const {restoreDump} = await import('../backup/dump.js');
  const result = await restoreDump({policy, repo, backup: chosen, toDb: options.toDb!});
  // pg_restore creates a subscriber's subscriptions disabled but naming the publisher's slot: detach them.
  const [{withClient}, {detachDatabaseSubscriptions}] = await Promise.all([import('../pg/client.js'), import('../restore/logical.js')]);
  const detached = await withClient(options.toDb!, (client) => detachDatabaseSubscriptions(client, {drop: false}));
  if (globals().json) printJson(io, {backup: chosen.id, startTime: chosen.startTime, toDb: redactUrl(options.toDb!), bytes: result.bytes, detachedSubscriptions: detached});
  else {
    io.stdout.write(`restored dump ${chosen.id} (database as of ${chosen.startTime}) into ${redactUrl(options.toDb!)}\n`);
    if (detached.length > 0) io.stdout.write(`logical replication: subscriptions ${detached.join(', ')} disabled and detached from the publisher's slot (see "Logical replication" in the README)\n`);
  }
}

/** restore --start: the copy's subscriptions disabled and detached, its slots dropped; what was done, or a warning. */
async function keepLogicalReplicationOff(policyUrl: string, port: number, io: Io): Promise<string | null> {
  const {neutraliseRestored, describeNeutralised} = await import('../restore/logical.js');
  try {
    const result = await neutraliseRestored(policyUrl, port);
    return result.subscriptions.length > 0 || result.droppedSlots.length > 0 ? describeNeutralised(result) : null;
  } catch (error) {
    io.stderr.write(`pgbk: warning: cannot disable the restored server's subscriptions (${(error as Error).message}); it runs with ` +
      'max_logical_replication_workers = 0 until restarted: in each database run ALTER SUBSCRIPTION <name> DISABLE and ' +
      'ALTER SUBSCRIPTION <name> SET (slot_name = NONE) before restarting it\n');
    return null;
  }
}
