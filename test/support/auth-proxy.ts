import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { forward, listenLocal } from './forward.js';

// An auth front for a real registry, the way Harbor puts one before its registry: Bearer
// (a 401 names a token service; the client trades its Basic credentials there for a
// token scoped to the repository) or plain Basic. Requests that pass are forwarded.

export interface AuthProxy {
  url: string;
  host: string;
  /** Scopes the token service was asked for, in order. */
  scopes: string[];
  /** Tokens stop working after this many uses (forces a re-authentication). */
  tokenUses: number;
  /** The expires_in (seconds) the token service announces; tokens stop working after it. */
  expiresIn: number;
  /** Answers 401 given, in order ("METHOD path"). */
  refused: string[];
  close(): Promise<void>;
}

export async function startAuthProxy(target: string, mode: 'bearer' | 'basic', username: string, password: string): Promise<AuthProxy> {
  const t = new URL(target);
  const expected = `Basic ${Buffer.from(`${username}:${password}`).toString('base64')}`;
  const tokens = new Map<string, number>();
  const expiry = new Map<string, number>();
  const state: AuthProxy = { url: '', host: '', scopes: [], tokenUses: 1000, expiresIn: 1800, refused: [], close: async () => undefined };
  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    if (mode === 'bearer' && url.pathname === '/service/token') {
      if (req.headers.authorization !== expected) {
        res.writeHead(401, { 'Content-Type': 'application/json' }).end('{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}');
        return;
      }
      state.scopes.push(url.searchParams.get('scope') ?? '');
      const token = randomBytes(16).toString('hex');
      tokens.set(token, state.tokenUses);
      expiry.set(token, Date.now() + state.expiresIn * 1000);
      res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify({ token, expires_in: state.expiresIn }));
      return;
    }
    const auth = req.headers.authorization ?? '';
    let ok = false;
    if (mode === 'basic') ok = auth === expected;
    else if (auth.startsWith('Bearer ')) {
      const left = tokens.get(auth.slice(7)) ?? 0;
      ok = left > 0 && (expiry.get(auth.slice(7)) ?? 0) > Date.now();
      if (ok) tokens.set(auth.slice(7), left - 1);
    }
    if (!ok) {
      state.refused.push(`${req.method} ${url.pathname}`);
      req.resume();
      const repo = /^\/v2\/(.+?)\/(manifests|blobs|tags)\//.exec(url.pathname)?.[1];
      const challenge = mode === 'basic'
        ? 'Basic realm="harbor"'
        : `Bearer realm="${state.url}/service/token",service="harbor-registry"${repo ? `,scope="repository:${repo}:pull,push"` : ''}`;
      res.writeHead(401, { 'WWW-Authenticate': challenge, 'Content-Type': 'application/json' })
        .end('{"errors":[{"code":"UNAUTHORIZED","message":"unauthorized"}]}');
      return;
    }
    forward(t, req, res);
  });
  const listening = await listenLocal(server);
  state.url = listening.url;
  state.host = listening.host;
  state.close = listening.close;
  return state;
}
