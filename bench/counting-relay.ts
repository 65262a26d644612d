import { Agent, createServer, request, type IncomingHttpHeaders, type IncomingMessage } from 'node:http';
import { listenLocal } from '../test/support/forward.js';

// An HTTP relay in front of a registry that counts what a client asks of it: requests by
// kind and the bytes both ways (request and status lines, headers and bodies, as HTTP/1.1
// puts them on the wire). The client's Host header goes through unchanged, so the upload
// Locations the registry hands out point back at the relay and the upload PUTs are counted
// too (a relay that rewrote Host would let them go straight to the registry).

export type RequestKind = 'HEAD manifest' | 'GET manifest' | 'PUT manifest' | 'HEAD blob' | 'GET blob' | 'POST upload' | 'PUT upload' | 'other';

export interface Tally {
  requests: Partial<Record<RequestKind, number>>;
  /** Bytes the client sent, and received. */
  sent: number;
  received: number;
}

export interface CountingRelay {
  url: string;
  host: string;
  /** What went through since the last reset. */
  tally(): Tally;
  reset(): void;
  close(): Promise<void>;
}

export function kindOf(method: string, path: string): RequestKind {
  const kind = `${method} ${path.includes('/blobs/uploads/') ? 'upload' : path.includes('/blobs/') ? 'blob' : path.includes('/manifests/') ? 'manifest' : ''}`;
  return (['HEAD manifest', 'GET manifest', 'PUT manifest', 'HEAD blob', 'GET blob', 'POST upload', 'PUT upload'] as string[]).includes(kind) ? kind as RequestKind : 'other';
}

const headerBytes = (raw: string[]) => raw.reduce((n, s, i) => n + Buffer.byteLength(s) + 2, 0) + 2;

export async function startCountingRelay(target: string): Promise<CountingRelay> {
  const t = new URL(target);
  const agent = new Agent({ keepAlive: true });
  let tally: Tally = { requests: {}, sent: 0, received: 0 };
  const server = createServer((req: IncomingMessage, res) => {
    const path = req.url ?? '/';
    const kind = kindOf(req.method ?? '', path);
    tally.requests[kind] = (tally.requests[kind] ?? 0) + 1;
    tally.sent += Buffer.byteLength(`${req.method} ${path} HTTP/1.1\r\n`) + headerBytes(req.rawHeaders);
    req.on('data', (d: Buffer) => (tally.sent += d.length));
    const upstream = request({ host: t.hostname, port: t.port, method: req.method, path, headers: req.headers as IncomingHttpHeaders, agent }, (up) => {
      tally.received += Buffer.byteLength(`HTTP/1.1 ${up.statusCode} ${up.statusMessage ?? ''}\r\n`) + headerBytes(up.rawHeaders);
      res.writeHead(up.statusCode ?? 502, up.headers);
      up.on('data', (d: Buffer) => (tally.received += d.length));
      up.pipe(res);
    });
    upstream.on('error', () => res.destroy());
    req.pipe(upstream);
  });
  const listening = await listenLocal(server);
  return {
    url: listening.url,
    host: listening.host,
    tally: () => ({ requests: { ...tally.requests }, sent: tally.sent, received: tally.received }),
    reset: () => {
      tally = { requests: {}, sent: 0, received: 0 };
    },
    async close() {
      await listening.close();
      agent.destroy();
    },
  };
}
