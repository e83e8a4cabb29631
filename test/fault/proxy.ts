// A fault-injecting HTTP proxy on 127.0.0.1 in front of the suite's S3 endpoint. Policies point
// `repository.endpoint` at it; the Host header is passed through unchanged, so SigV4 signatures stay valid.
//
// Faults are injected by rules: a rule matches requests by method, object key (the decoded path below the
// bucket), query string, and fires on the nth match (and the `times - 1` matches after it). What it does:
//   '503' | '500'        answer with an S3 error document (SlowDown / InternalError); the request never reaches S3
//   'reset-request'      read `afterBytes` of the request body (default: half), then drop the connection; S3 never
//                        sees a complete request
//   'reset-response'     forward the request, then drop the connection after `afterBytes` of the response body
//                        (default: half): S3 did the work (a PUT is stored), the client never hears about it
//   'stall-request'      forward the headers and `afterBytes` of the body (default: half) to S3, then hold the
//                        request: S3 sees an upload in progress. After `ms` (default: until release()/close) the
//                        connection is dropped; when the client goes away first, the upstream request is aborted.
//                        afterBytes < 0: S3 sees nothing at all (the request is held before it is forwarded)
//   'stall-response'     forward the request, wait for S3's answer, then hold it (S3 has done the work) after
//                        `afterBytes` of the body (default 0); dropped after `ms`, or on release()/close
//   'truncate'           forward; send S3's headers (Content-Length unchanged) and half the body, then close
//   'short'              forward; send half the body with a Content-Length that matches it (and no ETag/MD5):
//                        the HTTP exchange looks complete, only a checksum can tell
//   'corrupt'            forward; flip bytes in the middle of the body, length unchanged
// Every rule's `hit` promise resolves when it first fires (for stalls: once the request is held), so a test
// can wait for a process to reach a given request and kill it there — no sleeps as synchronisation.
import {createServer, request as httpRequest, type IncomingHttpHeaders, type IncomingMessage, type Server, type ServerResponse} from 'node:http';
import type {Socket} from 'node:net';

export type FaultKind =
  | '503' | '500'
  | 'reset-request' | 'reset-response'
  | 'stall-request' | 'stall-response'
  | 'truncate' | 'short' | 'corrupt';

export interface FaultRule {
  fault: FaultKind;
  /** HTTP method, e.g. 'PUT', 'GET', 'HEAD', 'POST', 'DELETE'. */
  method?: string;
  /** Matched against the object key (path below the bucket, decoded; '' for bucket-level requests). */
  key?: RegExp | string;
  /** Matched against the raw query string (without '?'), e.g. /list-type=2/ or /uploadId=/. */
  query?: RegExp;
  /** The first matching request that fires (1-based, default 1). */
  nth?: number;
  /** How many matching requests fire from the nth on (default 1; Infinity for all). */
  times?: number;
  /** Stalls: drop the connection after this long (default: hold until release() or close()). */
  ms?: number;
  /** Bytes let through before the fault acts (see the fault kinds). */
  afterBytes?: number;
  /** Stalls: what ends the hold does — drop the connection (default) or carry on normally (a slow store). */
  then?: 'drop' | 'deliver';
}

export interface ProxiedRequest {
  method: string;
  key: string;
  query: string;
  fault?: FaultKind;
  /** Status S3 (or the proxy) answered with; undefined when the connection was dropped before an answer. */
  status?: number;
}

export interface Injection {
  readonly rule: FaultRule;
  /** Matching requests seen so far (fired or not). */
  readonly matched: number;
  /** Requests this rule acted on. */
  readonly fired: number;
  /** Requests this rule holds right now (stalls); release() ends them. */
  readonly holding: number;
  /** Resolves with the request the first time the rule fires (stalls: once the request is being held). */
  readonly hit: Promise<ProxiedRequest>;
  /** Stop matching (stalls in progress stay held until release()). */
  remove(): void;
}

export interface FaultProxy {
  readonly endpoint: string;
  /** Stripped from object keys before rules see them (a repository's prefix in the bucket, ending in '/'). */
  keyPrefix: string;
  readonly requests: ProxiedRequest[];
  inject(rule: FaultRule): Injection;
  /** Remove every rule. */
  clear(): void;
  /** Drop every held (stalled) connection now. */
  release(): void;
  /** Requests since index `from` as "METHOD key fault" strings (for messages and assertions). */
  since(from: number): string[];
  close(): Promise<void>;
}

const ERROR_XML: Record<'503' | '500', string> = {
  '503': '<Code>SlowDown</Code><Message>Please reduce your request rate.</Message>',
  '500': '<Code>InternalError</Code><Message>We encountered an internal error. Please try again.</Message>',
};

class RuleState implements Injection {
  matched = 0;
  fired = 0;
  holding = 0;
  removed = false;
  readonly hit: Promise<ProxiedRequest>;
  resolveHit!: (request: ProxiedRequest) => void;

