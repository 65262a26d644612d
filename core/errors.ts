// Errors the domain raises. Each carries an error code of the OCI distribution spec
// ("Error Codes"); core/oci/errors.ts, the one catalog, maps a code to its HTTP status and envelope.

export type RegistryErrorCode =
  | 'BLOB_UNKNOWN'
  | 'BLOB_UPLOAD_INVALID'
  | 'BLOB_UPLOAD_UNKNOWN'
  | 'DIGEST_INVALID'
  | 'MANIFEST_BLOB_UNKNOWN'
  | 'MANIFEST_INVALID'
  | 'MANIFEST_UNKNOWN'
  | 'NAME_INVALID'
  | 'NAME_UNKNOWN'
  | 'SIZE_INVALID'
  | 'TAG_INVALID'
  | 'UNAUTHORIZED'
  | 'DENIED'
  | 'UNSUPPORTED'
  | 'TOOMANYREQUESTS'
  | 'RANGE_INVALID'
  | 'PAYLOAD_TOO_LARGE'
  /** A query parameter whose value no record can hold (e.g. a NUL character). */
  | 'PARAMETER_INVALID';

export class RegistryError extends Error {
  constructor(
    readonly code: RegistryErrorCode,
    message: string,
    readonly detail?: unknown,
    /** For TOOMANYREQUESTS: when the client may try again. */
    readonly retryAfterSeconds?: number,
  ) {
    super(message);
    this.name = 'RegistryError';
  }
}

/** A storage failure the caller may retry (connection lost, serialization conflict). */
export class StoreUnavailableError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'StoreUnavailableError';
  }
}

/** Data the database refuses as a value (SQLSTATE class 22: bad encoding, NUL, out of range). */
export class InvalidDataError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'InvalidDataError';
  }
}
