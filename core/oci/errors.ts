import type { ServerResponse } from 'node:http';
import type { RegistryErrorCode } from '../errors.js';

// The one catalog of the OCI distribution API's errors, for both /v2 servers (the
// endpoint's, adapter/, and the agent's, agent/serve/): each code this project answers with,
// the code written on the wire and the HTTP status, from the OCI distribution spec's "Error
// Codes" table (and distribution's errcode registry for the statuses the spec leaves open).
// One function writes the spec's {"errors":[…]} envelope. It is written on node's own
// ServerResponse so core/ needs no web framework; express's Response is one.

interface CatalogEntry {
  wire: string;
  status: number;
}

export type OciErrorCode = RegistryErrorCode | 'UNAVAILABLE' | 'UNKNOWN' | 'NOT_FOUND' | 'RANGE_NOT_SATISFIABLE';

export const ERROR_CATALOG: Record<OciErrorCode, CatalogEntry> = {
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
  // A blob GET whose Range lies past the blob (RFC 9110 15.5.17), with the blob's code.
  RANGE_NOT_SATISFIABLE: { wire: 'BLOB_UNKNOWN', status: 416 },
  // A body over the limit: 413 Payload Too Large, reported as a size error.
  PAYLOAD_TOO_LARGE: { wire: 'SIZE_INVALID', status: 413 },
  // A query parameter no record can match (NUL in artifactType=, say): the spec has no code
  // for it, so the request is refused as an operation this registry does not support, 400.
  PARAMETER_INVALID: { wire: 'UNSUPPORTED', status: 400 },
  UNAVAILABLE: { wire: 'UNAVAILABLE', status: 503 },
  UNKNOWN: { wire: 'UNKNOWN', status: 500 },
  // A path outside the registry API: the spec has no code for it.
  NOT_FOUND: { wire: 'NOT_FOUND', status: 404 },
};

export interface OciErrorOptions {
  detail?: unknown;
  headers?: Record<string, string>;
}

/**
 * Answers with `code`'s status and the spec's envelope. A HEAD answer carries the status and
 * headers only (RFC 9110 9.3.2). Once the headers are sent, the status cannot change: the
 * connection is cut, which is how the client learns the transfer failed.
 */
export function writeOciError(res: ServerResponse, code: OciErrorCode, message: string, opts: OciErrorOptions = {}): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const entry = ERROR_CATALOG[code];
  res.statusCode = entry.status;
  for (const [name, value] of Object.entries(opts.headers ?? {})) res.setHeader(name, value);
  res.setHeader('Content-Type', 'application/json; charset=utf-8');
  if (res.req?.method === 'HEAD') {
    res.end();
    return;
  }
  const body = Buffer.from(JSON.stringify({ errors: [{ code: entry.wire, message, ...(opts.detail === undefined ? {} : { detail: opts.detail }) }] }));
  res.setHeader('Content-Length', body.length);
  res.end(body);
}
