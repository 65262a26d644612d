import { createServer, request, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

// An HTTP proxy in front of a real registry that injects faults into chosen requests:
// a 5xx answer, a reset connection, or a hang (the request never answers).

export type Fault = 'error500' | 'reset' | 'hang' | 'slow' | 'throttle';

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
}

export interface FaultProxy {
  url: string;
  host: string;
  rules: FaultRule[];
  /** Every request seen, "METHOD path", in order. */
  log: string[];
  /** Every answer forwarded: its request, status and body bytes, in order of completion. */
  answers: { request: string; status: number; bytes: number }[];
  /** How many faults were injected. */
  injected: () => number;
  close(): Promise<void>;
}

export async function startFaultProxy(target: string): Promise<FaultProxy> {
  const t = new URL(target);
  const rules: FaultRule[] = [];
  const log: string[] = [];
  const answers: FaultProxy['answers'] = [];
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
    const rule = rules.find((r) => r.times > 0 && (r.method === '*' || r.method === req.method) && r.path.test(path) && (r.probability === undefined || draw() < r.probability));
    if (rule && rule.fault === 'throttle') {
      rule.times--;
      injected++;
      forward(req, res, path, rule.bytesPerSecond ?? 65536);
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
  function forward(req: IncomingMessage, res: ServerResponse, path: string, bytesPerSecond?: number): void {
    const upstream = request({ host: t.hostname, port: t.port, method: req.method, path, headers: { ...req.headers, host: t.host } }, (up) => {
      res.writeHead(up.statusCode ?? 502, up.headers);
      let bytes = 0;
      let recorded = false;
      const done = () => {
        if (!recorded) answers.push({ request: `${req.method} ${path}`, status: up.statusCode ?? 0, bytes });
        recorded = true;
      };
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
    injected: () => injected,
    async close() {
      for (const res of hanging) res.destroy();
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
}
