import type { Response } from 'express';
import { InvalidDataError, RegistryError, StoreUnavailableError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { writeOciError } from '../core/oci/errors.js';

// The endpoint's one mapper from anything a handler throws to a protocol answer; the codes,
// their statuses and the envelope are core/oci/errors.ts's, shared with the agent's server.

/**
 * Client mistakes keep their message; everything else is a masked 5xx, logged with its stack
 * and the request id.
 */
export function writeError(res: Response, err: unknown, log: Logger, headers: Record<string, string> = {}): void {
  if (err instanceof RegistryError) {
    const extra: Record<string, string> = err.retryAfterSeconds === undefined ? {} : { 'Retry-After': String(err.retryAfterSeconds) };
    writeOciError(res, err.code, err.message, { detail: err.detail, headers: { ...extra, ...headers } });
    return;
  }
  if (err instanceof InvalidDataError) {
    // The net behind the validators: a value from the request that Postgres refused as data
    // (SQLSTATE class 22). Every input is checked before any SQL, so this is not expected;
    // it is still the client's value, never a 500.
    log.warn({ err }, 'a request value was refused by the database');
    writeOciError(res, 'PARAMETER_INVALID', 'a value in the request cannot be stored or compared (for example a NUL character)', { headers });
    return;
  }
  if (err instanceof StoreUnavailableError) {
    log.error({ err }, 'storage unavailable');
    writeOciError(res, 'UNAVAILABLE', 'the service cannot record changes right now; retry later', { headers: { 'Retry-After': '5', ...headers } });
    return;
  }
  log.error({ err }, 'unhandled error');
  writeOciError(res, 'UNKNOWN', 'internal error; see the endpoint log for the request id', { detail: { requestId: res.getHeader('X-Request-Id') } });
}
