import { adminCredential, metricsCredential, redact, requireEndpointPassword, requireSigningKey, type Config } from '../core/config.js';
import { migrate } from '../core/db/migrate.js';
import { createPool } from '../core/db/pool.js';
import { redisTarget } from '../core/redis.js';
import { queuePrefixOf, readDeploymentId } from '../core/deployment.js';
import { createLogger } from '../core/logger.js';
import { Metrics } from '../core/metrics.js';
import { startOpsServer, type RunningOps } from '../adapter/ops-server.js';
import { startEndpoint, type RunningEndpoint } from '../adapter/server.js';
import { checkTlsFiles, tlsFiles } from '../adapter/tls.js';
import { throttleConnection } from '../adapter/login-throttle.js';
import type { Redis } from 'ioredis';
import type { RunningHarborWorker } from '../worker/harbor-jobs.js';
import type { StateQueue } from '../worker/queue.js';
import type { RunningWorker } from '../worker/state-worker.js';

/**
 * Runs the endpoint, the worker, or both in this process until SIGTERM/SIGINT, then drains:
 * the endpoint stops accepting and finishes its requests, the worker finishes its jobs.
 * The endpoint starts first and never waits for Redis: changes are recorded while the
 * queue is unreachable, and relayed once it answers.
 */
export async function runProcess(config: Config, parts: { endpoint: boolean; worker: boolean }): Promise<void> {
  // Refuse a missing secret or an unreadable key before touching anything.
  const password = parts.endpoint ? requireEndpointPassword(config) : undefined;
  // The worker's modules (signing, builds, bullmq's Worker) load only in a process that runs it.
  const signingKey = parts.worker
    ? await (await import('../worker/signer.js')).loadSigningKey(requireSigningKey(config), config.cosignPassword) : undefined;
  const opsCredential = metricsCredential(config);
  checkTlsFiles(tlsFiles(config, parts.endpoint ? 'endpoint' : 'operations'));
  const log = createLogger(config.logLevel);
  await migrate(config.databaseUrl, log);
  const pool = createPool(config.databaseUrl, 20);
  // QUEUE_PREFIX (and the login throttle's prefix after it), unless set, are this
  // deployment's own: another deployment on the same Redis never shares them.
  const deployment = await readDeploymentId(pool);
  const queuePrefix = queuePrefixOf(config.queuePrefix, deployment);
  const authThrottlePrefix = config.authThrottlePrefix ?? `${queuePrefix}:auth`;
  log.info({ deployment, queuePrefix }, 'deployment');
  const metrics = new Metrics();
  const stopping = new AbortController();

  let worker: RunningWorker | undefined;
  let harborWorker: RunningHarborWorker | undefined;
  let endpoint: RunningEndpoint | undefined;
  let apiThrottleRedis: Redis | undefined;
  let ops: RunningOps | undefined;
  let dashboardQueue: StateQueue | undefined;
  // A process without the worker reads the queue only for /metrics' queue gauges and the
  // queue dashboard: it connects (and loads bullmq, ~13 MiB resident) once one of them first
  // asks, or at start when the dashboard is on (ADMIN_PASSWORD).
  let connecting = false;
  const connectDashboardQueue = () => {
    if (connecting || parts.worker) return;
    connecting = true;
    import('../worker/queue.js').then(({ connectQueue }) => connectQueue(redisTarget(config), queuePrefix, log, stopping.signal)).then(
      ({ queue }) => (dashboardQueue = queue),
      () => undefined,
    );
  };
  const queueOf = () => {
    connectDashboardQueue();
    return worker?.queue ?? dashboardQueue;
  };

  const shutdown = (signal: string) => {
    // Once: a Ctrl-C reaches every process of the terminal's group, and `make run` passes
    // SIGTERM on too, so the same stop may be asked twice.
    if (stopping.signal.aborted) return;
    log.info({ signal }, 'shutting down: finishing in-flight work');
    stopping.abort();
    // Whatever hangs (a peer that never answers), the process is gone after the longest
    // drain (a job lock period) and a margin.
    setTimeout(() => {
      log.error('shutdown did not finish in time; exiting');
      process.exit(1);
    }, config.jobLockMs + 10_000).unref();
    (async () => {
      await endpoint?.stop();
      apiThrottleRedis?.disconnect();
      await worker?.stop();
      await harborWorker?.stop();
      await dashboardQueue?.close();
      await ops?.stop();
      await pool.end();
    })().then(
      () => {
        log.info('stopped');
        process.exit(0);
      },
      (err: unknown) => {
        log.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.once('SIGTERM', () => shutdown('SIGTERM'));
  process.once('SIGINT', () => shutdown('SIGINT'));

  if (password) {
    apiThrottleRedis = throttleConnection(redisTarget(config));
    const admin = adminCredential(config);
    // Without an admin credential the API only says so (503): the Harbor services, the
    // dashboard and their dependencies are not loaded (about 4 MiB of the endpoint's peak memory).
    const apiRouter = admin === undefined ? (await import('../adapter/admin/disabled-router.js')).disabledAdminRouter(log) : (await import('../adapter/admin/router.js')).adminRouter({
      ctx: await (await import('../harbor/context.js')).harborContext(config, pool, log), admin, authFailureLimit: config.authFailureLimit,
      registrationRateLimit: config.registrationRateLimit, tombstoneRetentionHours: config.tombstoneRetentionHours,
      throttleRedis: { redis: apiThrottleRedis, prefix: authThrottlePrefix }, maxStateMb: config.stateMaxMb,
      dashboard: { sessionSeconds: config.dashboardSessionMinutes * 60 },
    });
    endpoint = await startEndpoint({
      databaseUrl: config.databaseUrl, pool, host: config.host, port: config.port,
      username: config.endpointUsername, password, authFailureLimit: config.authFailureLimit,
      authUsernameFailureLimit: config.authUsernameFailureLimit, hashConcurrency: config.authHashConcurrency,
      redis: { url: redisTarget(config), prefix: authThrottlePrefix }, trustProxy: config.trustProxy, log, metrics,
      imageRegistry: config.imageRegistry,
      uploadLimits: { maxOpenPerOwner: config.uploadSessionLimit, idleMinutes: config.uploadIdleMinutes }, apiRouter,
      tls: tlsFiles(config, 'endpoint'),
    });
    log.info({ url: endpoint.url, username: config.endpointUsername, database: redact(config.databaseUrl) }, 'endpoint listening');
  }
  // Health, Prometheus and the dashboard, on a listener of their own (loopback by default).
  ops = await startOpsServer({
    host: config.metricsHost, port: config.metricsPort, pool, metrics, queue: queueOf, log,
    metricsCredential: opsCredential, tls: tlsFiles(config, 'operations'),
    admin: config.adminPassword === undefined ? undefined : {
      username: config.adminUsername, password: config.adminPassword, authFailureLimit: config.authFailureLimit,
      redis: { url: redisTarget(config), prefix: authThrottlePrefix },
    },
  });
  log.info({ url: ops.url, dashboard: config.adminPassword !== undefined, metricsCredential: opsCredential !== undefined }, 'operations listening');
  if (signingKey) {
    harborWorker = await (await import('../worker/harbor-jobs.js')).startHarborWorker({ config, pool, log });
    worker = await (await import('../worker/state-worker.js')).startWorker({ config, pool, log, metrics, signingKey, afterPublish: harborWorker?.afterPublish });
  } else if (config.adminPassword !== undefined) {
    connectDashboardQueue();
  }
}
