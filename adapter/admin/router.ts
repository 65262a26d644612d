import type { Redis } from 'ioredis';
import express, { type NextFunction, type Request, type RequestHandler, type Response } from 'express';
import { RegistryError } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import { BasicAuthenticator } from '../auth.js';
import { LoginThrottle } from '../login-throttle.js';
import type { HarborContext } from '../../harbor/context.js';
import { ApiError } from '../../harbor/errors.js';
import { GroupService } from '../../harbor/group-service.js';
import { HarborSatelliteCompat } from '../../harbor/harbor-satellite.js';
import { SatelliteService } from '../../harbor/satellite-service.js';
import { WebhookService } from '../../harbor/webhook-service.js';
import { HarborReconciler } from '../../harbor/reconcile.js';
import { disabledAdminRouter } from './disabled-router.js';
import { adminErrorHandler, sendErrors } from './errors.js';
import { groupHandlers, satelliteHandlers, webhookHandlers } from './handlers.js';
import { adminApiDocument } from './openapi.js';
import { dashboardHandlers } from './dashboard-handlers.js';
import { FleetService } from '../dashboard/fleet-service.js';
import { Sessions } from '../dashboard/sessions.js';
import { authenticateSession, dashboardRouter, sessionId } from '../dashboard/ui-router.js';

// The admin API (/api/v1) and the two Harbor Satellite routes (/satellites/…), in one
// table. Each route is authenticated first (admin, a satellite's robot, a webhook secret, or
// a one-time token in the body, rate limited), then its request is checked against the
// OpenAPI document, then its thin handler calls one service.

export interface AdminApiOptions {
  ctx: HarborContext;
  /** ADMIN_USERNAME / ADMIN_PASSWORD; without it the admin API is not served (503). */
  admin: { username: string; password: string } | undefined;
  authFailureLimit: number;
  /** Refused registration attempts (a bad token, a malformed request) per client address per minute. */
  registrationRateLimit: number;
  tombstoneRetentionHours: number;
  /** Check every answer against the document too (tests). */
  validateResponses?: boolean;
  /** Where the login and registration counters are shared by every replica; absent: this process. */
  throttleRedis?: { redis: Redis; prefix: string };
  /** STATE_MAX_MB: the largest state the diff reads. */
  maxStateMb?: number;
  /** The dashboard (/ui): how long a login lasts, how often its pages refresh. */
  dashboard?: { sessionSeconds?: number; pollSeconds?: number };
}

type Auth = 'public' | 'admin' | 'robot' | 'webhook' | 'token';

declare module 'express-serve-static-core' {
  interface Request {
    /** The satellite a robot credential belongs to, or the project a webhook secret is for. */
    caller?: string;
  }
}

