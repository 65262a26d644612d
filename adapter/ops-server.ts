import { createListener, type Listener as Server, type TlsFiles } from './tls.js';
import type { AddressInfo } from 'node:net';
import type { Queue } from 'bullmq';
import express, { type NextFunction, type Request, type Response } from 'express';
import type { Pool } from '../core/db/pool.js';
import type { RedisTarget } from '../core/redis.js';
import type { RegistryError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { Metrics } from '../core/metrics.js';
import { operationsAuthorized, operationsChallenges, type OperationsCredential } from '../core/operations-auth.js';
import { BasicAuthenticator, CHALLENGE } from './auth.js';
import { healthRoutes } from './health.js';
import { listen } from './listen.js';
import { LoginThrottle, throttleConnection } from './login-throttle.js';
import { metricsRoute, queueDashboard } from './operations.js';
import { requestContext } from './request-context.js';

// The operations listener: /metrics, /healthz, /readyz and the queue dashboard, on a port of
// its own (METRICS_PORT), bound to loopback unless METRICS_HOST says otherwise, never on the
// endpoint's public port. The dashboard is served only with an admin credential configured,
// and only to it: the endpoint's credential never opens it. /metrics asks for the metrics
// credential when one is configured; the probes never ask for one.

export const DASHBOARD_PATH = '/admin/queues';

export interface OpsOptions {
  host: string;
  port: number;
  pool: Pool;
  metrics: Metrics;
  queue: () => Queue | undefined;
  /** What /metrics asks for (METRICS_TOKEN_FILE, METRICS_USERNAME/_PASSWORD_FILE); unset: nothing. */
  metricsCredential?: OperationsCredential;
  /** The dashboard's credential and how its failed logins are counted. */
  admin?: { username: string; password: string; authFailureLimit: number; redis?: { url: RedisTarget; prefix: string } };
  /** Serve HTTPS from these files; absent: plain HTTP. */
  tls?: TlsFiles;
  log: Logger;
}

export interface RunningOps {
  server: Server;
  url: string;
  stop(): Promise<void>;
}

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

/**
 * CSRF protection for the dashboard. A browser sends Basic credentials it has cached with
 * any request to this origin, whoever's page started it, so a state-changing request (retry,
 * clean, promote, …) is accepted only when its Origin (or, lacking one, its Referer) is this
 * very host. The dashboard's own UI always sends Origin on these requests; a token scheme
 * would need that third-party UI to carry the token, which it cannot. Hand-written for
 * that reason: the token libraries (csrf-csrf, csrf-sync) need the page's cooperation.
 */
export function sameOriginOnly() {
  return (req: Request, res: Response, next: NextFunction): void => {
    if (SAFE_METHODS.has(req.method)) {
      next();
      return;
    }
    const source = req.headers.origin ?? req.headers.referer;
    let host: string | undefined;
    try {
      host = source === undefined || source === 'null' ? undefined : new URL(source).host;
    } catch {
      host = undefined;
    }
    if (host !== undefined && host === req.headers.host) {
      next();
      return;
    }
    res.status(403).json({ error: 'a state-changing dashboard request must come from the dashboard itself (Origin or Referer of this host)' });
  };
}

function adminOnly(auth: BasicAuthenticator) {
  return (req: Request, res: Response, next: NextFunction): void => {
    auth.authenticate(req.headers.authorization, req.ip ?? 'unknown').then(() => next(), (err: RegistryError) => {
      const status = err.code === 'TOOMANYREQUESTS' ? 429 : 401;
      if (err.retryAfterSeconds !== undefined) res.set('Retry-After', String(err.retryAfterSeconds));
      res.status(status).set(CHALLENGE).json({ error: err.message });
    });
  };
}

/** 401 with the challenges, unless the request carries the credential (or none is configured). */
export function credentialOnly(credential: OperationsCredential | undefined) {
  return (req: Request, res: Response, next: NextFunction): void => {
    if (operationsAuthorized(req.headers.authorization, credential)) {
      next();
      return;
    }
    res.status(401).set('WWW-Authenticate', operationsChallenges(credential!)).json({ error: 'this route needs the metrics credential' });
  };
}

function createOpsApp(o: Omit<OpsOptions, 'host' | 'port'>, throttle: LoginThrottle | undefined): express.Express {
  const app = express();
  app.disable('x-powered-by');
  app.use(requestContext(o.log));
  app.use(healthRoutes(o.pool));
  app.use('/metrics', credentialOnly(o.metricsCredential));
  app.use(metricsRoute(o.metrics, o.queue));
  if (o.admin && throttle) {
    const auth = new BasicAuthenticator({ username: o.admin.username, password: o.admin.password, throttle, metrics: o.metrics });
    app.use(DASHBOARD_PATH, (_req, res, next) => {
      // Never framed by another page (clickjacking of its buttons).
      res.set({ 'X-Frame-Options': 'DENY', 'Content-Security-Policy': "frame-ancestors 'none'" });
      next();
    }, adminOnly(auth), sameOriginOnly(), queueDashboard(o.queue, DASHBOARD_PATH));
  } else {
    app.use(DASHBOARD_PATH, (_req, res) => {
      res.status(404).json({ error: 'the dashboard is off: set ADMIN_USERNAME and ADMIN_PASSWORD to serve it' });
    });
  }
  return app;
}

export async function startOpsServer(o: OpsOptions): Promise<RunningOps> {
  const redis = o.admin?.redis ? throttleConnection(o.admin.redis.url) : undefined;
  const throttle = o.admin && new LoginThrottle({
    redis, prefix: `${o.admin.redis?.prefix ?? 'local'}:admin`, addressLimit: o.admin.authFailureLimit, usernameLimit: o.admin.authFailureLimit, log: o.log,
  });
  const app = createOpsApp(o, throttle);
  const server = await listen(createListener(app, o.tls, o.log), o.port, o.host, { port: 'METRICS_PORT', host: 'METRICS_HOST' }).catch((err: unknown) => {
    redis?.disconnect();
    throw err;
  });
  const { port } = server.address() as AddressInfo;
  const host = o.host === '0.0.0.0' || o.host === '::' ? '127.0.0.1' : o.host;
  return {
    server,
    url: `${o.tls ? 'https' : 'http'}://${host.includes(':') ? `[${host}]` : host}:${port}`,
    async stop() {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
      redis?.disconnect();
    },
  };
}
