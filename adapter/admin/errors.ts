import type { NextFunction, Request, Response } from 'express';
import { StoreUnavailableError } from '../../core/errors.js';
import { ApiError, type ApiErrorCode } from '../../harbor/errors.js';

// The admin API's one error format, {"errors":[{"code","message","field"?}]}, and its one
// mapper: domain errors keep their message; request validation (express-openapi-validator,
// body parsing) becomes BAD_REQUEST naming the field; anything else is a masked 500, logged
// with the request id.

const STATUS: Record<ApiErrorCode, number> = {
  BAD_REQUEST: 400, UNAUTHORIZED: 401, FORBIDDEN: 403, NOT_FOUND: 404, CONFLICT: 409, FLATTENING: 409,
  TOO_MANY_REQUESTS: 429, HARBOR_ERROR: 502, UNAVAILABLE: 503,
};

export const ADMIN_CHALLENGE = { 'WWW-Authenticate': 'Basic realm="Satellite for Harbor admin API", charset="UTF-8"' };

interface ErrorItem {
  code: string;
  message: string;
  field?: string;
}

export function sendErrors(res: Response, status: number, errors: ErrorItem[], headers: Record<string, string> = {}): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  res.status(status).set(headers).json({ errors });
}

/** "/body/filters/0/type" → "filters[0].type"; "/params/name" → "name"; "/query/x" → "x". */
export function fieldOf(path: string | undefined): string | undefined {
  if (!path || !/^\.?\/?(body|params|query|headers|path)\b/.test(path)) return undefined;
  const parts = path.replace(/^\.?\/?(body|params|query|headers|path)\/?/, '').split(/[/.]/).filter(Boolean);
  if (parts.length === 0) return path.includes('body') ? 'body' : undefined;
  return parts.reduce((acc, p) => (/^\d+$/.test(p) ? `${acc}[${p}]` : acc ? `${acc}.${p}` : p), '');
}

interface ValidatorError {
  status?: number;
  errors?: { path?: string; message?: string; errorCode?: string }[];
  message?: string;
  type?: string;
  headers?: Record<string, string>;
}

export function adminErrorHandler() {
  return (err: unknown, req: Request, res: Response, _next: NextFunction): void => {
    if (err instanceof ApiError) {
      const status = err.code === 'HARBOR_ERROR' || err.code === 'UNAVAILABLE' ? err.harborStatus ?? STATUS[err.code] : STATUS[err.code];
      // Basic credentials are asked for everywhere but on the webhook receiver (Harbor's secret).
      // Nor on the dashboard's requests (a session cookie): a browser would pop up its own login.
      const challenge = err.code === 'UNAUTHORIZED' && !req.originalUrl.startsWith('/api/v1/webhooks/') && !res.locals.viaSession;
      sendErrors(res, status, [{ code: err.code, message: err.message, ...(err.field ? { field: err.field } : {}) }], challenge ? ADMIN_CHALLENGE : {});
      return;
    }
    if (err instanceof StoreUnavailableError) {
      req.log.error({ err }, 'storage unavailable');
      sendErrors(res, 503, [{ code: 'UNAVAILABLE', message: 'the database cannot be reached right now; retry later' }], { 'Retry-After': '5' });
      return;
    }
    const e = err as ValidatorError;
    if (e?.type === 'entity.parse.failed') {
      sendErrors(res, 400, [{ code: 'BAD_REQUEST', message: 'body: not valid JSON', field: 'body' }]);
      return;
    }
    if (e?.type === 'entity.too.large') {
      sendErrors(res, 413, [{ code: 'BAD_REQUEST', message: 'body: too large', field: 'body' }]);
      return;
    }
    if (e?.status === 404 || e?.status === 405) {
      const what = e.status === 404 ? 'no such route' : 'method not allowed on this route';
      sendErrors(res, e.status, [{ code: e.status === 404 ? 'NOT_FOUND' : 'METHOD_NOT_ALLOWED', message: `${what}: ${req.method} ${req.originalUrl.split('?')[0]}` }], e.headers ?? {});
      return;
    }
    if (typeof e?.status === 'number' && e.status >= 400 && e.status < 500) {
      // express-openapi-validator: the request does not match the document.
      const code = e.status === 415 ? 'UNSUPPORTED_MEDIA_TYPE' : 'BAD_REQUEST';
      const items = (e.errors?.length ? e.errors : [{ message: e.message ?? 'bad request' }]).map((x) => {
        const field = fieldOf((x as { path?: string }).path);
        return { code, message: field ? `${field}: ${x.message}` : String(x.message), ...(field ? { field } : {}) };
      });
      sendErrors(res, e.status, items, e.headers ?? {});
      return;
    }
    req.log.error({ err }, 'unhandled error in the admin API');
    sendErrors(res, 500, [{ code: 'UNKNOWN', message: `internal error; see the log for request ${req.id}` }]);
  };
}
