#!/usr/bin/env node
// Writes man/pgbk.1 from the command definitions (npm run man, after a build). test/unit/cli keeps it current.
import {writeFileSync} from 'node:fs';
import {fileURLToPath} from 'node:url';
import {buildProgram, registrations, VERSION} from '../dist/main.js';
import {renderMan} from '../dist/cli/man.js';

const io = {env: process.env, cwd: process.cwd(), stdout: process.stdout, stderr: process.stderr, now: () => new Date()};
const program = buildProgram(io, await registrations());
const file = fileURLToPath(new URL('../man/pgbk.1', import.meta.url));
writeFileSync(file, renderMan(program, VERSION));
process.stdout.write(`wrote ${file}\n`);
