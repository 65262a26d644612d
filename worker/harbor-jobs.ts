import { Queue, UnrecoverableError, Worker, type Job, type JobsOptions } from 'bullmq';
import { HarborApiError } from '@harbor-api/client';
import type { Config } from '../core/config.js';
import { redisTarget } from '../core/redis.js';
import type { Pool } from '../core/db/pool.js';
import type { Logger } from '../core/logger.js';
import { GroupStore } from '../core/store/group-store.js';
import { HarborStore, type HarborJobData, type HarborJobName } from '../core/store/harbor-store.js';
import { harborContext, type HarborContext } from '../harbor/context.js';
import { RobotService } from '../harbor/robots.js';
import { GroupService } from '../harbor/group-service.js';
import { HarborReconciler } from '../harbor/reconcile.js';
import { SchedulerKeeper } from './job-schedulers.js';
import { queuePrefixOf, readDeploymentId } from '../core/deployment.js';
import { closeWorker, ownJobsOnly, producerConnection, workerConnection } from './queue.js';

// The Harbor queue: reconciliation with Harbor, robots kept in step with what their groups
// list, webhook-triggered work. Jobs come from the harbor_outbox table (written in the
// transaction of the change that needs them, relayed here), from a repeatable schedule,
// and after each published state.

export const HARBOR_QUEUE = 'harbor-jobs';

export interface RunningHarborWorker {
  queue: Queue<HarborJobData, unknown, HarborJobName>;
  /** For the state worker: a group's new state is out, so its satellites' robots may need a project more. */
  afterPublish(group: string): Promise<void>;
  stop(): Promise<void>;
}

const jobOptions = (dedupe: string | undefined): JobsOptions => ({
  ...(dedupe ? { deduplication: { id: dedupe, keepLastIfActive: true } } : {}),
  attempts: 5,
  backoff: { type: 'exponential', delay: 2000 },
  removeOnComplete: { count: 1000 },
  removeOnFail: { count: 5000 },
});

function dedupeId(job: HarborJobName, data: HarborJobData): string | undefined {
  if (job === 'reconcile' || job === 'sync-robots') return `${job}:${data.group ?? '*'}`;
  return undefined;
}

/** Harbor unreachable or failing is worth retrying; Harbor refusing the request is not. */
function classify(err: unknown): unknown {
  if (err instanceof HarborApiError && err.status !== 0 && err.status < 500 && err.status !== 429) {
    return new UnrecoverableError(err.message);
  }
  return err;
}

export function createHarborProcessor(ctx: HarborContext, queue: Queue<HarborJobData, unknown, HarborJobName>, tombstoneRetentionHours: number, deployment: string) {
  const reconciler = new HarborReconciler(ctx.pool, ctx.harbor!, ctx.log, tombstoneRetentionHours);
  const robots = new RobotService(ctx);
  const groupService = new GroupService(ctx);
  const groups = new GroupStore(ctx.pool);
  return async (job: Job<HarborJobData, unknown, HarborJobName>) => {
    try {
      switch (job.name) {
        case 'reconcile': {
          const summary = await reconciler.reconcileGroup(job.data.group!);
          return { ...summary, robots: await robots.syncMany(job.data.group) };
        }
        case 'reconcile-deleted':
          return await reconciler.reconcileDeleted(job.data.repository!, job.data.digest!);
        case 'sync-robots':
          return await robots.syncMany(job.data.group);
        case 'reconcile-all': {
          const all = await groups.list();
          for (const g of all) await queue.add('reconcile', { group: g.name, deployment }, jobOptions(dedupeId('reconcile', { group: g.name })));
          // Projects made since (matching a rule's glob) get the webhook policy too.
          const projects = await groupService.refreshProjects();
          return { groups: all.length, projects, robots: await robots.syncMany() };
        }
        default:
          throw new UnrecoverableError(`unknown job ${job.name as string}`);
      }
    } catch (err) {
      ctx.log.warn({ job: job.name, data: job.data, err: (err as Error).message, attempt: job.attemptsMade + 1 }, 'harbor job failed');
      throw classify(err);
    }
  };
}

/** Starts the Harbor queue's worker, relay and schedule; undefined when Harbor is not configured. */
export async function startHarborWorker(deps: { config: Config; pool: Pool; log: Logger }): Promise<RunningHarborWorker | undefined> {
  const { config, pool } = deps;
  const log = deps.log.child({ component: 'harbor-worker' });
  const ctx = await harborContext(config, pool, log);
  if (!ctx.harbor) {
    log.info('HARBOR_URL / HARBOR_PASSWORD not set: no reconciliation with Harbor, robots not kept in step');
    return undefined;
  }
  const deployment = await readDeploymentId(pool);
  const prefix = queuePrefixOf(config.queuePrefix, deployment);
  const producer = producerConnection(redisTarget(config), log);
  const consumer = workerConnection(redisTarget(config), log);
  const queue = new Queue<HarborJobData, unknown, HarborJobName>(HARBOR_QUEUE, { connection: producer, prefix, skipWaitingForReady: true });
  queue.on('error', (err) => log.debug({ err: err.message }, 'harbor queue error'));
  const add = (name: HarborJobName, data: HarborJobData) => queue.add(name, { ...data, deployment }, jobOptions(dedupeId(name, data)));
  const worker = new Worker<HarborJobData, unknown, HarborJobName>(HARBOR_QUEUE, ownJobsOnly(deployment, log, createHarborProcessor(ctx, queue, config.tombstoneRetentionHours, deployment)), {
    connection: consumer, prefix, concurrency: 2, lockDuration: config.jobLockMs,
  });
  worker.on('error', (err) => log.warn({ err: err.message }, 'harbor worker error'));

  // The outbox relay: jobs leave the table only once Redis took them.
  const store = new HarborStore(pool);
  let stopped = false;
  let running: Promise<unknown> = Promise.resolve();
  const relay = async (): Promise<void> => {
    while (!stopped) {
      try {
        const n = await store.relay(500, async (jobs) => {
          for (const j of jobs) await add(j.job, j.data);
        });
        if (n === 0) await new Promise((r) => setTimeout(r, 250));
      } catch (err) {
        log.debug({ err: (err as Error).message }, 'harbor outbox relay cannot enqueue yet');
        await new Promise((r) => setTimeout(r, 1000));
      }
    }
  };
  running = relay();
  // Kept registered even through a Redis that comes back empty (see job-schedulers.ts).
  const schedulers = new SchedulerKeeper<HarborJobName, HarborJobData>(queue, [{ id: 'reconcile-all', every: config.harborReconcileIntervalSeconds * 1000, data: { deployment } }],
    { checkMs: config.scheduleCheckSeconds * 1000, log, connection: producer });
  schedulers.start();
  log.info({ every: config.harborReconcileIntervalSeconds }, 'harbor worker started');
  return {
    queue,
    afterPublish: async (group) => {
      await add('sync-robots', { group });
    },
    async stop() {
      stopped = true;
      schedulers.stop();
      await running;
      await closeWorker(worker, queue, [consumer, producer], config.jobLockMs, log);
    },
  };
}
