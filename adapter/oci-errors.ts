import type { Response } from 'express';
import { InvalidDataError, RegistryError, StoreUnavailableError, type RegistryErrorCode } from '../core/errors.js';
import type { Logger } from '../core/logger.js';

// The one catalog of protocol errors: each domain code, the code written on the wire and
// the HTTP status, from the OCI distribution spec's "Error Codes" table (and distribution's
// errcode registry for the statuses the spec leaves open).
interface CatalogEntry {
  wire: string;
  status: number;
}

export const ERROR_CATALOG: Record<RegistryErrorCode | 'UNAVAILABLE' | 'UNKNOWN', CatalogEntry> = {
  BLOB_UNKNOWN: { wire: 'BLOB_UNKNOWN', status: 404 },
  BLOB_UPLOAD_INVALID: { wire: 'BLOB_UPLOAD_INVALID', status: 400 },
  BLOB_UPLOAD_UNKNOWN: { wire: 'BLOB_UPLOAD_UNKNOWN', status: 404 },
  DIGEST_INVALID: { wire: 'DIGEST_INVALID', status: 400 },
  MANIFEST_BLOB_UNKNOWN: { wire: 'MANIFEST_BLOB_UNKNOWN', status: 404 },
  MANIFEST_INVALID: { wire: 'MANIFEST_INVALID', status: 400 },
  MANIFEST_UNKNOWN: { wire: 'MANIFEST_UNKNOWN', status: 404 },
  NAME_INVALID: { wire: 'NAME_INVALID', status: 400 },
  NAME_UNKNOWN: { wire: 'NAME_UNKNOWN', status: 404 },
  SIZE_INVALID: { wire: 'SIZE_INVALID', status: 400 },
  TAG_INVALID: { wire: 'TAG_INVALID', status: 400 },
  UNAUTHORIZED: { wire: 'UNAUTHORIZED', status: 401 },
  DENIED: { wire: 'DENIED', status: 403 },
  UNSUPPORTED: { wire: 'UNSUPPORTED', status: 405 },
  TOOMANYREQUESTS: { wire: 'TOOMANYREQUESTS', status: 429 },
  // An out-of-order chunk: the spec's 416 with the upload error code.
  RANGE_INVALID: { wire: 'BLOB_UPLOAD_INVALID', status: 416 },
  // A body over the limit: 413 Payload Too Large, reported as a size error.
  PAYLOAD_TOO_LARGE: { wire: 'SIZE_INVALID', status: 413 },
  // A query parameter no record can match (NUL in artifactType=, say): the spec has no code
  // for it, so the request is refused as an operation this registry does not support, 400.
  PARAMETER_INVALID: { wire: 'UNSUPPORTED', status: 400 },
  UNAVAILABLE: { wire: 'UNAVAILABLE', status: 503 },
  UNKNOWN: { wire: 'UNKNOWN', status: 500 },
};

interface Envelope {
  errors: { code: string; message: string; detail?: unknown }[];
}

function send(res: Response, status: number, body: Envelope, headers: Record<string, string> = {}): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  res.status(status).set(headers).type('application/json');
  // HEAD answers carry the status and headers only (RFC 9110 9.3.2).
  if (res.req.method === 'HEAD') res.end();
  else res.send(JSON.stringify(body));
}

/**
 * The one mapper from anything thrown to a protocol answer. Client mistakes keep their
 * message; everything else is a masked 5xx, logged with its stack and the request id.
 */
export function writeError(res: Response, err: unknown, log: Logger, headers: Record<string, string> = {}): void {
  if (err instanceof RegistryError) {
    const entry = ERROR_CATALOG[err.code];
    const e: Envelope['errors'][number] = { code: entry.wire, message: err.message };
    if (err.detail !== undefined) e.detail = err.detail;
    const extra: Record<string, string> = err.retryAfterSeconds === undefined ? {} : { 'Retry-After': String(err.retryAfterSeconds) };
    send(res, entry.status, { errors: [e] }, { ...extra, ...headers });
    return;
  }
  if (err instanceof InvalidDataError) {
    // The net behind the validators: a value from the request that Postgres refused as data
    // (SQLSTATE class 22). Every input is checked before any SQL, so this is not expected;
    // it is still the client's value, never a 500.
    log.warn({ err }, 'a request value was refused by the database');
    send(res, 400, { errors: [{ code: ERROR_CATALOG.PARAMETER_INVALID.wire, message: 'a value in the request cannot be stored or compared (for example a NUL character)' }] }, headers);
    return;
  }
  if (err instanceof StoreUnavailableError) {
    log.error({ err }, 'storage unavailable');
    send(res, 503, { errors: [{ code: 'UNAVAILABLE', message: 'the service cannot record changes right now; retry later' }] }, { 'Retry-After': '5', ...headers });
    return;
  }
  log.error({ err }, 'unhandled error');
  send(res, 500, { errors: [{ code: 'UNKNOWN', message: 'internal error; see the endpoint log for the request id', detail: { requestId: res.getHeader('X-Request-Id') } }] });
}
