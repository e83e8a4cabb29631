// Runs s3rver in its own process for the integration tests (started by global-setup.ts).
//
// Why a child process: s3rver 3.7.1 encrypts ListObjectsV2 continuation tokens with DES, which
// OpenSSL 3 (Node >= 17) refuses ("digital envelope routines::unsupported"), so every truncated
// listing answers 500. The token only has to round-trip through this same server, so when DES is
// unavailable we swap in an identity cipher here, without touching the test process's crypto.
//
// Second s3rver bug patched here: DeleteObjects deletes its keys concurrently and each delete then
// removes now-empty parent directories, so two keys under one prefix race (readdir/rmdir ENOENT or
// ENOTEMPTY) and the request fails with 500 although every object was deleted.
//
// argv[2]: JSON {directory, bucket, address?, port?}. Prints one JSON line {address, port} on
// stdout once listening. Exits when stdin closes (the parent died) or on SIGTERM/SIGINT.
import crypto from 'node:crypto';
import {createRequire} from 'node:module';

const require = createRequire(import.meta.url);

function desWorks() {
  try {
    crypto.createCipheriv('des', Buffer.alloc(8), Buffer.alloc(8));
    return true;
  } catch {
    return false;
  }
}

if (!desWorks()) {
  const identity = () => ({update: (data) => Buffer.from(data), final: () => Buffer.alloc(0)});
  const {createCipheriv, createDecipheriv} = crypto;
  crypto.createCipheriv = (algorithm, ...rest) =>
    algorithm === 'des' ? identity() : createCipheriv(algorithm, ...rest);
  crypto.createDecipheriv = (algorithm, ...rest) =>
    algorithm === 'des' ? identity() : createDecipheriv(algorithm, ...rest);
}

const S3rver = require('s3rver');
const FilesystemStore = require('s3rver/lib/stores/filesystem');

const deleteObject = FilesystemStore.prototype.deleteObject;
FilesystemStore.prototype.deleteObject = async function patchedDeleteObject(...args) {
  try {
    return await deleteObject.apply(this, args);
  } catch (err) {
    // The object files are gone (unlink ignores ENOENT itself); only the directory cleanup raced.
    if (err?.code === 'ENOENT' || err?.code === 'ENOTEMPTY') return undefined;
    throw err;
  }
};

// Third: s3rver lists keys in directory-walk order (readdir order, and "a/1" before "a-1" because "a/" is
// walked as a directory), S3 in UTF-8 byte order. List everything under the prefix, sort, then apply
// startAfter/delimiter/maxKeys the way the original does (maxKeys counts keys; the last key is the
// continuation point).
const byteOrder = (a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b));
const listObjects = FilesystemStore.prototype.listObjects;
FilesystemStore.prototype.listObjects = async function sortedListObjects(bucket, listOptions) {
  const {delimiter = '', startAfter = '', prefix = '', maxKeys = Infinity} = listOptions;
  const all = await listObjects.call(this, bucket, {prefix});
  const commonPrefixes = new Set();
  const objects = [];
  let isTruncated = false;
  for (const object of all.objects.sort((a, b) => byteOrder(a.key, b.key))) {
    if (byteOrder(object.key, startAfter) <= 0) continue;
    const idx = delimiter ? object.key.indexOf(delimiter, prefix.length) : -1;
    if (idx !== -1) {
      commonPrefixes.add(object.key.slice(0, idx + delimiter.length));
      continue;
    }
    if (objects.length < maxKeys) {
      objects.push(object);
    } else {
      isTruncated = true;
      break;
    }
  }
  return {objects, commonPrefixes: [...commonPrefixes].sort(byteOrder), isTruncated};
};

const options = JSON.parse(process.argv[2] ?? '{}');
const server = new S3rver({
  address: options.address ?? '127.0.0.1',
  port: options.port ?? 0,
  directory: options.directory,
  silent: true,
  configureBuckets: options.bucket ? [{name: options.bucket}] : [],
});
// s3rver's winston logger still reports some things on the console even when silent.
server.on('error', () => {});

let closing = false;
async function shutdown(code) {
  if (closing) return;
  closing = true;
  const timer = setTimeout(() => process.exit(code), 3000);
  timer.unref();
  try {
    await server.close();
  } catch {
    // not running
  }
  process.exit(code);
}

process.on('SIGTERM', () => shutdown(0));
process.on('SIGINT', () => shutdown(0));
process.stdin.on('end', () => shutdown(0));
process.stdin.on('error', () => shutdown(0));
process.stdin.resume();

try {
  const address = await server.run();
  process.stdout.write(`${JSON.stringify({address: address.address, port: address.port})}\n`);
} catch (err) {
  process.stderr.write(`s3rver failed to start: ${err?.stack ?? err}\n`);
  process.exit(1);
}
