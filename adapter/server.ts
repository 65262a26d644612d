import type { Listener as Server } from './tls.js';
import type { AddressInfo } from 'node:net';
import { createPool, type Pool } from '../core/db/pool.js';
import type { RedisTarget } from '../core/redis.js';
import type { Logger } from '../core/logger.js';
import { createApp, type AppDeps } from './app.js';
import { listen } from './listen.js';
import { LoginThrottle, throttleConnection } from './login-throttle.js';
import { createListener, type TlsFiles } from './tls.js';

export interface EndpointOptions extends Partial<Pick<AppDeps, 'metrics' | 'trustProxy' | 'hashConcurrency' | 'uploadLimits' | 'apiRouter'>> {
  databaseUrl: string;
  /** A pool to share; when absent the endpoint makes (and on stop closes) its own. */
  pool?: Pool;
  host: string;
  port: number;
  username: string;
  password: string;
  /** Failed logins per client address per minute. */
  authFailureLimit: number;
  /** Failed logins per username per minute. @defaultValue 50 */
  authUsernameFailureLimit?: number;
  /** Redis holding the login throttle's counters, shared by replicas; absent: this process only. */
  redis?: { url: RedisTarget; prefix: string };
  /** The Harbor registry blob GETs are redirected to. */
  imageRegistry: string;
  /** Serve HTTPS from these files (TLS_CERT_FILE, …); absent: plain HTTP. */
  tls?: TlsFiles;
  log: Logger;
}

export interface RunningEndpoint {
  server: Server;
  pool: Pool;
  url: string;
  /** Stops accepting, lets in-flight requests finish, then closes the database pool. */
  stop(): Promise<void>;
}

export async function startEndpoint(o: EndpointOptions): Promise<RunningEndpoint> {
  const pool = o.pool ?? createPool(o.databaseUrl, 20);
  const redis = o.redis ? throttleConnection(o.redis.url) : undefined;
  const throttle = new LoginThrottle({
    redis, prefix: o.redis?.prefix ?? 'local', addressLimit: o.authFailureLimit,
    usernameLimit: o.authUsernameFailureLimit ?? 50, log: o.log,
  });
  await throttle.ready();
  const app = createApp({
    pool, log: o.log, username: o.username, password: o.password, throttle, imageRegistry: o.imageRegistry,
    metrics: o.metrics, trustProxy: o.trustProxy, hashConcurrency: o.hashConcurrency, uploadLimits: o.uploadLimits, apiRouter: o.apiRouter,
  });
  const server = await listen(createListener(app, o.tls, o.log), o.port, o.host, { port: 'PORT', host: 'HOST' }).catch(async (err: unknown) => {
    redis?.disconnect();
    if (!o.pool) await pool.end();
    throw err;
  });
  // Keep-alive sockets outlive a proxy's idle timeout by default otherwise.
  server.keepAliveTimeout = 65_000;
  const address = server.address() as AddressInfo;
  const host = o.host === '0.0.0.0' || o.host === '::' ? '127.0.0.1' : o.host;
  let stopping: Promise<void> | undefined;
  return {
    server,
    pool,
    url: `${o.tls ? 'https' : 'http'}://${host}:${address.port}`,
    stop() {
      stopping ??= (async () => {
        const closed = new Promise<void>((resolve) => server.close(() => resolve()));
        // In-flight requests finish; a keep-alive socket is closed as soon as it goes idle
        // instead of waiting out its timeout.
        const sweep = setInterval(() => server.closeIdleConnections(), 50);
        server.closeIdleConnections();
        await closed;
        clearInterval(sweep);
        redis?.disconnect();
        if (!o.pool) await pool.end();
      })();
      return stopping;
    },
  };
}
