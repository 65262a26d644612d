import { join } from 'node:path';
import { loadConfig, type Config } from '../../core/config.js';
import { createLogger } from '../../core/logger.js';
import { adminRouter } from '../../adapter/admin/router.js';
import { harborContext, type HarborContext } from '../../harbor/context.js';
import { startEndpoint, type RunningEndpoint } from '../../adapter/server.js';
import { startHarborDouble, type HarborDouble } from '../../harbor-dev/harbor-double.js';
import { createTestDatabase, type TestDatabase } from './db.js';
import type { Dispatcher } from 'undici';
import type { TlsFiles } from '../../adapter/tls.js';
import { PASSWORD, USERNAME, viaDispatcher } from './endpoint.js';
import { freePort } from './process.js';

export const UPSTREAM = join(process.cwd(), '..', 'shared', 'harbor', 'swagger-v2.15.2.yaml');
export const HARBOR_ADMIN = { username: 'admin', password: 'Harbor12345' };
export const ADMIN = { username: 'operator', password: 'admin-secret-0123' };

export const basicAuth = (u: string, p: string) => `Basic ${Buffer.from(`${u}:${p}`).toString('base64')}`;

/** The endpoint with its admin API, a database of its own, and a Harbor double behind it. */
export interface AdminHarness {
  db: TestDatabase;
  harbor: HarborDouble;
  endpoint: RunningEndpoint;
  config: Config;
  ctx: HarborContext;
  url: string;
  /** fetch with the admin credential (or `auth`), JSON in and out. */
  api(path: string, init?: { method?: string; body?: unknown; auth?: string | null; headers?: Record<string, string> }): Promise<{ status: number; body: any; headers: Headers }>;
  close(): Promise<void>;
}

export async function startAdminHarness(env: Record<string, string> = {}, opts: { admin?: boolean; throttleRedis?: { redis: import('ioredis').Redis; prefix: string }; dashboard?: { sessionSeconds?: number; pollSeconds?: number }; tls?: { files: TlsFiles; dispatcher: Dispatcher } } = {}): Promise<AdminHarness> {
  const db = await createTestDatabase();
  const harbor = await startHarborDouble(UPSTREAM, HARBOR_ADMIN);
  const port = await freePort();
  const url = `${opts.tls ? 'https' : 'http'}://127.0.0.1:${port}`;
  const config = loadConfig({
    DATABASE_URL: db.url, HARBOR_URL: harbor.url, HARBOR_USERNAME: HARBOR_ADMIN.username, HARBOR_PASSWORD: HARBOR_ADMIN.password,
    ENDPOINT_URL: url, ENDPOINT_USERNAME: USERNAME, ENDPOINT_PASSWORD: PASSWORD, IMAGE_REGISTRY: 'https://harbor.example.com',
    ...(opts.admin === false ? {} : { ADMIN_USERNAME: ADMIN.username, ADMIN_PASSWORD: ADMIN.password }),
    LOG_LEVEL: 'silent', ...env,
  });
  const log = createLogger((process.env.TEST_LOG_LEVEL as 'silent') ?? 'silent');
  const ctx = await harborContext(config, db.pool, log);
  const apiRouter = adminRouter({
    ctx, admin: opts.admin === false ? undefined : ADMIN, authFailureLimit: 1000, registrationRateLimit: Number(env.REGISTRATION_RATE_LIMIT ?? 1000),
    tombstoneRetentionHours: config.tombstoneRetentionHours, validateResponses: true,
    ...(opts.throttleRedis ? { throttleRedis: opts.throttleRedis } : {}),
    ...(opts.dashboard ? { dashboard: opts.dashboard } : {}),
  });
  const endpoint = await startEndpoint({
    databaseUrl: db.url, pool: db.pool, host: '127.0.0.1', port, username: USERNAME, password: PASSWORD, authFailureLimit: 1000,
    authUsernameFailureLimit: 1000, imageRegistry: config.imageRegistry, log, apiRouter, trustProxy: config.trustProxy, ...(opts.tls ? { tls: opts.tls.files } : {}),
  });
  return {
    db, harbor, endpoint, config, ctx, url,
    async api(path, init = {}) {
      const auth = init.auth === undefined ? basicAuth(ADMIN.username, ADMIN.password) : init.auth;
      const res = await fetch(url + path, {
        method: init.method ?? 'GET',
        headers: { ...(auth ? { Authorization: auth } : {}), ...(init.body !== undefined ? { 'Content-Type': 'application/json' } : {}), ...(init.headers ?? {}) },
        body: init.body === undefined ? undefined : typeof init.body === 'string' ? init.body : JSON.stringify(init.body),
        ...viaDispatcher(opts.tls?.dispatcher),
      });
      const text = await res.text();
      let body: unknown = text;
      try {
        body = text ? JSON.parse(text) : undefined;
      } catch {
        // not JSON: the test sees the text
      }
      return { status: res.status, body, headers: res.headers };
    },
    async close() {
      await endpoint.stop();
      await harbor.close();
      await db.drop();
    },
  };
}
