import { Queue, type JobsOptions } from 'bullmq';
import { Redis, type RedisOptions } from 'ioredis';
import type { Logger } from '../core/logger.js';

export const STATE_QUEUE = 'state-builds';

export type JobName = 'build' | 'prune' | 'reconcile';
export interface BuildJobData {
  group: string;
}

/**
 * A connection for a Worker: BullMQ's production guide asks for maxRetriesPerRequest null
 * so blocking commands wait through a Redis restart instead of failing the worker.
 */
export function workerConnection(url: string, log: Logger): Redis {
  const redis = new Redis(url, { maxRetriesPerRequest: null, enableReadyCheck: true });
  redis.on('error', (err) => log.warn({ err: err.message }, 'redis connection error'));
  return redis;
}

/**
 * A connection for producers (the outbox relay, metrics): fail fast while Redis is away,
 * so the relay's transaction rolls back and its outbox rows wait for the next attempt.
 */
export function producerConnection(url: string, log: Logger): Redis {
  const options: RedisOptions = { maxRetriesPerRequest: 1, enableOfflineQueue: false, connectTimeout: 2000 };
  const redis = new Redis(url, options);
  redis.on('error', (err) => log.debug({ err: err.message }, 'redis producer connection error'));
  return redis;
}

export function stateQueue(connection: Redis, prefix: string): Queue<BuildJobData, unknown, JobName> {
  return new Queue<BuildJobData, unknown, JobName>(STATE_QUEUE, { connection, prefix, skipWaitingForReady: true });
}

export interface BuildJobPolicy {
  debounceMs: number;
  attempts: number;
  backoffMs: number;
}

/**
 * One build per group at a time: while a group's build waits, further changes fold into
 * it (it reads the database when it runs); while one runs, one more is kept to run after
 * it. So a burst of a thousand manifests gives one or two builds, and no change is missed.
 */
export function buildJobOptions(group: string, policy: BuildJobPolicy): JobsOptions {
  return {
    deduplication: { id: `build:${group}`, keepLastIfActive: true },
    delay: policy.debounceMs,
    attempts: policy.attempts,
    backoff: { type: 'exponential', delay: policy.backoffMs },
    removeOnComplete: { count: 1000 },
    removeOnFail: { count: 5000 },
  };
}

/** Warns when Redis may evict keys: a queue must never lose a job to eviction. */
export async function checkEvictionPolicy(redis: Redis, log: Logger): Promise<void> {
  try {
    const [, policy] = (await redis.config('GET', 'maxmemory-policy')) as [string, string];
    if (policy !== 'noeviction') {
      log.warn({ policy }, 'redis maxmemory-policy is not noeviction: queued builds may be evicted under memory pressure');
    }
  } catch (err) {
    log.warn({ err: (err as Error).message }, 'could not read redis maxmemory-policy');
  }
}
