// Everything a restore (or drill) decides before it writes: the branch of timelines it follows, the recoverable
// window along that branch, and the plan, checked against the window of the backup it actually uses.

import type {BackupManifest} from '../backup/manifest.js';
import type {Policy} from '../policy/types.js';
import type {Repository} from '../storage/repository.js';
import {describeGap, planRestore, type RestorePlan} from './plan.js';
import type {Target} from './target.js';
import {chooseTimeline, scanTimelines, type TimelineChoice} from './timelines.js';
import {computeWindow, type RecoverableWindow} from './window.js';

export interface PreparedRestore {
  choice: TimelineChoice;
  window: RecoverableWindow;
  plan: RestorePlan;
}

export interface PrepareOptions {
  /** --target-timeline as given (undefined: not given). */
  targetTimeline?: string;
  backupId?: string;
  /** Read commit times (time targets, and the last reachable time named at a gap). */
  commitTimes: boolean;
  /** restore --standby: a gap is no refusal (the standby streams what the archive lacks from the primary). */
  standby?: boolean;
}

/** The policy's server, asked (briefly) which timeline it is on. */
export function askPolicyServer(policy: Policy): {url: string; ask: () => Promise<{timeline: number; systemId: string}>} {
  return {
    url: policy.postgres.url,
    ask: async () => {
      const [{withClient}, {currentTimeline}] = await Promise.all([import('../pg/client.js'), import('../pg/queries.js')]);
      return withClient(policy.postgres.url, currentTimeline, {connectTimeoutMs: 3000});
    },
  };
}

export async function chooseBranchAndWindow(repo: Repository, policy: Policy, catalog: BackupManifest[], options: Omit<PrepareOptions, 'commitTimes'> & {commitTimes: boolean}):
  Promise<{choice: TimelineChoice; window: RecoverableWindow}> {
  const timelines = await scanTimelines(repo);
  const choice = await chooseTimeline(timelines, {requested: options.targetTimeline, catalog, backupId: options.backupId, server: askPolicyServer(policy)});
  const window = await computeWindow(repo, catalog, {binDir: policy.postgres.binDir, commitTimes: options.commitTimes, branch: choice.branch});
  return {choice, window};
}

export async function prepareRestore(repo: Repository, policy: Policy, catalog: BackupManifest[], target: Target, options: PrepareOptions): Promise<PreparedRestore> {
  const {choice, window} = await chooseBranchAndWindow(repo, policy, catalog, options);
  if (options.standby && window.gap) {
    const plan = planRestore(catalog, target, {backupId: options.backupId, window: {...window, gap: undefined}});
    plan.warnings.push(`the WAL archive has a gap: ${describeGap(window.gap)}; the standby needs its primary to still hold that WAL (streaming), or it stops there`);
    return {choice, window, plan};
  }
  let plan = planRestore(catalog, target, {backupId: options.backupId, window});
  if (plan.backup.id === window.fromBackup) return {choice, window, plan};
  // An older backup: its own WAL run decides (a gap between it and the newest backup cuts it short).
  const own = await computeWindow(repo, [plan.backup], {binDir: policy.postgres.binDir, commitTimes: options.commitTimes, branch: choice.branch});
  plan = planRestore(catalog, target, {backupId: plan.backup.id, window: own});
  return {choice, window: own, plan};
}
