import express, { type NextFunction, type Request, type Response } from 'express';
import type { Pool } from '../core/db/pool.js';
import { RegistryError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { Metrics } from '../core/metrics.js';
import { writeOciError } from '../core/oci/errors.js';
import { ArtifactStore } from '../core/store/artifact-store.js';
import { CredentialStore } from '../core/store/credential-store.js';
import { UploadStore, type UploadLimits } from '../core/store/upload-store.js';
import { BasicAuthenticator, CHALLENGE } from './auth.js';
import { BlobService } from './blob-service.js';
import { blobHandlers } from './handlers/blobs.handler.js';
import { manifestHandlers } from './handlers/manifests.handler.js';
import { referrerHandlers } from './handlers/referrers.handler.js';
import { tagHandlers } from './handlers/tags.handler.js';
import { uploadHandlers } from './handlers/uploads.handler.js';
import { healthRoutes } from './health.js';
import type { LoginThrottle } from './login-throttle.js';
import { ManifestService } from './manifest-service.js';
import { writeError } from './oci-errors.js';
import { countManifestWrites } from './operations.js';
import { requestContext } from './request-context.js';
import { routeTable, router, type RouteHandlers } from './routes.js';

export interface AppDeps {
  pool: Pool;
  log: Logger;
  username: string;
  password: string;
  /** Counts login attempts (per address, per username; in Redis when configured). */
  throttle: LoginThrottle;
  /** express "trust proxy": whose X-Forwarded-For names the client address. */
  trustProxy?: string;
  metrics?: Metrics;
  /** scrypt checks at once. @defaultValue 2 */
  hashConcurrency?: number;
  /** Where blob GETs are redirected: the Harbor registry holding the bytes. */
  imageRegistry: string;
  uploadLimits?: UploadLimits;
  /** The admin API and the routes satellites call (adapter/admin/router.ts), when served. */
  apiRouter?: express.Router;
}

const API_VERSION = { 'Docker-Distribution-API-Version': 'registry/2.0' };
/** The API's paths: /v2, /v2/ and below (case-insensitive, as express's mount was). */
const V2_PREFIX = /^\/v2(?:\/|$)/i;
const pathOf = (url: string): string => {
  const q = url.indexOf('?');
  return q < 0 ? url : url.slice(0, q);
};
const noop = () => undefined;

export function createApp(deps: AppDeps): express.Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  if (deps.trustProxy !== undefined) app.set('trust proxy', /^\d+$/.test(deps.trustProxy) ? Number(deps.trustProxy) : deps.trustProxy);
  const context = requestContext(deps.log);
  app.use(context);

  const auth = new BasicAuthenticator({
    username: deps.username, password: deps.password, throttle: deps.throttle,
    credentials: new CredentialStore(deps.pool), hashConcurrency: deps.hashConcurrency, metrics: deps.metrics,
  });
  const artifacts = new ArtifactStore(deps.pool);
  const manifests = new ManifestService(artifacts);
  const blobs = new BlobService(new UploadStore(deps.pool, deps.uploadLimits), artifacts);
  const count = deps.metrics ? countManifestWrites(deps.metrics) : undefined;
  const route = router(routeTable({
    manifests: manifestHandlers(manifests),
    blobs: blobHandlers(blobs, deps.imageRegistry),
    uploads: uploadHandlers(blobs),
    tags: tagHandlers(manifests),
    referrers: referrerHandlers(manifests),
  } as RouteHandlers));

  /** A /v2 request (path without the query): authenticated, then routed; errors thrown. */
  const v2 = async (req: Request, res: Response, path: string): Promise<void> => {
    res.setHeader('Docker-Distribution-API-Version', 'registry/2.0');
    req.principal = await auth.authenticate(req.headers.authorization, req.ip ?? 'unknown', req.socket);
    count?.(req, res, noop);
    if (path.length <= 4) {
      // Spec "end-1": the API version check. 200 once authenticated.
      if (req.method === 'GET') {
        res.status(200).json({});
        return;
      }
      if (req.method === 'HEAD') {
        res.status(200).end();
        return;
      }
    } else if (await route(req, res, path)) {
      return;
    }
    throw new RegistryError('UNSUPPORTED', 'no such registry API route');
  };

  const onError = (err: unknown, req: Request, res: Response) => {
    const headers: Record<string, string> = { ...API_VERSION };
    if (err instanceof RegistryError && err.code === 'UNAUTHORIZED') Object.assign(headers, CHALLENGE);
    // A body left unread (refused before it arrived) cannot be drained safely: close.
    if (!req.complete) headers.Connection = 'close';
    writeError(res, err, req.log, headers);
  };

  app.use(healthRoutes(deps.pool));
  if (deps.apiRouter) app.use(deps.apiRouter);
  app.use((err: unknown, req: Request, res: Response, _next: NextFunction) => onError(err, req, res));
  app.use((req: Request, res: Response) => {
    writeOciError(res, 'NOT_FOUND', `no route for ${req.method} ${req.path}`);
  });

  // The registry API does not go through express's router: a /v2 request gets express's
  // request and response (the same prototypes app.handle gives it, so res.status, req.ip
  // with "trust proxy", req.query work), the request context, and the v2 function above;
  // everything else goes to the app as before. Express's router and final handler
  // allocated, per request, about a fifth of all the endpoint allocated while Harbor pushed
  // (bench/endpoint.ts profile: the router's handle/next, the URL rewriting of a mounted
  // router, finalhandler's closure), and a push is mostly /v2 requests (a HEAD per blob).
  const inner = app as unknown as { handle(req: Request, res: Response, callback?: NextFunction): void };
  const handle = inner.handle.bind(app);
  inner.handle = (req: Request, res: Response, callback?: NextFunction): void => {
    const path = pathOf(req.url);
    if (!V2_PREFIX.test(path)) {
      handle(req, res, callback);
      return;
    }
    req.res = res;
    res.req = req;
    Object.setPrototypeOf(req, app.request);
    Object.setPrototypeOf(res, app.response);
    req.originalUrl = req.url;
    context(req, res, noop);
    v2(req, res, path).catch((err: unknown) => {
      try {
        onError(err, req, res);
      } catch (failed) {
        // What express's final handler does when the error handler fails: log, and drop
        // the connection rather than leave the client waiting.
        req.log.error({ err: failed }, 'error answer failed');
        res.destroy();
      }
    });
  };
  return app;
}
