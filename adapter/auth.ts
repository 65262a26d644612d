import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import type { NextFunction, Request, Response } from 'express';
import pLimit from 'p-limit';
import { RegistryError } from '../core/errors.js';
import { isStorableText } from '../core/oci/manifest.js';
import type { Metrics } from '../core/metrics.js';
import { dummySecretHash, verifySecret, type CredentialStore } from '../core/store/credential-store.js';
import type { LoginThrottle } from './login-throttle.js';

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

/** The key resources are counted under for a credential (e.g. open upload sessions). */
export function credentialOwner(principal: Principal | undefined): string {
  return principal?.group === undefined ? 'endpoint' : `group:${principal.group}`;
}

const sha256 = (value: string): Buffer => createHash('sha256').update(value, 'utf8').digest();

function parseBasic(authorization: string): { username: string; password: string } {
  const m = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(authorization);
  const given = m ? Buffer.from(m[1]!, 'base64').toString('utf8') : '';
  const colon = given.indexOf(':');
  return colon < 0 ? { username: given, password: '' } : { username: given.slice(0, colon), password: given.slice(colon + 1) };
}

export interface AuthenticatorOptions {
  /** The credential that may write every group (the endpoint's, or the admin's). */
  username: string;
  password: string;
  throttle: LoginThrottle;
  /** Per-group credentials (scrypt hashes in Postgres); absent for the admin credential. */
  credentials?: CredentialStore;
  /** scrypt derivations at once in this process; more wait, and past a queue get 429. @defaultValue 2 */
  hashConcurrency?: number;
  metrics?: Metrics;
}

/**
 * Checks HTTP Basic credentials (RFC 7617): the configured credential (a SHA-256 of
 * "user:password" compared in constant time), or a per-group credential (scrypt hash in
 * Postgres). Every attempt is counted by the LoginThrottle before its secret is checked;
 * every failed attempt costs the same work (one credential lookup and one scrypt, against
 * a dummy hash when the username is unknown), so neither timing nor load tells a known
 * username from an unknown one. scrypt runs at most `hashConcurrency` at a time.
 *
 * A group credential that verified once is remembered with the hash it verified against;
 * each later request re-reads the stored hash (one indexed query) and accepts only while
 * it is unchanged, so a revoked or replaced credential stops working at once on every
 * replica, without paying scrypt again.
 */
export class BasicAuthenticator {
  private readonly expected: Buffer;
  private readonly hmacKey: Buffer;
  private readonly verified = new Map<string, { group: string; secretHash: string }>();
  /** Connections on which the configured credential verified, with the header it came in. */
  private readonly endpointConnections = new WeakMap<object, string>();
  /** Checks in flight of credentials not trusted yet, by trust token. */
  private readonly firstContact = new Map<string, Promise<Principal>>();
  private readonly hashing: ReturnType<typeof pLimit>;
  private readonly maxWaiting: number;

  constructor(private readonly o: AuthenticatorOptions) {
    this.expected = sha256(`${o.username}:${o.password}`);
    // Keys the throttle stores (usernames, trust tokens) are HMACs under a key only the
    // replicas know, so Redis holds nothing that helps guess a secret offline.
    this.hmacKey = sha256(`satellite-login-throttle\0${o.username}\0${o.password}`);
    const concurrency = o.hashConcurrency ?? 2;
    this.hashing = pLimit(concurrency);
    this.maxWaiting = concurrency * 16;
  }

  private mac(kind: string, value: string): string {
    return createHmac('sha256', this.hmacKey).update(`${kind}\0${value}`).digest('base64url').slice(0, 32);
  }

  /**
   * `connection`, when given (the request's socket), remembers that the configured
   * credential verified on it: later requests on that connection with the very same header
   * skip the HMAC, the trust lookup and the hash. Only that credential, which cannot be
   * revoked while the process runs; a group credential is checked against Postgres on
   * every request, so its revocation takes effect at once. The header compared is the one
   * the same client sent and had verified, so the comparison tells it nothing new.
   */
  async authenticate(authorization: string | undefined, address: string, connection?: object): Promise<Principal> {
    if (authorization === undefined) throw new RegistryError('UNAUTHORIZED', 'authentication required');
    if (connection !== undefined && this.endpointConnections.get(connection) === authorization) return {};
    const principal = await this.check(authorization, address);
    if (connection !== undefined && principal.group === undefined) this.endpointConnections.set(connection, authorization);
    return principal;
  }

