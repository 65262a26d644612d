import { UnrecoverableError, type Job } from 'bullmq';
import { KeyError } from '../core/cosign/keys.js';
import { BodyTooLargeError } from '../core/http/bounded-body.js';
import { StoreUnavailableError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { Metrics } from '../core/metrics.js';
import { RegistryRequestError } from '../core/registry/registry-client.js';
import type { StateStore } from '../core/store/state-store.js';
import type { Pruner } from './pruner.js';
import { buildJobOptions, type BuildJobData, type BuildJobPolicy, type JobName, type StateQueue } from './queue.js';
import type { Redactor } from './redact.js';
import { StateTooLargeError, type StateBuilder } from './state-builder.js';

/**
 * What retrying cannot fix becomes UnrecoverableError (BullMQ then fails the job at once,
 * with the reason); everything else is thrown as is and retried with backoff.
 */
function classify(err: unknown): unknown {
  if (err instanceof RegistryRequestError && !err.retryable) {
    return new UnrecoverableError(`registry refused the state: ${err.message}`);
  }
  if (err instanceof KeyError) return new UnrecoverableError(`signing key: ${err.message}`);
  // A registry answering more than an answer can hold misbehaves; the same request gets the same.
  if (err instanceof BodyTooLargeError) return new UnrecoverableError(`registry answer refused: ${err.message}`);
  // The group must shrink, or the cap grow: until a change does either, builds fail the same.
  if (err instanceof StateTooLargeError) return new UnrecoverableError(err.message);
  if (err instanceof RegistryRequestError || err instanceof StoreUnavailableError) return err;
  if ((err as { code?: string }).code === 'ENOENT') return new UnrecoverableError(`command not found: ${(err as Error).message}`);
  return err;
}

const MESSAGES = {
  published: 'state published',
  repaired: 'state published again',
  unchanged: 'state unchanged',
  superseded: 'state superseded by a newer build',
} as const;

export interface ProcessorDeps {
  /** This deployment's id: carried by every job queued here. */
  deployment: string;
  builder: StateBuilder;
  pruner: Pruner;
  states: StateStore;
  queue: StateQueue;
  policy: BuildJobPolicy;
  tombstoneRetentionHours: number;
  metrics: Metrics;
  log: Logger;
  /** Hides configured secrets in an error before it is logged or stored as the job's failure. */
  redactor?: Redactor;
  /** Told of every group whose new state was published (e.g. to keep robots in step); never fails the build. */
  afterPublish?: (group: string) => Promise<void>;
}

/**
 * The state queue's jobs: `build` (one group), `prune` and `reconcile` (housekeeping: a
 * safety net that rebuilds the groups whose state may be stale, e.g. after Redis lost jobs,
 * or when a tombstone's retention ends).
 */
export function createProcessor(d: ProcessorDeps) {
  return async (job: Job<BuildJobData, unknown, JobName>) => {
    const jobLog = d.log.child({ jobId: job.id, job: job.name, group: job.data?.group, attempt: job.attemptsMade + 1 });
    try {
      if (job.name === 'prune') return await d.pruner.pruneAll();
      if (job.name === 'reconcile') {
        const groups = await d.states.staleGroups(d.tombstoneRetentionHours);
        for (const group of groups) await d.queue.add('build', { group, deployment: d.deployment }, buildJobOptions(group, d.policy));
        return { groups: groups.length };
      }
      const stop = d.metrics.publishSeconds.startTimer();
      const result = await d.builder.build(job.data.group);
      if (result.result === 'published' || result.result === 'repaired') stop();
      d.metrics.builds.inc({ result: result.result });
      const { group: _group, ...fields } = result;
      // When the relay queued it and how long it waited for a worker: with the build's own
      // stages (result.ms), where the time from a change to its signed `latest` went.
      jobLog.info({ ...fields, queuedAt: job.timestamp, waitedMs: job.processedOn ? job.processedOn - job.timestamp : undefined }, MESSAGES[result.result]);
      if (result.result === 'published' && d.afterPublish) {
        await d.afterPublish(job.data.group).catch((err: Error) => jobLog.warn({ err: err.message }, 'after-publish step failed'));
      }
      return result;
    } catch (caught) {
      const err = d.redactor ? d.redactor.error(caught) : caught;
      const classified = classify(err);
      const final = classified instanceof UnrecoverableError || job.attemptsMade + 1 >= (job.opts.attempts ?? 1);
      d.metrics.builds.inc({ result: final ? 'failed' : 'retry' });
      d.metrics.failures.inc({ where: job.name });
      jobLog[final ? 'error' : 'warn']({ err: (err as Error).message, final }, 'job failed');
      throw classified;
    }
  };
}
