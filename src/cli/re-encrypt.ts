// pgbk re-encrypt: key rotation of an encrypted repository (see README, "Encryption").

import type {Command} from 'commander';
import {UsageError} from '../errors.js';
import {printJson, withContext, type GlobalOptions, type Io} from './context.js';

export function registerReEncryptCommand(program: Command, io: Io, globals: () => GlobalOptions): void {
  program.command('re-encrypt')
    .description('key rotation: make repository.encryption.key the repository\'s key and rewrite every object still under one of repository.encryption.old_keys')
    .action(async () => {
      await withContext(globals(), io, async ({policy, repo}) => {
        const {EncryptedRepository} = await import('../storage/encrypted-repository.js');
        if (!(repo instanceof EncryptedRepository)) {
          throw new UsageError(`policy ${policy.name} sets no repository.encryption: there is nothing to re-encrypt`);
        }
        const {reEncrypt} = await import('../storage/re-encrypt.js');
        const result = await reEncrypt(repo, globals().verbose ? (line) => io.stderr.write(`pgbk: ${line}\n`) : undefined);
        if (globals().json) {
          printJson(io, result);
        } else {
          io.stdout.write(`${result.adopted ? 'the repository\'s key is now repository.encryption.key' : 'repository.encryption.key was the repository\'s key already'} (key id ${result.keyId}); `
            + `${result.rewritten} object(s) re-encrypted, ${result.current} under it already\n`);
          if (result.skipped.length > 0) {
            io.stdout.write(`${result.skipped.length} object(s) changed while being rewritten (${result.skipped.slice(0, 3).join(', ')}): run "pgbk re-encrypt" again; keep old_keys until it reports none\n`);
          } else {
            io.stdout.write('every object is under the key: repository.encryption.old_keys may be removed from the policy\n');
          }
        }
        if (result.skipped.length > 0) process.exitCode = 1;
      });
    });
}
