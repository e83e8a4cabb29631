// Reads commit times out of archived segments with pg_waldump: the newest commit in the archive is the latest
// moment a time target can reach (PostgreSQL needs a commit at or after the target to stop there).

import {mkdtemp, rm} from 'node:fs/promises';
import {tmpdir} from 'node:os';
import {join} from 'node:path';
import {runPg} from '../pg/run.js';
import type {Repository} from '../storage/repository.js';
import type {ArchivedWalFile} from './archive.js';
import {getWalFile} from './get.js';

export interface CommitInfo {
  time: Date;
  xid: string;
}

const COMMIT_RE = /tx:\s+(\d+), lsn: [0-9A-F]+\/[0-9A-F]+, prev [0-9A-F]+\/[0-9A-F]+, desc: (?:COMMIT|ABORT)(?:_PREPARED)? (\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(?:\.\d+)?) UTC/;

/** The last commit (or abort) record in one archived segment, or undefined when it holds none. */
export async function lastCommitInSegment(repo: Repository, segment: ArchivedWalFile, binDir: string | undefined): Promise<CommitInfo | undefined> {
  const dir = await mkdtemp(join(tmpdir(), 'pgbk-waldump-'));
  try {
    await getWalFile(repo, segment.walFile, join(dir, segment.walFile));
    let output: string;
    try {
      ({stdout: output} = await runPg('pg_waldump', ['--rmgr=Transaction', join(dir, segment.walFile)], {binDir, env: {TZ: 'UTC'}}));
    } catch (error) {
      // pg_waldump exits non-zero at the end of valid WAL in a partly filled segment; what it printed still counts.
      output = String((error as {cause?: {stdout?: unknown}}).cause?.stdout ?? '');
    }
    let last: CommitInfo | undefined;
    for (const line of output.split('\n')) {
      const match = COMMIT_RE.exec(line);
      if (match) last = {xid: match[1]!, time: new Date(`${match[2]!.replace(' ', 'T')}Z`)};
    }
    return last;
  } finally {
    await rm(dir, {recursive: true, force: true});
  }
}
