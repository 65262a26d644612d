import { Redis, type RedisOptions } from 'ioredis';
import type { Config } from './config.js';

/**
 * Where the service's Redis is: a URL (REDIS_URL), or ioredis' options for a master found
 * through Redis Sentinel (REDIS_SENTINELS, REDIS_SENTINEL_MASTER). Every connection the
 * service opens (the queue's producers and workers, the login throttle) is made from it, so
 * each follows a failover: ioredis asks the sentinels for the master again on every
 * reconnection, and BullMQ duplicates its connections with the same options.
 */
export type RedisTarget = string | RedisOptions;

export function redisTarget(config: Config): RedisTarget {
  const password = config.redisPassword === undefined ? {} : { password: config.redisPassword };
  if (config.redisSentinels === undefined) {
    return config.redisPassword === undefined ? config.redisUrl : { ...parseRedisUrl(config.redisUrl), ...password };
  }
  return {
    sentinels: config.redisSentinels,
    name: config.redisSentinelMaster,
    ...(config.redisSentinelPassword === undefined ? {} : { sentinelPassword: config.redisSentinelPassword }),
    ...password,
    // Subscribe to the sentinels' +switch-master: a promotion is followed as soon as it is
    // announced, not only when the old master's connection breaks.
    failoverDetector: true,
  };
}

/** A URL's options, so REDIS_PASSWORD can take the place of its password. */
function parseRedisUrl(url: string): RedisOptions {
  const u = new URL(url);
  const db = u.pathname.replace(/^\//, '');
  return {
    host: u.hostname.replace(/^\[|\]$/g, ''),
    port: u.port ? Number(u.port) : 6379,
    ...(u.username ? { username: decodeURIComponent(u.username) } : {}),
    ...(u.password ? { password: decodeURIComponent(u.password) } : {}),
    ...(db ? { db: Number(db) } : {}),
    ...(u.protocol === 'rediss:' ? { tls: {} } : {}),
  };
}

/** A connection to `target` with the options of its use (retries, timeouts, offline queue). */
export function redisConnection(target: RedisTarget, options: RedisOptions): Redis {
  return typeof target === 'string' ? new Redis(target, options) : new Redis({ ...target, ...options });
}
