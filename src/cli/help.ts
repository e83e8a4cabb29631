// Help text shared by --help, the man page and shell completion: one example (or a few) per command.

import type {Command} from 'commander';

/** Examples per command, shown under "Examples:" in `pgbk <command> --help` and in the man page. */
export const EXAMPLES: Record<string, string[]> = {
  'init': ['pgbk init --policy orders'],
  'archive-push': ["archive_command = 'pgbk archive-push --policy orders %p'    (postgresql.conf)"],
  'archive-command': ['pgbk archive-command --policy orders    (the archive_command line for postgresql.conf)'],
  'archive-get': ["restore_command = 'pgbk archive-get --policy orders %f %p'    (postgresql.conf)"],
  'backup': ['pgbk backup --policy orders', 'pgbk backup --policy /etc/pgbk/policies/orders.yaml --json'],
  'list': ['pgbk list --policy orders', 'pgbk list --policy orders --json'],
  'restore': [
    "pgbk restore --policy orders --target-time '2026-11-26 10:41:00+00' --to /srv/restore --dry-run",
    "pgbk restore --policy orders --target-time '2026-11-26 10:41:00+00' --to /srv/restore --start --port 5499",
    "pgbk restore --policy reports --to-db postgresql://postgres@127.0.0.1/reports_copy --latest",
  ],
  'drill': ['pgbk drill --policy orders', 'pgbk drill --policy orders --latest --json'],
  'expire': ['pgbk expire --policy orders --dry-run', 'pgbk expire --policy orders'],
  'verify': ['pgbk verify --policy orders', 'pgbk verify --policy orders --backup 20261126T020000Z'],
  'check': ['pgbk check --policy orders', 'pgbk check --policies /etc/pgbk/policies --wait 1m'],
  'status': ['pgbk status', 'pgbk status --policy orders --json'],
  'schedule': ['pgbk schedule --policies /etc/pgbk/policies'],
  'demo': ['pgbk demo', 'pgbk demo --keep'],
  'patroni-create-replica': ['pgbk patroni-create-replica --policy app --datadir /var/lib/postgresql/data    (Patroni appends --scope, --role, --connstring)'],
  'completion': ['pgbk completion bash > /etc/bash_completion.d/pgbk', 'pgbk completion zsh > "${fpath[1]}/_pgbk"'],
};

/** Commands that take no policy: their help leaves out the global options (--policy, --policies...). */
export const WITHOUT_POLICY = new Set(['demo', 'completion']);

/** Adds each command's examples after its help. */
export function addExamples(program: Command): void {
  for (const command of program.commands) {
    if (WITHOUT_POLICY.has(command.name())) command.configureHelp({...program.configureHelp(), showGlobalOptions: false});
    const examples = EXAMPLES[command.name()];
    if (examples) command.addHelpText('after', `\nExamples:\n${examples.map((line) => `  ${line}`).join('\n')}\n`);
  }
  program.addHelpText('after', '\nRun "pgbk <command> --help" for the options of a command; "man pgbk" for the whole manual.\n' +
    'Exit codes: 0 done, 1 the work failed or a check found a problem, 2 bad input (nothing changed).\n');
}
