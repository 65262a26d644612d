import { createHash, timingSafeEqual } from 'node:crypto';
import type { NextFunction, Request, Response } from 'express';
import { RegistryError } from '../core/errors.js';
import { FailureThrottle } from './throttle.js';

export const REALM = 'Satellite for Harbor';

/** The Basic challenge every unauthenticated /v2 request gets (Harbor sends credentials only after one). */
export const CHALLENGE = { 'WWW-Authenticate': `Basic realm="${REALM}", charset="UTF-8"` };

function sha256(value: string): Buffer {
  return createHash('sha256').update(value, 'utf8').digest();
}

/**
 * Checks HTTP Basic credentials (RFC 7617). Only a SHA-256 of "user:password" is kept in
 * memory, and it is compared in constant time, so neither the secret nor how much of it
 * matched leaks. Wrong credentials from one address beyond the limit get 429 until the
 * window passes.
 */
export class BasicAuthenticator {
  private readonly expected: Buffer;

  constructor(username: string, password: string, private readonly throttle: FailureThrottle) {
    this.expected = sha256(`${username}:${password}`);
  }

  check(authorization: string | undefined, address: string): void {
    const retryAfter = this.throttle.blockedFor(address);
    if (retryAfter > 0) {
      throw new RegistryError('TOOMANYREQUESTS', 'too many failed logins from this address; wait and retry', undefined, retryAfter);
    }
    if (authorization === undefined) throw new RegistryError('UNAUTHORIZED', 'authentication required');
    const m = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(authorization);
    const given = m ? Buffer.from(m[1]!, 'base64').toString('utf8') : '';
    if (!timingSafeEqual(sha256(given), this.expected)) {
      this.throttle.fail(address);
      throw new RegistryError('UNAUTHORIZED', 'invalid username or password');
    }
  }

  middleware() {
    return (req: Request, _res: Response, next: NextFunction): void => {
      this.check(req.headers.authorization, req.socket.remoteAddress ?? 'unknown');
      next();
    };
  }
}
