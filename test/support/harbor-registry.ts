import { createServer, type Server } from 'node:http';
import { forward, listenLocal } from './forward.js';

// Harbor's registry as a client meets it: a real registry (docker-registry) behind Bearer
// auth whose token service is the Harbor double's (/service/token). Every request needs a
// token granting its repository the action it performs (pull for GET and HEAD, push for the
// rest); anything else gets Harbor's 401 challenge. So a robot's rights, as the double
// grants them, are what decide whether a pull succeeds.

export interface HarborRegistry {
  url: string;
  host: string;
  /** Requests refused, "METHOD path". */
  refused: string[];
  close(): Promise<void>;
}

interface Claims {
  iss?: string;
  access?: { type: string; name: string; actions: string[] }[];
}

function claims(authorization: string | undefined): Claims | undefined {
  const token = /^Bearer\s+(\S+)$/i.exec(authorization ?? '')?.[1];
  const payload = token?.split('.')[1];
  if (!payload) return undefined;
  try {
    return JSON.parse(Buffer.from(payload, 'base64url').toString()) as Claims;
  } catch {
    return undefined;
  }
}

export async function startHarborRegistry(target: string, tokenService: string): Promise<HarborRegistry> {
  const t = new URL(target);
  const state: HarborRegistry = { url: '', host: '', refused: [], close: async () => undefined };
  const server: Server = createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    const repository = /^\/v2\/(.+?)\/(manifests|blobs|tags|referrers)\//.exec(path)?.[1];
    const action = req.method === 'GET' || req.method === 'HEAD' ? 'pull' : 'push';
    const c = claims(req.headers.authorization);
    const granted = c?.iss === 'harbor-token-issuer' && (repository === undefined
      ? true
      : (c.access ?? []).some((a) => a.type === 'repository' && a.name === repository && a.actions.includes(action)));
    if (!granted) {
      state.refused.push(`${req.method} ${path}`);
      req.resume();
      const scope = repository ? `,scope="repository:${repository}:${action}"` : '';
      res.writeHead(401, { 'WWW-Authenticate': `Bearer realm="${tokenService}",service="harbor-registry"${scope}`, 'Content-Type': 'application/json' })
        .end(req.method === 'HEAD' ? undefined : '{"errors":[{"code":"UNAUTHORIZED","message":"unauthorized to access repository"}]}');
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
