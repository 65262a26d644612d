import { HarborApiError } from '@harbor-api/client';

// Errors of the Harbor-facing domain (groups, satellites, webhooks). Each carries a code of
// the admin API's one error format; adapter/admin/errors.ts maps it to an HTTP status.

export type ApiErrorCode =
  | 'BAD_REQUEST'
  | 'UNAUTHORIZED'
  | 'FORBIDDEN'
  | 'NOT_FOUND'
  | 'CONFLICT'
  | 'FLATTENING'
  | 'TOO_MANY_REQUESTS'
  | 'HARBOR_ERROR'
  | 'UNAVAILABLE';

export class ApiError extends Error {
  constructor(
    readonly code: ApiErrorCode,
    message: string,
    /** The input field the error is about, e.g. "filters[0].type". */
    readonly field?: string,
    /** Harbor's status when the error is Harbor's own. */
    readonly harborStatus?: number,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

export const notFound = (what: string) => new ApiError('NOT_FOUND', `${what} does not exist`);
export const badRequest = (field: string, message: string) => new ApiError('BAD_REQUEST', `${field}: ${message}`, field);

/**
 * Harbor's own error, passed on with its message: what Harbor refused because of the input
 * (400, 404, 409, 412) keeps Harbor's status; Harbor refusing our credentials, failing, or
 * unreachable is the service's problem (502), never the client's.
 */
export function fromHarbor(err: unknown): unknown {
  if (!(err instanceof HarborApiError)) return err;
  const passOn = [400, 404, 409, 412].includes(err.status);
  const reason = err.status === 0 ? `Harbor is unreachable (${err.harborMessage})`
    : err.status === 401 || err.status === 403 ? `Harbor refused HARBOR_USERNAME's credentials or rights for ${err.operation}: ${err.harborMessage}`
      : `Harbor ${err.operation}: ${err.harborMessage}`;
  return new ApiError(passOn ? 'HARBOR_ERROR' : 'UNAVAILABLE', reason, undefined, passOn ? err.status : 502);
}

/** Runs a Harbor call, turning its failure into the domain's error. */
export async function viaHarbor<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw fromHarbor(err);
  }
}
