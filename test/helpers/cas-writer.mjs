// Child process for the repository contract: races other processes on one key through the built driver
// (dist/). argv: JSON {config, key, mode: 'increment' | 'create', count, id}. Prints a JSON summary.
//   increment: `count` times read the counter with its version and put counter+1 with ifMatch, retrying
//              on PreconditionFailedError (a lost race) — a lost update would show in the final count;
//   create:    one put of `id` with ifNoneMatch '*'; prints whether it won.
import {openRepository} from '../../dist/storage/open.js';

const {config, key, mode, count, id, startAt} = JSON.parse(process.argv[2]);
const repo = await openRepository(config);
// Start together: the parent gives a wall-clock instant a little ahead.
await new Promise((resolve) => setTimeout(resolve, Math.max(0, startAt - Date.now())));
const result = {id, wins: 0, retries: 0};
try {
  if (mode === 'create') {
    try {
      await repo.put(key, Buffer.from(id), {ifNoneMatch: '*'});
      result.wins = 1;
    } catch (error) {
      if (error?.code !== 'repo.precondition-failed') throw error;
    }
  } else {
    for (let done = 0; done < count;) {
      const {body, version} = await repo.getVersioned(key);
      const value = JSON.parse(body.toString('utf8'));
      try {
        await repo.put(key, Buffer.from(JSON.stringify({n: value.n + 1, last: id})), {ifMatch: version});
        done++;
        result.wins++;
      } catch (error) {
        if (error?.code !== 'repo.precondition-failed') throw error;
        result.retries++;
      }
    }
  }
} finally {
  await repo.close();
}
process.stdout.write(`${JSON.stringify(result)}\n`);
