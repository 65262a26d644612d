import { createHash, timingSafeEqual } from 'node:crypto';
import type { NextFunction, Request, Response } from 'express';
import { RegistryError } from '../core/errors.js';
import type { CredentialStore } from '../core/store/credential-store.js';
import { FailureThrottle } from './throttle.js';

export const REALM = 'Satellite for Harbor';

/** The Basic challenge every unauthenticated /v2 request gets (Harbor sends credentials only after one). */
export const CHALLENGE = { 'WWW-Authenticate': `Basic realm="${REALM}", charset="UTF-8"` };

/** Who a request acts for: every group, or the one group its credential is bound to. */
export interface Principal {
  group?: string;
}

declare module 'express-serve-static-core' {
  interface Request {
    principal?: Principal;
  }
}

function sha256(value: string): Buffer {
  return createHash('sha256').update(value, 'utf8').digest();
}

/**
 * Checks HTTP Basic credentials (RFC 7617): the endpoint's own credential (only a SHA-256 of
 * "user:password" is kept in memory, compared in constant time), or a per-group credential
 * from the database (scrypt; a successful check is remembered for `cacheMs` so Harbor's
 * hundreds of requests per run cost one derivation). Wrong credentials from one address
 * beyond the limit get 429 until the window passes; a missing header is not a failure.
 */
export class BasicAuthenticator {
  private readonly expected: Buffer;
  private readonly verified = new Map<string, { group: string; until: number }>();

  constructor(
    username: string,
    password: string,
    private readonly throttle: FailureThrottle,
    private readonly credentials?: CredentialStore,
    private readonly cacheMs = 30_000,
  ) {
    this.expected = sha256(`${username}:${password}`);
  }

  async authenticate(authorization: string | undefined, address: string): Promise<Principal> {
    const retryAfter = this.throttle.blockedFor(address);
    if (retryAfter > 0) {
      throw new RegistryError('TOOMANYREQUESTS', 'too many failed logins from this address; wait and retry', undefined, retryAfter);
    }
    if (authorization === undefined) throw new RegistryError('UNAUTHORIZED', 'authentication required');
    const m = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(authorization);
    const given = m ? Buffer.from(m[1]!, 'base64').toString('utf8') : '';
    const digest = sha256(given);
    if (timingSafeEqual(digest, this.expected)) return {};
    const group = await this.groupCredential(given, digest.toString('hex'));
    if (group !== undefined) return { group };
    this.throttle.fail(address);
    throw new RegistryError('UNAUTHORIZED', 'invalid username or password');
  }

  private async groupCredential(given: string, key: string): Promise<string | undefined> {
    if (!this.credentials) return undefined;
    const cached = this.verified.get(key);
    if (cached && cached.until > Date.now()) return cached.group;
    const colon = given.indexOf(':');
    if (colon <= 0) return undefined;
    const group = await this.credentials.authenticate(given.slice(0, colon), given.slice(colon + 1));
    if (group !== undefined) {
      if (this.verified.size > 1000) this.verified.clear();
      this.verified.set(key, { group, until: Date.now() + this.cacheMs });
    }
    return group;
  }

  middleware() {
    return async (req: Request, _res: Response, next: NextFunction): Promise<void> => {
      req.principal = await this.authenticate(req.headers.authorization, req.ip ?? 'unknown');
      next();
    };
  }
}

/** A credential bound to a group may touch only that group's repositories. */
export function checkScope(principal: Principal | undefined, name: string | undefined): void {
  if (principal?.group === undefined || name === undefined) return;
  if (name.split('/')[0] !== principal.group) {
    throw new RegistryError('DENIED', `this credential may write group ${principal.group} only`, { name });
  }
}
