import { createServer, request, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

// An HTTP proxy in front of a real registry that injects faults into chosen requests:
// a 5xx answer, a reset connection, a hang (the request never answers), a delay, a slow
// body, a body with one byte flipped (same length), a connection cut mid-body, a body that
// stops mid-way with the connection left open (a peer stalled), or an endless body (as a hostile or broken registry would send: it never ends). It can
// also stop listening altogether (connections refused) and start again on the same port,
// and it counts how many matching requests are in flight at once.

export type Fault = 'error500' | 'reset' | 'hang' | 'slow' | 'throttle' | 'corrupt' | 'drop' | 'stall' | 'endless';

/**
 * Where an endless body ends anyway (properly, as a complete answer), so that a client that
 * reads without a cap shows it, its memory grown by this much, without taking the shared
 * machine down.
 */
export const ENDLESS_SAFETY_STOP = 256 * 1024 * 1024;

export interface FaultRule {
  /** An HTTP method, or '*' for any. */
  method: string;
  path: RegExp;
  fault: Fault;
  /** How many matching requests get the fault; the rest pass through. */
  times: number;
  /** For 'slow': how long the request is held before it is forwarded. */
  delayMs?: number;
  /** For 'throttle': the answer's body is relayed at this rate. */
  bytesPerSecond?: number;
  /** The share of matching requests that get the fault (1 when absent), drawn from a seeded sequence so runs repeat. */
  probability?: number;
  /** For 'drop' and 'stall': body bytes relayed before the connection is cut, or goes silent (half the Content-Length when absent). */
  afterBytes?: number;
  /** For 'endless': the answer's status (200 when absent) and what its body starts with (then "a" after "a"). */
  status?: number;
  prefix?: string;
}

/** Requests matching a path, counted while they are open (from arrival to the answer's end). */
export interface InFlight {
  readonly now: number;
  readonly peak: number;
}

export interface FaultProxy {
  url: string;
  host: string;
  rules: FaultRule[];
  /** Every request seen, "METHOD path", in order. */
  log: string[];
  /** Every answer forwarded (or made up, for 'endless': the bytes sent until the client hung up): its request, status and body bytes, in order of completion. */
  answers: { request: string; status: number; bytes: number }[];
  /** Every request seen with when it arrived (Date.now()), in order. */
  timeline: { request: string; at: number }[];
  /** How many faults were injected. */
  injected: () => number;
  /** Starts counting the requests for `path` open at once. */
  inFlight(method: string, path: RegExp): InFlight;
  /** Stops listening: connections are refused until `accept()`. */
  refuse(): Promise<void>;
  /** Listens again, on the same port. */
  accept(): Promise<void>;
  close(): Promise<void>;
}

export async function startFaultProxy(target: string): Promise<FaultProxy> {
  const t = new URL(target);
  const rules: FaultRule[] = [];
  const log: string[] = [];
  const answers: FaultProxy['answers'] = [];
  const timeline: FaultProxy['timeline'] = [];
  const counters: { method: string; path: RegExp; now: number; peak: number }[] = [];
  let injected = 0;
  // A small linear congruential generator: the same faults in the same order on every run.
  let seed = 0x2545f491;
  const draw = () => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return seed / 0x1_0000_0000;
  };
  const hanging = new Set<ServerResponse>();
  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const path = req.url ?? '/';
    log.push(`${req.method} ${path}`);
    timeline.push({ request: `${req.method} ${path}`, at: Date.now() });
    for (const c of counters.filter((c) => (c.method === '*' || c.method === req.method) && c.path.test(path))) {
      c.now++;
      c.peak = Math.max(c.peak, c.now);
      res.once('close', () => c.now--);
    }
    const rule = rules.find((r) => r.times > 0 && (r.method === '*' || r.method === req.method) && r.path.test(path) && (r.probability === undefined || draw() < r.probability));
    if (rule && rule.fault === 'throttle') {
      rule.times--;
      injected++;
      forward(req, res, path, rule.bytesPerSecond ?? 65536);
      return;
    }
    if (rule && (rule.fault === 'corrupt' || rule.fault === 'drop' || rule.fault === 'stall')) {
      rule.times--;
      injected++;
      forward(req, res, path, undefined, rule);
      return;
    }
    if (rule && rule.fault === 'endless') {
      rule.times--;
      injected++;
      req.resume();
      endless(req, res, path, rule);
      return;
    }
    if (rule && rule.fault === 'slow') {
      rule.times--;
      injected++;
      req.pause();
      setTimeout(() => forward(req, res, path), rule.delayMs ?? 1000);
      return;
    }
    if (rule) {
      rule.times--;
      injected++;
      req.resume();
      if (rule.fault === 'error500') {
        res.writeHead(500, { 'Content-Type': 'application/json' }).end('{"errors":[{"code":"UNKNOWN","message":"injected fault"}]}');
      } else if (rule.fault === 'reset') {
        req.socket.destroy();
      } else {
        hanging.add(res);
      }
      return;
    }
    forward(req, res, path);
  });
  /** A chunked answer whose body goes on until the client hangs up (or ENDLESS_SAFETY_STOP), at the pace the client reads. */
  function endless(req: IncomingMessage, res: ServerResponse, path: string, rule: FaultRule): void {
    const status = rule.status ?? 200;
    res.writeHead(status, { 'Content-Type': 'application/octet-stream' });
    const filler = Buffer.alloc(64 * 1024, 'a');
    let bytes = 0;
    res.on('close', () => answers.push({ request: `${req.method} ${path}`, status, bytes }));
    const pump = () => {
      while (!res.destroyed && bytes < ENDLESS_SAFETY_STOP) {
        const chunk = bytes === 0 && rule.prefix ? Buffer.from(rule.prefix) : filler;
        bytes += chunk.length;
        if (!res.write(chunk)) {
          res.once('drain', pump);
          return;
        }
      }
      if (!res.destroyed) res.end();
    };
    pump();
  }
  function forward(req: IncomingMessage, res: ServerResponse, path: string, bytesPerSecond?: number, damage?: FaultRule): void {
    const upstream = request({ host: t.hostname, port: t.port, method: req.method, path, headers: { ...req.headers, host: t.host } }, (up) => {
      res.writeHead(up.statusCode ?? 502, up.headers);
      let bytes = 0;
      let recorded = false;
      const done = () => {
        if (!recorded) answers.push({ request: `${req.method} ${path}`, status: up.statusCode ?? 0, bytes });
        recorded = true;
      };
      if (damage) {
        // 'corrupt': one byte of the body flipped, the length unchanged. 'drop': the
        // connection cut once `afterBytes` of the body went through.
        const cutAt = damage.afterBytes ?? Math.floor(Number(up.headers['content-length'] ?? 0) / 2);
        let flipped = false;
        up.on('data', (chunk: Buffer) => {
          if (res.destroyed) return;
          if (damage.fault === 'corrupt' && !flipped && chunk.length > 0) {
            const copy = Buffer.from(chunk);
            copy[copy.length >> 1] = copy[copy.length >> 1]! ^ 0xff;
            flipped = true;
            chunk = copy;
          }
          if ((damage.fault === 'drop' || damage.fault === 'stall') && bytes + chunk.length >= cutAt) {
            res.write(chunk.subarray(0, cutAt - bytes));
            bytes = cutAt;
            done();
            up.destroy();
            // 'stall': the connection stays open, silent, until the client gives up (or close()).
            if (damage.fault === 'stall') hanging.add(res);
            else res.destroy();
            return;
          }
          res.write(chunk);
          bytes += chunk.length;
        });
        up.on('end', () => {
          done();
          res.end();
        });
        return;
      }
      if (bytesPerSecond === undefined) {
        up.on('data', (chunk: Buffer) => (bytes += chunk.length));
        up.on('end', done);
        up.pipe(res);
        return;
      }
      // Relays in 1/20 s slices of the rate; counts only what reached the client.
      const slice = Math.max(1, Math.floor(bytesPerSecond / 20));
      up.on('data', (chunk: Buffer) => {
        up.pause();
        const parts: Buffer[] = [];
        for (let i = 0; i < chunk.length; i += slice) parts.push(chunk.subarray(i, i + slice));
        const next = () => {
          const part = parts.shift();
          if (!part) return up.resume();
          if (res.destroyed) return;
          res.write(part);
          bytes += part.length;
          setTimeout(next, 50);
        };
        next();
      });
      up.on('end', () => {
        done();
        res.end();
      });
      res.on('close', () => {
        if (!res.writableFinished) done();
        up.destroy();
      });
    });
    upstream.on('error', () => res.destroy());
    req.pipe(upstream);
    req.resume();
  }
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    host: `127.0.0.1:${port}`,
    rules,
    log,
    answers,
    timeline,
    injected: () => injected,
    inFlight(method, path) {
      const c = { method, path, now: 0, peak: 0 };
      counters.push(c);
      return c;
    },
    async refuse() {
      for (const res of hanging) res.destroy();
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
    async accept() {
      await new Promise<void>((r, reject) => {
        server.once('error', reject);
        server.listen(port, '127.0.0.1', () => {
          server.off('error', reject);
          r();
        });
      });
    },
    async close() {
      if (!server.listening) return;
      for (const res of hanging) res.destroy();
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
}
