import { Queue, UnrecoverableError, type Job, type JobsOptions, type Worker } from 'bullmq';
import type { Redis, RedisOptions } from 'ioredis';
import { redisConnection, type RedisTarget } from '../core/redis.js';
import type { Logger } from '../core/logger.js';

export const STATE_QUEUE = 'state-builds';

export type JobName = 'build' | 'prune' | 'reconcile';
export interface BuildJobData {
  group: string;
  /** The deployment that queued it (core/deployment.ts): a worker of another refuses it. */
  deployment: string;
}

/**
 * A connection for a Worker: BullMQ's production guide asks for maxRetriesPerRequest null
 * so blocking commands wait through a Redis restart instead of failing the worker.
 */
export function workerConnection(target: RedisTarget, log: Logger): Redis {
  const redis = redisConnection(target, { maxRetriesPerRequest: null, enableReadyCheck: true });
  redis.on('error', (err) => log.warn({ err: err.message }, 'redis connection error'));
  return redis;
}

/**
 * A connection for producers (the outbox relay, metrics): a command fails after one
 * reconnection attempt while Redis is away, so the relay's transaction rolls back and its
 * outbox rows wait for the next pass instead of holding locks.
 */
export function producerConnection(target: RedisTarget, log: Logger): Redis {
  const options: RedisOptions = { maxRetriesPerRequest: 1, connectTimeout: 2000 };
  const redis = redisConnection(target, options);
  redis.on('error', (err) => log.debug({ err: err.message }, 'redis producer connection error'));
  return redis;
}

export type StateQueue = Queue<BuildJobData, unknown, JobName>;

export function stateQueue(connection: Redis, prefix: string): StateQueue {
  return new Queue<BuildJobData, unknown, JobName>(STATE_QUEUE, { connection, prefix, skipWaitingForReady: true });
}

/**
 * A producer queue whose start-up handshake with Redis has completed. A Queue whose
 * handshake fails (Redis away at that moment) stays broken, so the handshake is retried
 * with a fresh connection until Redis answers. Once up, a queue rides out later outages.
 */
export async function connectQueue(target: RedisTarget, prefix: string, log: Logger, signal?: AbortSignal): Promise<{ queue: StateQueue; connection: Redis }> {
  for (let attempt = 1; ; attempt++) {
    const connection = producerConnection(target, log);
    const queue = stateQueue(connection, prefix);
    queue.on('error', (err) => log.debug({ err: err.message }, 'queue error'));
    try {
      await queue.waitUntilReady();
      await connection.ping();
      if (attempt > 1) log.info({ attempt }, 'connected to redis');
      return { queue, connection };
    } catch (err) {
      if (attempt === 1) log.warn({ err: (err as Error).message }, 'redis is not reachable; retrying');
      await queue.close().catch(() => undefined);
      connection.disconnect();
      if (signal?.aborted) throw new Error('stopped while waiting for redis');
      await new Promise((r) => setTimeout(r, Math.min(5000, 250 * attempt)));
    }
  }
}

export interface BuildJobPolicy {
  attempts: number;
  backoffMs: number;
}

/**
 * One build per group at a time: while a group's build waits, further changes fold into
 * it (it reads the database when it runs); while one runs, one more is kept to run after
 * it. The outbox relay enqueues a group once its burst of changes has settled, so a burst
 * of a thousand manifests gives one or two builds, and no change is missed.
 */
export function buildJobOptions(group: string, policy: BuildJobPolicy, delayMs = 0): JobsOptions {
  return {
    deduplication: { id: `build:${group}`, keepLastIfActive: true },
    delay: delayMs,
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

/**
 * Closes a BullMQ worker and its queue, gracefully while Redis answers (running jobs finish,
 * for up to `drainMs`). A job cannot finish without Redis, and BullMQ's close waits for
 * Redis to answer: while it is away (or once the drain times out) the connections are
 * dropped first, so the process stops in seconds instead of retrying forever.
 */
export async function closeWorker(worker: Pick<Worker, 'close'>, queue: Pick<Queue, 'close'>, connections: Redis[], drainMs: number, log: Logger): Promise<void> {
  const reachable = () => connections.every((c) => c.status === 'ready');
  let drained = false;
  if (reachable()) {
    const graceful = worker.close();
    let poll: NodeJS.Timeout | undefined;
    const lost = new Promise<false>((resolve) => {
      const deadline = Date.now() + drainMs;
      poll = setInterval(() => {
        if (!reachable() || Date.now() >= deadline) resolve(false);
      }, 100);
    });
    drained = await Promise.race([graceful.then(() => true, () => false), lost]);
    clearInterval(poll);
    if (!drained) log.warn(reachable() ? 'worker did not drain in time; closing anyway' : 'redis went away while draining: stopping without waiting for it');
  } else {
    log.warn('redis is unreachable: stopping without draining (jobs left running are taken over by another worker)');
  }
  if (!drained) {
    for (const c of connections) c.disconnect();
    await Promise.race([Promise.allSettled([worker.close(true), queue.close()]), new Promise((r) => setTimeout(r, 2000).unref())]);
    return;
  }
  await Promise.race([queue.close().catch(() => undefined), new Promise((r) => setTimeout(r, 2000).unref())]);
  for (const c of connections) c.disconnect();
}

/**
 * A processor that runs only this deployment's jobs. A job carrying another deployment's id
 * (or none: queued by a version before ids) reached this worker because two deployments
 * share a Redis and a QUEUE_PREFIX: it is failed at once, never retried, and logged saying
 * so. Its group is not lost to its own deployment, whose reconcile pass rebuilds what is stale.
 */
export function ownJobsOnly<D extends { deployment?: string }, N extends string>(
  deployment: string, log: Logger, processor: (job: Job<D, any, N>, token?: string) => Promise<unknown>, // eslint-disable-line @typescript-eslint/no-explicit-any
): (job: Job<D, unknown, N>, token?: string) => Promise<unknown> {
  return async (job, token) => {
    const theirs = job.data?.deployment;
    if (theirs !== deployment) {
      log.error({ jobId: job.id, job: job.name, jobDeployment: theirs ?? null, deployment },
        'job refused: it belongs to another deployment (two deployments share this Redis and QUEUE_PREFIX; unset QUEUE_PREFIX or give each its own)');
      throw new UnrecoverableError(`job of deployment ${theirs ?? '(none)'} refused by deployment ${deployment}: two deployments share this Redis and QUEUE_PREFIX`);
    }
    return processor(job, token);
  };
}
