import { Worker, type Queue } from 'bullmq';
import { stateRegistryCredentials, type Config } from '../core/config.js';
import { layoutNamed } from '../core/state/layouts/index.js';
import type { Pool } from '../core/db/pool.js';
import { redisTarget } from '../core/redis.js';
import type { Logger } from '../core/logger.js';
import type { Metrics } from '../core/metrics.js';
import { RegistryClient } from '../core/registry/registry-client.js';
import { ArtifactStore } from '../core/store/artifact-store.js';
import { OutboxStore } from '../core/store/outbox-store.js';
import { StateStore } from '../core/store/state-store.js';
import { UploadStore } from '../core/store/upload-store.js';
import { createProcessor } from './job-processor.js';
import { OutboxRelay } from './outbox-relay.js';
import { Pruner } from './pruner.js';
import { BuiltinPusher, OrasPusher, type Pusher } from './pusher.js';
import { SchedulerKeeper } from './job-schedulers.js';
import { queuePrefixOf, readDeploymentId } from '../core/deployment.js';
import { checkEvictionPolicy, closeWorker, connectQueue, ownJobsOnly, STATE_QUEUE, workerConnection, type BuildJobData, type BuildJobPolicy, type JobName } from './queue.js';
import { CosignCliSigner, KeySigner, type Signer, type SigningKey } from './signer.js';
import { Redactor } from './redact.js';
import { StateBuilder } from './state-builder.js';
import { StateCache } from './state-content.js';

export interface RunningWorker {
  queue: Queue<BuildJobData, unknown, JobName>;
  /** The deployment whose jobs it runs (and stamps on the jobs it queues). */
  deployment: string;
  builder: StateBuilder;
  stop(): Promise<void>;
}

export function stateRegistryClient(config: Config): RegistryClient {
  const creds = stateRegistryCredentials(config);
  return new RegistryClient(config.stateRegistry, creds, config.registryTimeoutMs);
}

export function buildPolicy(config: Config): BuildJobPolicy {
  return { attempts: config.buildAttempts, backoffMs: config.buildBackoffMs };
}

function makeSigner(config: Config, client: RegistryClient, signingKey: SigningKey): Signer {
  const creds = stateRegistryCredentials(config);
  return config.signer === 'cosign'
    ? new CosignCliSigner(client, signingKey.path, signingKey.key, config.cosignPassword, creds, signingKey.pem)
    : new KeySigner(client, signingKey.key);
}

export function makeBuilder(config: Config, pool: Pool, client: RegistryClient, signer: Signer, log: Logger): StateBuilder {
  const creds = stateRegistryCredentials(config);
  const pusher: Pusher = config.statePusher === 'oras' ? new OrasPusher(client, creds) : new BuiltinPusher(client);
  return new StateBuilder(new ArtifactStore(pool), new StateStore(pool), client, pusher, signer, {
    imageRegistry: config.imageRegistry,
    stateProject: config.stateProject,
    layout: layoutNamed(config.stateLayout),
    tombstoneRetentionHours: config.tombstoneRetentionHours,
    supersededManifests: config.supersededManifests,
    maxStateBytes: config.stateMaxMb * 1024 * 1024,
    cache: new StateCache({
      maxBytes: config.stateCacheMb * 1024 * 1024,
      // Builds read the change log since the kept content's snapshot (in memory, or of the
      // published version's package): only within a fraction of the log's retention
      // (published changes older than it are pruned).
      maxAgeMs: (config.changeLogRetentionHours * 3_600_000) / 4,
    }),
  }, log);
}

export async function startWorker(deps: { config: Config; pool: Pool; log: Logger; metrics: Metrics;
  /** Loaded (and its password checked) by the caller at start-up, so a bad key stops the
   * process at once instead of failing every build; also for the CLI signer. */
  signingKey: SigningKey;
  /** Told of every group whose new state was published (the Harbor jobs keep robots in step). */
  afterPublish?: (group: string) => Promise<void>;
}): Promise<RunningWorker> {
  const { config, pool, metrics } = deps;
  const log = deps.log.child({ component: 'worker' });
  const client = stateRegistryClient(config);
  const signer = makeSigner(config, client, deps.signingKey);
  const builder = makeBuilder(config, pool, client, signer, log);
  const states = new StateStore(pool);
  const pruner = new Pruner(new ArtifactStore(pool), states, new UploadStore(pool, { maxOpenPerOwner: config.uploadSessionLimit, idleMinutes: config.uploadIdleMinutes }), client, config, log);
  const policy = buildPolicy(config);

  const deployment = await readDeploymentId(pool);
  const prefix = queuePrefixOf(config.queuePrefix, deployment);
  const { queue, connection: producer } = await connectQueue(redisTarget(config), prefix, log);
  const consumer = workerConnection(redisTarget(config), log);
  void checkEvictionPolicy(consumer, log);

  const redactor = new Redactor([config.cosignPassword, config.endpointPassword, config.adminPassword], stateRegistryCredentials(config));
  const processor = createProcessor({ deployment, builder, pruner, states, queue, policy, tombstoneRetentionHours: config.tombstoneRetentionHours, metrics, log, redactor, afterPublish: deps.afterPublish });

  const worker = new Worker<BuildJobData, unknown, JobName>(STATE_QUEUE, ownJobsOnly(deployment, log, processor), {
    connection: consumer,
    prefix,
    concurrency: config.workerConcurrency,
    lockDuration: config.jobLockMs,
    stalledInterval: Math.max(1000, Math.floor(config.jobLockMs / 2)),
    maxStalledCount: 3,
  });
  worker.on('error', (err) => log.warn({ err: err.message }, 'worker error'));
  worker.on('stalled', (jobId) => log.warn({ jobId }, 'job stalled: its worker died; it will run again'));
  // A final failure (attempts used up, unrecoverable, or stalled too often, which BullMQ
  // decides without running the processor) leaves the group stale: the reconcile pass
  // builds it again until a state holds its changes.
  worker.on('failed', (job, err) => {
    if (job?.finishedOn) log.error({ jobId: job.id, job: job.name, group: job.data?.group, reason: err.message }, 'job failed for good; the reconcile pass will retry its group');
  });

  const relay = new OutboxRelay(new OutboxStore(pool), queue, policy, log, {
    deployment, listen: pool, quietMs: config.buildQuietMs, maxWaitMs: config.buildDebounceMs, pollMs: config.outboxPollMs,
  });
  relay.start();

  // Repeatable housekeeping, kept registered even through a Redis that comes back empty
  // (upserting is idempotent across replicas and restarts).
  const schedulers = new SchedulerKeeper<JobName, BuildJobData>(queue, [
    { id: 'prune', every: config.pruneIntervalSeconds * 1000, data: { group: '', deployment } },
    { id: 'reconcile', every: config.reconcileIntervalSeconds * 1000, data: { group: '', deployment } },
  ], { checkMs: config.scheduleCheckSeconds * 1000, log, connection: producer });
  schedulers.start();

  log.info({ deployment, queuePrefix: prefix, concurrency: config.workerConcurrency, registry: config.stateRegistry, layout: config.stateLayout, signer: signer.name }, 'worker started');
  return {
    queue,
    deployment,
    builder,
    async stop() {
      schedulers.stop();
      await relay.stop();
      // Lets running jobs finish (their locks are released), takes no new ones; the jobs left
      // active are stalled jobs another worker recovers.
      await closeWorker(worker, queue, [consumer, producer], config.jobLockMs, log);
    },
  };
}
