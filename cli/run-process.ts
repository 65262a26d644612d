import express from 'express';
import type { Server } from 'node:http';
import { redact, requireEndpointPassword, requireSigningKey, type Config } from '../core/config.js';
import { migrate } from '../core/db/migrate.js';
import { createPool } from '../core/db/pool.js';
import { createLogger } from '../core/logger.js';
import { Metrics } from '../core/metrics.js';
import { healthRoutes } from '../adapter/health.js';
import { metricsRoute } from '../adapter/operations.js';
import { startEndpoint, type RunningEndpoint } from '../adapter/server.js';
import { producerConnection, stateQueue } from '../worker/queue.js';
import { startWorker, type RunningWorker } from '../worker/state-worker.js';
import { requestContext } from '../adapter/request-context.js';

/**
 * Runs the endpoint, the worker, or both in this process until SIGTERM/SIGINT, then drains:
 * the endpoint stops accepting and finishes its requests, the worker finishes its jobs.
 */
export async function runProcess(config: Config, parts: { endpoint: boolean; worker: boolean }): Promise<void> {
  // Refuse a missing secret or key before touching anything.
  const password = parts.endpoint ? requireEndpointPassword(config) : undefined;
  const keyPath = parts.worker ? requireSigningKey(config) : undefined;
  const log = createLogger(config.logLevel);
  await migrate(config.databaseUrl, log);
  const pool = createPool(config.databaseUrl, 20);
  const metrics = new Metrics();

  let worker: RunningWorker | undefined;
  let endpoint: RunningEndpoint | undefined;
  let opsServer: Server | undefined;
  let ownQueue: { close(): Promise<void> } | undefined;
  if (keyPath) worker = await startWorker({ config, pool, log, metrics, keyPath });
  if (password) {
    let queue = worker?.queue;
    if (!queue) {
      const q = stateQueue(producerConnection(config.redisUrl, log), config.queuePrefix);
      q.on('error', () => undefined);
      ownQueue = q;
      queue = q;
    }
    endpoint = await startEndpoint({
      databaseUrl: config.databaseUrl, pool, host: config.host, port: config.port,
      username: config.endpointUsername, password, authFailureLimit: config.authFailureLimit, log,
      metrics, queue, admin: config.adminPassword ? { username: config.adminUsername, password: config.adminPassword } : undefined,
    });
    log.info({ url: endpoint.url, username: config.endpointUsername, database: redact(config.databaseUrl) }, 'endpoint listening');
  } else {
    // The worker alone still answers health checks and Prometheus.
    const app = express();
    app.use(requestContext(log));
    app.use(healthRoutes(pool));
    app.use(metricsRoute(metrics, worker?.queue));
    opsServer = app.listen(config.metricsPort, config.host);
    log.info({ port: config.metricsPort }, 'worker metrics listening');
  }

  const shutdown = (signal: string) => {
    log.info({ signal }, 'shutting down: finishing in-flight work');
    (async () => {
      await endpoint?.stop();
      await worker?.stop();
      await ownQueue?.close();
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
}