  private async check(authorization: string, address: string): Promise<Principal> {
    const { username, password } = parseBasic(authorization);
    const token = this.mac('trust', `${address}\0${username}:${password}`);
    const trusted = await this.trusted(token, username, password);
    if (trusted) return trusted;
    // A client's first burst (the same credential, many requests at once) is checked once:
    // the others wait for that check and then find the credential trusted, instead of each
    // taking a place in the throttle meant for guesses.
    const first = this.firstContact.get(token);
    if (first) {
      await first.catch(() => undefined);
      const now = await this.trusted(token, username, password);
      if (now) return now;
    }
    const attempt = this.counted(address, username, password, token);
    if (!first) {
      this.firstContact.set(token, attempt);
      const clear = () => this.firstContact.delete(token);
      void attempt.then(clear, clear);
    }
    return attempt;
  }

  /** The principal of a trusted credential that still verifies; else undefined (and no longer trusted). */
  private async trusted(token: string, username: string, password: string): Promise<Principal | undefined> {
    if (!(await this.o.throttle.isTrusted(token))) return undefined;
    const principal = await this.verifyKnown(username, password);
    // It stopped working (revoked, rotated): an ordinary attempt from now on.
    if (!principal) await this.o.throttle.distrust(token);
    return principal;
  }

  /** An attempt counted before its secret is checked, and refunded when it was right. */
  private async counted(address: string, username: string, password: string, token: string): Promise<Principal> {
    const user = this.mac('user', username);
    const wait = (await this.o.throttle.blockedFor(address, user)) || (await this.o.throttle.reserve(address, user));
    if (wait > 0) {
      this.o.metrics?.loginFailures.inc({ result: 'throttled' });
      throw new RegistryError('TOOMANYREQUESTS', 'too many failed logins from this address or for this username; wait and retry', undefined, wait);
    }
    let principal: Principal | undefined;
    try {
      principal = (await this.verifyKnown(username, password)) ?? (await this.verifySecret(username, password));
    } catch (err) {
      await this.o.throttle.refund(address, user); // not checked: not the client's failure
      throw err;
    }
    if (!principal) {
      this.o.metrics?.loginFailures.inc({ result: 'denied' });
      throw new RegistryError('UNAUTHORIZED', 'invalid username or password');
    }
    await this.o.throttle.refund(address, user);
    await this.o.throttle.trust(token);
    return principal;
  }

  /** The configured credential, or a group credential verified before (no hashing). */
  private async verifyKnown(username: string, password: string): Promise<Principal | undefined> {
    if (timingSafeEqual(sha256(`${username}:${password}`), this.expected)) return {};
    const key = sha256(`${username}:${password}`).toString('hex');
    const known = this.verified.get(key);
    if (!known || !this.o.credentials) return undefined;
    const current = await this.o.credentials.find(username);
    if (current?.secretHash === known.secretHash && current.group === known.group) return { group: known.group };
    this.verified.delete(key);
    return undefined;
  }

  /**
   * One lookup and one scrypt, whether or not the username exists, at most `hashConcurrency`
   * at a time; past a short queue the attempt is refused rather than left waiting.
   */
  private async verifySecret(username: string, password: string): Promise<Principal | undefined> {
    const store = this.o.credentials;
    if (!store) return undefined;
    if (this.hashing.pendingCount >= this.maxWaiting) {
      throw new RegistryError('TOOMANYREQUESTS', 'too many logins being checked at once; retry shortly', undefined, 1);
    }
    return this.hashing(async () => {
      // No username holds a NUL (nor can Postgres compare one): such a name is unknown, and
      // costs the same scrypt as any other.
      const row = isStorableText(username) ? await store.find(username) : undefined;
      this.o.metrics?.secretHashes.inc();
      const ok = await verifySecret(password, row?.secretHash ?? (await dummySecretHash()));
      if (!ok || !row) return undefined;
      if (this.verified.size > 1000) this.verified.clear();
      this.verified.set(sha256(`${username}:${password}`).toString('hex'), { group: row.group, secretHash: row.secretHash });
      return { group: row.group };
    });
  }

  middleware() {
    return async (req: Request, _res: Response, next: NextFunction): Promise<void> => {
      req.principal = await this.authenticate(req.headers.authorization, req.ip ?? 'unknown');
      next();
    };
  }
}

/**
 * A credential bound to a group may touch only that group's repositories: the name's first
 * path segment must be the group, whole (so "edge" never reaches "edge-eu/…").
 */
export function checkScope(principal: Principal | undefined, name: string | undefined): void {
  if (principal?.group === undefined || name === undefined) return;
  if (name.split('/')[0] !== principal.group) {
    throw new RegistryError('DENIED', `this credential may write group ${principal.group} only`, { name });
  }
}