  constructor(readonly rule: FaultRule) {
    this.hit = new Promise((resolve) => (this.resolveHit = resolve));
  }

  remove(): void {
    this.removed = true;
  }

  matches(method: string, key: string, query: string): boolean {
    if (this.removed) return false;
    if (this.rule.method && this.rule.method.toUpperCase() !== method) return false;
    if (this.rule.key !== undefined) {
      const ok = typeof this.rule.key === 'string' ? key.includes(this.rule.key) : this.rule.key.test(key);
      if (!ok) return false;
    }
    if (this.rule.query && !this.rule.query.test(query)) return false;
    return true;
  }

  /** Counts a match; true when this one fires. */
  take(): boolean {
    this.matched++;
    const first = this.rule.nth ?? 1;
    const last = first + (this.rule.times ?? 1) - 1;
    if (this.matched < first || this.matched > last) return false;
    this.fired++;
    return true;
  }
}

/** The object key of a path-style request: /bucket/a/b → 'a/b'; virtual-host style is not used by the suite. */
function keyOf(path: string): string {
  const decoded = decodeURIComponent(path);
  const slash = decoded.indexOf('/', 1);
  return slash < 0 ? '' : decoded.slice(slash + 1);
}

export async function startFaultProxy(upstream: string): Promise<FaultProxy> {
  const target = new URL(upstream);
  const rules: RuleState[] = [];
  const sockets = new Set<Socket>();
  const held = new Set<() => void>();
  const requests: ProxiedRequest[] = [];

  const server: Server = createServer((req, res) => {
    const method = (req.method ?? 'GET').toUpperCase();
    const [path = '/', query = ''] = (req.url ?? '/').split('?', 2) as [string, string?];
    const fullKey = keyOf(path);
    const key = proxy.keyPrefix && fullKey.startsWith(proxy.keyPrefix) ? fullKey.slice(proxy.keyPrefix.length) : fullKey;
    const record: ProxiedRequest = {method, key, query};
    requests.push(record);
    let fired: RuleState | undefined;
    for (const rule of rules) {
      if (rule.matches(method, key, query) && rule.take()) {
        fired = rule;
        break;
      }
    }
    res.on('finish', () => (record.status ??= res.statusCode));
    if (!fired) {
      forward(req, res, record, undefined);
      return;
    }
    record.fault = fired.rule.fault;
    act(fired, req, res, record);
  });

  const dropClient = (req: IncomingMessage, res: ServerResponse) => {
    res.destroy();
    req.socket.destroy();
  };

  /** Holds until ms elapse or release(); then `onEnd` (default: drop the client connection). */
  const hold = (state: RuleState, req: IncomingMessage, res: ServerResponse, onEnd: () => void, deliver?: () => void) => {
    const rule = state.rule;
    let done = false;
    state.holding++;
    const finish = (how: 'drop' | 'deliver') => {
      if (done) return;
      done = true;
      state.holding--;
      held.delete(release);
      clearTimeout(timer);
      if (how === 'deliver' && deliver) {
        deliver();
        return;
      }
      onEnd();
      dropClient(req, res);
    };
    const release = () => finish(rule.then ?? 'drop');
    held.add(release);
    const timer = rule.ms === undefined ? undefined : setTimeout(release, rule.ms);
    // The client went away (killed): drop, whatever the rule says.
    res.once('close', () => finish('drop'));
  };

  function act(state: RuleState, req: IncomingMessage, res: ServerResponse, record: ProxiedRequest): void {
    const rule = state.rule;
    switch (rule.fault) {
      case '503':
      case '500': {
        req.resume();
        req.on('end', () => {
          record.status = Number(rule.fault);
          res.writeHead(Number(rule.fault), {'content-type': 'application/xml'});
          res.end(req.method === 'HEAD' ? undefined
            : `<?xml version="1.0" encoding="UTF-8"?>\n<Error>${ERROR_XML[rule.fault as '503' | '500']}<RequestId>fault-proxy</RequestId></Error>`);
          state.resolveHit(record);
        });
        return;
      }
      case 'reset-request': {
        const length = Number(req.headers['content-length'] ?? 0);
        const limit = rule.afterBytes ?? Math.floor(length / 2);
        let seen = 0;
        const cut = () => {
          state.resolveHit(record);
          dropClient(req, res);
        };
        if (limit <= 0) return cut();
        req.on('data', (chunk: Buffer) => {
          seen += chunk.length;
          if (seen >= limit) cut();
        });
        req.on('end', cut);
        return;
      }
      case 'stall-request': {
        if ((rule.afterBytes ?? 0) < 0) {
          req.pause();
          hold(state, req, res, () => undefined);
          state.resolveHit(record);
          return;
        }
        const length = Number(req.headers['content-length'] ?? 0);
        const limit = rule.afterBytes ?? Math.floor(length / 2);
        const upstreamReq = httpRequest({host: target.hostname, port: target.port, method: req.method, path: req.url, headers: forwardHeaders(req.headers)});
        upstreamReq.on('error', () => undefined);
        upstreamReq.on('response', (upstreamRes) => upstreamRes.resume());
        let sent = 0;
        let holding = false;
        const startHold = () => {
          if (holding) return;
          holding = true;
          req.pause();
          hold(state, req, res, () => upstreamReq.destroy());
          state.resolveHit(record);
        };
        if (limit <= 0) {
          upstreamReq.flushHeaders();
          startHold();
          return;
        }
        req.on('data', (chunk: Buffer) => {
          if (holding) return;
          const room = limit - sent;
          const part = chunk.length > room ? chunk.subarray(0, room) : chunk;
          upstreamReq.write(part);
          sent += part.length;
          if (sent >= limit) startHold();
        });
        req.on('end', startHold);
        return;
      }
      default:
        forward(req, res, record, state);
    }
  }

  function forward(req: IncomingMessage, res: ServerResponse, record: ProxiedRequest, state: RuleState | undefined): void {
    const upstreamReq = httpRequest(
      {host: target.hostname, port: target.port, method: req.method, path: req.url, headers: forwardHeaders(req.headers)},
      (upstreamRes) => {
        const status = upstreamRes.statusCode ?? 502;
        const fault = state?.rule.fault;
        if (!state || fault === undefined || !['reset-response', 'stall-response', 'truncate', 'short', 'corrupt'].includes(fault)) {
          res.writeHead(status, upstreamRes.headers);
          upstreamRes.pipe(res);
          return;
        }
        // Buffer the answer (S3 answers of the suite are small enough), then misbehave.
        const chunks: Buffer[] = [];
        upstreamRes.on('data', (chunk: Buffer) => chunks.push(chunk));
        upstreamRes.on('error', () => dropClient(req, res));
        upstreamRes.on('end', () => {
          const body = Buffer.concat(chunks);
          const rule = state.rule;
          const half = Math.floor(body.length / 2);
          if (fault === 'reset-response') {
            state.resolveHit(record);
            const upTo = Math.min(rule.afterBytes ?? half, body.length);
            if (upTo <= 0 && body.length === 0) return dropClient(req, res);
            res.writeHead(status, upstreamRes.headers);
            res.write(body.subarray(0, upTo), () => dropClient(req, res));
            return;
          }
          if (fault === 'stall-response') {
            const upTo = Math.min(rule.afterBytes ?? 0, body.length);
            if (upTo > 0) {
              res.writeHead(status, upstreamRes.headers);
              res.write(body.subarray(0, upTo));
            }
            hold(state, req, res, () => undefined, () => {
              if (upTo === 0) res.writeHead(status, upstreamRes.headers);
              res.end(body.subarray(upTo));
            });
            state.resolveHit(record);
            return;
          }
          if (fault === 'truncate') {
            res.writeHead(status, upstreamRes.headers);
            state.resolveHit(record);
            res.write(body.subarray(0, half), () => dropClient(req, res));
            return;
          }
          if (fault === 'short') {
            const headers: Record<string, string | string[] | undefined> = {...upstreamRes.headers, 'content-length': String(half)};
            delete headers.etag;
            delete headers['content-md5'];
            res.writeHead(status, headers);
            res.end(body.subarray(0, half));
            state.resolveHit(record);
            return;
          }
          // corrupt
          const damaged = Buffer.from(body);
          for (let at = half; at < Math.min(damaged.length, half + 64); at++) damaged[at] = damaged[at]! ^ 0x5a;
          res.writeHead(status, upstreamRes.headers);
          res.end(damaged);
          state.resolveHit(record);
        });
      },
    );
    upstreamReq.on('error', () => dropClient(req, res));
    // A client that goes away (killed) aborts the upstream request too, as a real connection loss would.
    res.once('close', () => {
      if (!res.writableFinished) upstreamReq.destroy();
    });
    req.pipe(upstreamReq);
  }

  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;

  const proxy: FaultProxy = {
    endpoint: `http://127.0.0.1:${port}`,
    keyPrefix: '',
    requests,
    inject(rule) {
      const state = new RuleState(rule);
      rules.push(state);
      return state;
    },
    clear() {
      for (const rule of rules.splice(0)) rule.remove();
    },
    release() {
      for (const end of [...held]) end();
    },
    since(from) {
      return requests.slice(from).map((request) => `${request.method} ${request.key}${request.query ? `?${request.query}` : ''} ${request.fault ?? request.status ?? '-'}`);
    },
    close() {
      for (const end of [...held]) end();
      for (const socket of sockets) socket.destroy();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  return proxy;
}

function forwardHeaders(headers: IncomingHttpHeaders): IncomingHttpHeaders {
  const copy = {...headers};
  delete copy.expect; // this server already answered "100 Continue"
  return copy;
}
