// Flat memory for long streams. Streamed data lives in Buffers that become garbage as soon as they have passed;
// V8 collects them only when its young generation fills (tens of MB by default on 64-bit) or when outside-heap
// memory has grown by 64 MB since the last full collection. On a stream of many GB the peak RSS is then mostly
// garbage waiting to be collected. A young-generation collection every 16 MiB streamed (about a millisecond: what
// survives is a few buffers) and a full one every 32 MiB (buffers held a while get promoted; only a full collection
// frees those) keep it flat.

import v8 from 'node:v8';
import vm from 'node:vm';

type GcFunction = (options?: {type?: 'minor' | 'major'; execution?: 'sync' | 'async'}) => void;

let gcFunction: GcFunction | null | undefined;

/** V8's gc(), obtained without a command-line flag; null when this runtime does not allow it. */
function gc(): GcFunction | null {
  if (gcFunction !== undefined) return gcFunction;
  try {
    v8.setFlagsFromString('--expose-gc');
    gcFunction = vm.runInNewContext('gc') as GcFunction;
  } catch {
    gcFunction = null;
  } finally {
    v8.setFlagsFromString('--no-expose-gc');
  }
  return gcFunction;
}

const MINOR_EVERY = 16 * 1024 * 1024;
const MAJOR_EVERY = 32 * 1024 * 1024;

/** Returns `passed(bytes)`, to call as data streams through: it collects garbage every so many bytes. */
export function streamGarbageCollector(): (bytes: number) => void {
  const collect = gc();
  if (!collect) return () => undefined;
  let sinceMinor = 0;
  let sinceMajor = 0;
  return (bytes: number) => {
    sinceMinor += bytes;
    sinceMajor += bytes;
    if (sinceMajor >= MAJOR_EVERY) {
      sinceMajor = 0;
      sinceMinor = 0;
      collect({type: 'major'});
    } else if (sinceMinor >= MINOR_EVERY) {
      sinceMinor = 0;
      collect({type: 'minor'});
    }
  };
}
