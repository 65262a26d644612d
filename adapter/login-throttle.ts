import type { Redis } from 'ioredis';
import { redisConnection, type RedisTarget } from '../core/redis.js';
import { RateLimiterMemory, RateLimiterRedis, RateLimiterRes, type RateLimiterAbstract } from 'rate-limiter-flexible';
import type { Logger } from '../core/logger.js';

export interface LoginThrottleOptions {
  /**
   * Where the counters live, shared by every replica. Absent: this process only. While it
   * is unreachable the counters fall back to this process (see below).
   */
  redis?: Redis;
  /** Prefix of the Redis keys. */
  prefix: string;
  /** Login attempts that failed (or are being checked) per client address per window. */
  addressLimit: number;
  /** The same per username, whatever the address (guessing spread over many addresses). */
  usernameLimit: number;
  /** @defaultValue 60 (s) */
  windowSeconds?: number;
  /** How long a credential that succeeded from an address skips the reservation. @defaultValue 600 (s) */
  trustSeconds?: number;
  log?: Logger;
}

const seconds = (ms: number) => Math.max(1, Math.ceil(ms / 1000));

/**
 * Counts login attempts per client address and per username, in Redis so the limit holds
 * across replicas (rate-limiter-flexible's atomic INCR+TTL script).
 *
 * An attempt is counted *before* its secret is checked (`reserve`), and the reservation is
 * given back when the secret was right (`refund`): so N parallel guesses can never be
 * checked more than `limit` times, whatever their timing, and no guess is checked (no
 * hashing) once the limit is reached. A credential that succeeded from an address is
 * "trusted" from there for a while: its requests skip the reservation, so a client with
 * many requests in flight (Harbor) is never throttled by its own traffic, and a flood of
 * wrong guesses from the same address cannot lock it out. The trust token is an HMAC of
 * address and credential, so only the holder of the right secret can present it.
 *
 * Degraded mode: when Redis does not answer, each limiter uses its in-memory insurance
 * limiter (same limits, this process only) and a warning is logged. Guessing stays bounded
 * (per replica instead of overall) and Harbor's pushes never wait for Redis.
 */
export class LoginThrottle {
  private readonly byAddress: RateLimiterAbstract;
  private readonly byUsername: RateLimiterAbstract;
  private readonly trusted = new Map<string, number>();
  private readonly trustSeconds: number;
  private degraded = false;

  constructor(private readonly o: LoginThrottleOptions) {
    const duration = o.windowSeconds ?? 60;
    this.trustSeconds = o.trustSeconds ?? 600;
    const limiter = (name: string, points: number): RateLimiterAbstract => {
      const memory = new RateLimiterMemory({ keyPrefix: `${o.prefix}:${name}`, points, duration });
      if (!o.redis) return memory;
      return new RateLimiterRedis({
        storeClient: o.redis, keyPrefix: `${o.prefix}:${name}`, points, duration,
        rejectIfRedisNotReady: true, insuranceLimiter: memory,
      });
    };
    this.byAddress = limiter('addr', o.addressLimit);
    this.byUsername = limiter('user', o.usernameLimit);
    o.redis?.on('error', () => {
      if (!this.degraded) o.log?.warn('login throttle: redis unreachable; counting failed logins in this process only until it returns');
      this.degraded = true;
    });
    o.redis?.on('ready', () => {
      if (this.degraded) o.log?.info('login throttle: redis is back; counting across replicas again');
      this.degraded = false;
    });
  }

  /** Seconds this address or username must wait before trying again; 0 when it may try. */
  async blockedFor(address: string, username: string): Promise<number> {
    const [a, u] = await Promise.all([this.byAddress.get(address), this.byUsername.get(username)]);
    const over = (res: RateLimiterRes | null, limit: number) => (res && res.consumedPoints >= limit ? res.msBeforeNext : 0);
    const ms = Math.max(over(a, this.o.addressLimit), over(u, this.o.usernameLimit));
    return ms > 0 ? seconds(ms) : 0;
  }

  /**
   * Counts one attempt against the address and the username, atomically. Returns 0 when
   * the attempt may be checked, else the seconds to wait (nothing is then counted).
   */
  async reserve(address: string, username: string): Promise<number> {
    try {
      await this.byAddress.consume(address);
    } catch (err) {
      return this.rejection(err);
    }
    try {
      await this.byUsername.consume(username);
    } catch (err) {
      await this.byAddress.reward(address).catch(() => undefined);
      return this.rejection(err);
    }
    return 0;
  }

  /** Gives back a reservation: the secret was right, or it could not be checked at all. */
  async refund(address: string, username: string): Promise<void> {
    await Promise.all([this.byAddress.reward(address), this.byUsername.reward(username)]).catch(() => undefined);
  }

  /** Counts a failure that was not reserved (a trusted credential that stopped working). */
  async fail(address: string, username: string): Promise<void> {
    await Promise.all([this.byAddress.penalty(address), this.byUsername.penalty(username)]).catch(() => undefined);
  }

  async isTrusted(token: string): Promise<boolean> {
    const until = this.trusted.get(token);
    if (until !== undefined && until > Date.now()) return true;
    if (!this.o.redis || this.o.redis.status !== 'ready') return false;
    const found = await this.o.redis.exists(`${this.o.prefix}:trust:${token}`).catch(() => 0);
    if (found) this.remember(token);
    return found === 1;
  }

  async trust(token: string): Promise<void> {
    if (this.trusted.has(token) && this.trusted.get(token)! > Date.now() + (this.trustSeconds * 1000) / 2) return;
    this.remember(token);
    if (this.o.redis?.status === 'ready') {
      await this.o.redis.set(`${this.o.prefix}:trust:${token}`, '1', 'EX', this.trustSeconds).catch(() => undefined);
    }
  }

  async distrust(token: string): Promise<void> {
    this.trusted.delete(token);
    if (this.o.redis?.status === 'ready') await this.o.redis.del(`${this.o.prefix}:trust:${token}`).catch(() => undefined);
  }

  private remember(token: string): void {
    if (this.trusted.size > 10_000) this.trusted.clear();
    this.trusted.set(token, Date.now() + this.trustSeconds * 1000);
  }

  /**
   * Waits (at most `ms`) for Redis to answer, so the first attempts after start are counted
   * where the later ones are; without it they would go to the fallback counters.
   */
  async ready(ms = 2000): Promise<void> {
    const redis = this.o.redis;
    if (!redis || redis.status === 'ready') return;
    await new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        redis.off('ready', done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      redis.once('ready', done);
    });
  }

  private rejection(err: unknown): number {
    if (err instanceof RateLimiterRes) return seconds(err.msBeforeNext);
    // Neither Redis nor the insurance limiter answered: refuse rather than check unbounded.
    this.o.log?.warn({ err: (err as Error)?.message }, 'login throttle failed; refusing the attempt');
    return 1;
  }
}

/**
 * A connection for the login throttle: commands fail at once while Redis is away (no
 * offline queue, no retries, a short timeout), so a login never waits for Redis; the
 * throttle then counts in this process.
 */
export function throttleConnection(target: RedisTarget): Redis {
  const redis = redisConnection(target, { enableOfflineQueue: false, maxRetriesPerRequest: 0, commandTimeout: 500, connectTimeout: 2000 });
  redis.on('error', () => undefined); // reported once by the throttle
  return redis;
}
