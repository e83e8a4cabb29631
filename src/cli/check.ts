// pgbk check: validate the policy file (exit 2 when invalid, like nginx -t), then check that the server and the
// repository suit it, one line per check with what to fix. Every policy in the policies dir without --policy.

import type {Command} from 'commander';
import {PolicyError} from '../errors.js';
import {durationFlag} from './options.js';
import {openRepository} from '../storage/open.js';
import type {CheckResult} from '../status/check.js';
import {printJson, type GlobalOptions, type Io} from './context.js';
import {loadPolicies} from './status.js';

export function registerCheckCommand(program: Command, io: Io, globals: () => GlobalOptions): void {
  program.command('check')
    .description("validate the policy file, then check the server's settings and the repository suit it; say what to fix (exit 1 when a check fails)")
    .option('--wait <duration>', 'how long the archive round trip waits for the switched segment (30s, 2m...)', '30s')
    .action(async (opts: {wait: string}) => {
      const waitSeconds = durationFlag('--wait', opts.wait, {minSeconds: 1});
      const json = Boolean(globals().json);
      const {runChecks, CheckFailedError} = await import('../status/check.js');
      const {loaded} = await loadPolicies(globals(), io);
      // Like nginx -t: any invalid file is bad input, reported before anything connects anywhere.
      const invalid = loaded.filter((entry) => !entry.ok);
      if (invalid.length > 0) {
        throw new PolicyError(invalid.map((entry) => entry.error.message).join('\n'), invalid.length === 1 ? invalid[0]!.error.hint : undefined)
          .withReport({policies: invalid.map((entry) => ({policy: entry.name, file: entry.file, ok: false, error: entry.error.message}))});
      }
      const reports: Array<{policy: string; file: string; strategy: string; ok: boolean; checks: CheckResult[]}> = [];
      for (const entry of loaded) {
        if (!entry.ok) continue;
        const {policy} = entry;
        if (!json) io.stdout.write(`${loaded.length > 1 ? '\n' : ''}${policy.name} (${policy.strategy}, ${policy.file})\n`);
        const repo = await openRepository(policy.repository);
        try {
          const checks = await runChecks(policy, repo, {waitSeconds, onResult: json ? undefined : (result) => io.stdout.write(renderCheck(result))});
          reports.push({policy: policy.name, file: policy.file, strategy: policy.strategy, ok: checks.every((check) => check.status !== 'fail'), checks});
        } finally {
          await repo.close();
        }
      }
      const failed = reports.flatMap((report) => report.checks.filter((check) => check.status === 'fail').map((check) => `${report.policy}: ${check.name}`));
      if (failed.length > 0) {
        throw new CheckFailedError(`${failed.length} ${failed.length === 1 ? 'check' : 'checks'} failed: ${failed.join(', ')}`, 'each failed check above says what to fix')
          .withReport({policies: reports});
      }
      if (json) printJson(io, {ok: true, policies: reports});
    });
}

export function renderCheck(result: CheckResult): string {
  const label = {ok: 'ok  ', fail: 'FAIL', skip: 'skip'}[result.status];
  return `${label}  ${result.name.padEnd(18)} ${result.detail}\n${result.fix ? `      fix: ${result.fix}\n` : ''}`;
}
