import express from 'express';
import type { Server } from 'node:http';
import { redact, requireEndpointPassword, requireSigningKey, type Config } from '../core/config.js';
import { migrate } from '../core/db/migrate.js';
import { createPool } from '../core/db/pool.js';
import { createLogger } from '../core/logger.js';
import { Metrics } from '../core/metrics.js';
import { healthRoutes } from '../adapter/health.js';
import { metricsRoute } from '../adapter/operations.js';
import { requestContext } from '../adapter/request-context.js';
import { startEndpoint, type RunningEndpoint } from '../adapter/server.js';
import { connectQueue, type StateQueue } from '../worker/queue.js';
import { loadSigningKey } from '../worker/signer.js';
import { startWorker, type RunningWorker } from '../worker/state-worker.js';

/**
 * Runs the endpoint, the worker, or both in this process until SIGTERM/SIGINT, then drains:
 * the endpoint stops accepting and finishes its requests, the worker finishes its jobs.
 * The endpoint starts first and never waits for Redis: changes are recorded while the
 * queue is unreachable, and relayed once it answers.
 */
export async function runProcess(config: Config, parts: { endpoint: boolean; worker: boolean }): Promise<void> {
  // Refuse a missing secret or an unreadable key before touching anything.
  const password = parts.endpoint ? requireEndpointPassword(config) : undefined;
  const signingKey = parts.worker ? await loadSigningKey(requireSigningKey(config), config.cosignPassword) : undefined;
  const log = createLogger(config.logLevel);
  await migrate(config.databaseUrl, log);
  const pool = createPool(config.databaseUrl, 20);
  const metrics = new Metrics();
  const stopping = new AbortController();

  let worker: RunningWorker | undefined;
  let endpoint: RunningEndpoint | undefined;
  let opsServer: Server | undefined;
  let dashboardQueue: StateQueue | undefined;
  const queueOf = () => worker?.queue ?? dashboardQueue;

  const shutdown = (signal: string) => {
    log.info({ signal }, 'shutting down: finishing in-flight work');
    stopping.abort();
    (async () => {
      await endpoint?.stop();
      await worker?.stop();
      await dashboardQueue?.close();
      if (opsServer) await new Promise((r) => opsServer!.close(r));
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
    endpoint = await startEndpoint({
      databaseUrl: config.databaseUrl, pool, host: config.host, port: config.port,
      username: config.endpointUsername, password, authFailureLimit: config.authFailureLimit, trustProxy: config.trustProxy, log,
      metrics, queue: queueOf, admin: config.adminPassword ? { username: config.adminUsername, password: config.adminPassword } : undefined,
    });
    log.info({ url: endpoint.url, username: config.endpointUsername, database: redact(config.databaseUrl) }, 'endpoint listening');
  } else {
    // The worker alone still answers health checks and Prometheus.
    const app = express();
    app.use(requestContext(log));
    app.use(healthRoutes(pool));
    app.use(metricsRoute(metrics, queueOf));
    opsServer = app.listen(config.metricsPort, config.host);
    log.info({ port: config.metricsPort }, 'worker metrics listening');
  }
  if (signingKey) {
    worker = await startWorker({ config, pool, log, metrics, signingKey });
  } else {
    connectQueue(config.redisUrl, config.queuePrefix, log, stopping.signal).then(
      ({ queue }) => (dashboardQueue = queue),
      () => undefined,
    );
  }
}
