import type { Dispatcher } from 'undici';
import { createLogger } from '../../core/logger.js';
import { startEndpoint, type EndpointOptions, type RunningEndpoint } from '../../adapter/server.js';

export const USERNAME = 'harbor';
export const PASSWORD = 'test-secret-0123456789';

export function basic(user = USERNAME, password = PASSWORD): string {
  return `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
}

/** Where the test endpoint redirects blob GETs. */
export const IMAGE_REGISTRY = 'https://harbor.example.com';

/** The endpoint in this process on a free port, against the given database. */
export async function startTestEndpoint(databaseUrl: string, authFailureLimit = 1000, trustProxy?: string, extra: Partial<EndpointOptions> = {}): Promise<RunningEndpoint> {
  return startEndpoint({
    databaseUrl,
    host: '127.0.0.1',
    port: 0,
    username: USERNAME,
    password: PASSWORD,
    authFailureLimit,
    authUsernameFailureLimit: 1000,
    trustProxy,
    imageRegistry: IMAGE_REGISTRY,
    log: createLogger((process.env.TEST_LOG_LEVEL as 'silent') ?? 'silent'),
    ...extra,
  });
}

/** fetch's init for an undici dispatcher (one trusting a test CA, say); nothing without one. */
export function viaDispatcher(dispatcher: Dispatcher | undefined): RequestInit {
  return dispatcher ? ({ dispatcher } as RequestInit) : {};
}

/** fetch against the endpoint with the right credentials unless told otherwise (over `dispatcher`, when given). */
export function client(base: string, auth: string | null = basic(), dispatcher?: Dispatcher) {
  return (path: string, init: RequestInit & { headers?: Record<string, string> } = {}) =>
    fetch(base + path, {
      ...init,
      ...viaDispatcher(dispatcher),
      headers: { ...(auth ? { Authorization: auth } : {}), ...(init.headers ?? {}) },
    });
}

/** The JSON body of an answer, untyped: the tests assert its shape. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export const json = async (res: Response): Promise<any> => res.json();