export function adminRouter(o: AdminApiOptions): express.Router {
  const log: Logger = o.ctx.log;
  if (!o.admin) return disabledAdminRouter(log);
  const r = express.Router();
  const doc = adminApiDocument();
  r.get('/api/v1/openapi.json', (_req, res) => {
    res.json(doc);
  });

  const groups = new GroupService(o.ctx);
  const satellites = new SatelliteService(o.ctx);
  const webhooks = new WebhookService(o.ctx);
  const compat = o.ctx.settings.layout.harborSatellites ? new HarborSatelliteCompat(o.ctx, satellites) : undefined;
  const reconcile = (group: string) => {
    if (!o.ctx.harbor) throw new ApiError('UNAVAILABLE', 'Harbor is not configured: set HARBOR_URL and HARBOR_PASSWORD');
    return new HarborReconciler(o.ctx.pool, o.ctx.harbor, log, o.tombstoneRetentionHours).reconcileGroup(group);
  };

  // Shared by every replica through Redis, as the endpoint's are (each falls back to this
  // process while Redis is away), so spreading guesses or registrations over replicas gains nothing.
  const shared = o.throttleRedis;
  const throttle = (name: string, addressLimit: number, usernameLimit = addressLimit) => new LoginThrottle({
    ...(shared ? { redis: shared.redis } : {}), prefix: `${shared?.prefix ?? 'local'}:${name}`, addressLimit, usernameLimit, log,
  });
  const adminAuth = new BasicAuthenticator({ username: o.admin.username, password: o.admin.password, throttle: throttle('api-admin', o.authFailureLimit) });
  const robotLogins = throttle('api-robot', o.authFailureLimit);
  const registrations = throttle('api-registration', o.registrationRateLimit, Number.MAX_SAFE_INTEGER);
  const address = (req: Request) => req.ip ?? 'unknown';
  const basicUser = (req: Request) => Buffer.from(/^Basic\s+(\S+)/i.exec(req.headers.authorization ?? '')?.[1] ?? '', 'base64').toString().split(':')[0] ?? '';

  // The dashboard's pages call this API with a session cookie instead of Basic credentials.
  const sessions = new Sessions({ lifetimeSeconds: o.dashboard?.sessionSeconds ?? 3600, ...(shared ? { redis: shared.redis, prefix: shared.prefix } : {}) });
  const authenticate: Record<Auth, RequestHandler> = {
    public: (_req, _res, next) => next(),
    admin: async (req, res, next) => {
      // The pages send their CSRF token on every request: without a cookie (it expired), a 401 still without a Basic prompt.
      if (req.headers.authorization === undefined && (sessionId(req) !== undefined || req.get('x-csrf-token') !== undefined)) {
        res.locals.viaSession = true;
        await authenticateSession(sessions, req);
        next();
        return;
      }
      try {
        await adminAuth.authenticate(req.headers.authorization, address(req));
      } catch (err) {
        const e = err as RegistryError;
        throw new ApiError(e.code === 'TOOMANYREQUESTS' ? 'TOO_MANY_REQUESTS' : 'UNAUTHORIZED', e.message);
      }
      next();
    },
    // Counted before the secret is checked, given back when it was right.
    robot: async (req, _res, next) => {
      const user = basicUser(req);
      if ((await robotLogins.reserve(address(req), user)) > 0) throw new ApiError('TOO_MANY_REQUESTS', 'too many failed logins from this address; wait and retry');
      req.caller = await satellites.authenticateRobot(req.headers.authorization);
      await robotLogins.refund(address(req), user);
      next();
    },
    webhook: async (req, _res, next) => {
      req.caller = await webhooks.authenticate(req.headers.authorization);
      next();
    },
    // Each attempt is counted before its token is looked at, so guessing is bounded per
    // address however many arrive at once; it is given back unless the token was refused
    // (401) or the request malformed (400). A device retrying a good token while Harbor or
    // the registry fails (Harbor Satellite's satellites retry every 5 s) is never locked out
    // by its own tries, and registrations that succeed cost nothing (a site registering
    // many devices from one address).
    token: async (req, res, next) => {
      const from = address(req);
      if ((await registrations.reserve(from, 'registration')) > 0) throw new ApiError('TOO_MANY_REQUESTS', 'too many refused registration attempts from this address; wait a minute');
      res.once('finish', () => {
        if (res.statusCode !== 400 && res.statusCode !== 401) void registrations.refund(from, 'registration');
      });
      next();
    },
  };

  r.use(dashboardRouter({
    sessions, log, pollSeconds: o.dashboard?.pollSeconds ?? 5,
    async checkLogin(username, password, from) {
      try {
        await adminAuth.authenticate(`Basic ${Buffer.from(`${username}:${password}`).toString('base64')}`, from);
        return 'ok';
      } catch (err) {
        if ((err as RegistryError).code === 'TOOMANYREQUESTS') return 'throttled';
        if (err instanceof RegistryError) return 'wrong';
        throw err;
      }
    },
  }));

  const g = groupHandlers(groups, reconcile);
  const s = satelliteHandlers(satellites, compat);
  const w = webhookHandlers(webhooks);
  const d = dashboardHandlers(new FleetService(o.ctx, o.maxStateMb));
  type Method = 'get' | 'post' | 'patch' | 'delete';
  const routes: [Method, string, Auth, RequestHandler][] = [
    ['get', '/api/v1/groups', 'admin', g.list],
    ['post', '/api/v1/groups', 'admin', g.create],
    ['post', '/api/v1/groups/adopt', 'admin', g.adopt],
    ['get', '/api/v1/groups/:name', 'admin', g.get],
    ['patch', '/api/v1/groups/:name', 'admin', g.update],
    ['delete', '/api/v1/groups/:name', 'admin', g.remove],
    ['post', '/api/v1/groups/:name/replicate', 'admin', g.replicate],
    ['post', '/api/v1/groups/:name/reconcile', 'admin', g.reconcile],
    ['get', '/api/v1/satellites', 'admin', s.list],
    ['post', '/api/v1/satellites', 'admin', s.create],
    ['post', '/api/v1/satellites/register', 'token', s.register],
    ['get', '/api/v1/satellites/:name', 'admin', s.get],
    ['patch', '/api/v1/satellites/:name', 'admin', s.update],
    ['delete', '/api/v1/satellites/:name', 'admin', s.revoke],
    ['post', '/api/v1/satellites/:name/token', 'admin', s.token],
    ['post', '/api/v1/satellites/:name/rotate', 'admin', s.rotate],
    ['post', '/api/v1/satellites/:name/status', 'robot', s.status],
    ['post', '/api/v1/webhooks/harbor', 'webhook', w.receive],
    ['get', '/api/v1/fleet', 'admin', d.overview],
    ['get', '/api/v1/groups/:name/versions', 'admin', d.versions],
    ['get', '/api/v1/groups/:name/diff', 'admin', d.diff],
    ['get', '/api/v1/satellites/:name/report', 'admin', d.report],
    ...(compat ? [
      ['get', '/satellites/ztr/:token', 'token', s.zeroTouch],
      ['post', '/satellites/sync', 'robot', s.sync],
    ] as [Method, string, Auth, RequestHandler][] : []),
  ];
  /** Routes the document lists, for the test that compares them. */
  (r as express.Router & { table?: typeof routes }).table = routes;

  // Authentication comes first, so nothing about the input is answered to a stranger; a
  // path no route has is the administrator's business only.
  const authenticated = (handler: RequestHandler): RequestHandler => (req, res, next) =>
    // The handler's promise is returned, so express 5 passes its rejection on as an error.
    handler(req, res, (err?: unknown) => {
      if (err === undefined) res.locals.authenticated = true;
      next(err);
    });
  for (const [method, path, auth] of routes) r[method](path, authenticated(authenticate[auth]));
  const mine = ['/api/v1', ...(compat ? ['/satellites'] : [])];
  r.use(mine, (req, res, next) => (res.locals.authenticated ? next() : authenticate.admin(req, res, next)));
  r.use(mine, express.json({ limit: '1mb' }));
  // The validator (with ajv, a YAML parser, multer: ~180 modules) is loaded with the first
  // admin API request, not at start: the endpoint serves Harbor's pushes without it.
  let validator: Promise<express.Router> | undefined;
  r.use(mine, async (req, res, next) => {
    validator ??= import('express-openapi-validator').then((OpenApiValidator) => express.Router().use(OpenApiValidator.middleware({
      apiSpec: doc as never,
      validateRequests: { allowUnknownQueryParameters: false },
      validateResponses: o.validateResponses ?? false,
      validateSecurity: false,
      ignoreUndocumented: false,
      ignorePaths: (path: string) => !path.startsWith('/api/v1/') && !(compat && path.startsWith('/satellites/')),
    })));
    (await validator)(req, res, next);
  });
  for (const [method, path, , handler] of routes) r[method](path, handler);
  const onError = adminErrorHandler();
  r.use(mine, (err: unknown, req: Request, res: Response, next: NextFunction) => onError(err, req, res, next));
  return r;
}

