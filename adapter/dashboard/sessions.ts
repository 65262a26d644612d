import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Redis } from 'ioredis';
import { ApiError } from '../../harbor/errors.js';

// The dashboard's login sessions: a random id in an HttpOnly cookie, and per session a
// CSRF token the pages send back with every state-changing request. Kept in Redis when the
// service has it (every replica sees the same sessions, and logging out ends a session on
// all of them), else in this process. Only a hash of the id is stored, so whoever reads
// Redis cannot use a live session. A session ends at its expiry (absolute, not sliding)
// or at logout.

export interface Session {
  csrf: string;
  expiresAt: number;
}

/** The name of the cookie that holds the session id. */
export const SESSION_COOKIE = 'satellite_ui_session';

const key = (id: string) => createHash('sha256').update(id).digest('hex');

export const sameSecret = (a: string, b: string): boolean => {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
};

export class Sessions {
  private readonly local = new Map<string, Session>();

  constructor(private readonly o: { lifetimeSeconds: number; redis?: Redis; prefix?: string; now?: () => number }) {}

  get lifetimeSeconds(): number {
    return this.o.lifetimeSeconds;
  }

  private now(): number {
    return (this.o.now ?? Date.now)();
  }

  private redisKey(id: string): string {
    return `${this.o.prefix ?? 'local'}:ui-session:${key(id)}`;
  }

  /** A Redis command; Redis away is the service's trouble (503), never a login refused. */
  private async redis<T>(fn: (redis: Redis) => Promise<T>): Promise<T> {
    try {
      return await fn(this.o.redis!);
    } catch (err) {
      throw new ApiError('UNAVAILABLE', `the dashboard's sessions cannot be reached (Redis: ${(err as Error).message}); retry later`);
    }
  }

  async create(): Promise<{ id: string; session: Session }> {
    const id = randomBytes(32).toString('base64url');
    const session = { csrf: randomBytes(32).toString('base64url'), expiresAt: this.now() + this.o.lifetimeSeconds * 1000 };
    if (this.o.redis) {
      await this.redis((r) => r.set(this.redisKey(id), JSON.stringify(session), 'PX', this.o.lifetimeSeconds * 1000));
    } else {
      for (const [k, s] of this.local) if (s.expiresAt <= this.now()) this.local.delete(k);
      this.local.set(key(id), session);
    }
    return { id, session };
  }

  /** The live session `id` names; undefined when unknown, ended or expired. */
  async get(id: string | undefined): Promise<Session | undefined> {
    if (!id || id.length > 100) return undefined;
    const s = this.o.redis ? JSON.parse((await this.redis((r) => r.get(this.redisKey(id)))) ?? 'null') as Session | null : this.local.get(key(id));
    return s && s.expiresAt > this.now() ? s : undefined;
  }

  async end(id: string | undefined): Promise<void> {
    if (!id) return;
    if (this.o.redis) await this.redis((r) => r.del(this.redisKey(id)));
    else this.local.delete(key(id));
  }
}

/**
 * The value of cookie `name` in a Cookie header. Hand-written: one cookie read by name (our
 * own, whose value is base64url) does not need cookie-parser and its types.
 */
export function cookie(header: string | undefined, name: string): string | undefined {
  for (const part of (header ?? '').split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}
