import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createPool, type Pool } from '../core/db/pool.js';
import type { Logger } from '../core/logger.js';
import { createApp, type AppDeps } from './app.js';

export interface EndpointOptions extends Partial<Pick<AppDeps, 'metrics' | 'queue' | 'admin' | 'trustProxy'>> {
  databaseUrl: string;
  /** A pool to share; when absent the endpoint makes (and on stop closes) its own. */
  pool?: Pool;
  host: string;
  port: number;
  username: string;
  password: string;
  authFailureLimit: number;
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
  const app = createApp({
    pool, log: o.log, username: o.username, password: o.password, authFailureLimit: o.authFailureLimit,
    metrics: o.metrics, queue: o.queue, admin: o.admin, trustProxy: o.trustProxy,
  });
  const server = await new Promise<Server>((resolve, reject) => {
    const s = app.listen(o.port, o.host, () => resolve(s));
    s.once('error', reject);
  });
  // Keep-alive sockets outlive a proxy's idle timeout by default otherwise.
  server.keepAliveTimeout = 65_000;
  const address = server.address() as AddressInfo;
  const host = o.host === '0.0.0.0' || o.host === '::' ? '127.0.0.1' : o.host;
  let stopping: Promise<void> | undefined;
  return {
    server,
    pool,
    url: `http://${host}:${address.port}`,
    stop() {
      stopping ??= (async () => {
        const closed = new Promise<void>((resolve) => server.close(() => resolve()));
        // In-flight requests finish; a keep-alive socket is closed as soon as it goes idle
        // instead of waiting out its timeout.
        const sweep = setInterval(() => server.closeIdleConnections(), 50);
        server.closeIdleConnections();
        await closed;
        clearInterval(sweep);
        if (!o.pool) await pool.end();
      })();
      return stopping;
    },
  };
}
