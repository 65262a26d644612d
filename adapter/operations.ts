import type { Queue } from 'bullmq';
import express, { type NextFunction, type Request, type Response } from 'express';
import type { Metrics } from '../core/metrics.js';

/** GET /metrics in Prometheus text format; queue depth is read at scrape time. */
export function metricsRoute(metrics: Metrics, queueOf: (() => Queue | undefined) | undefined): express.Router {
  const r = express.Router();
  r.get('/metrics', async (_req, res) => {
    const queue = queueOf?.();
    if (queue) {
      try {
        const counts = await Promise.race([
          queue.getJobCounts('waiting', 'delayed', 'active', 'failed', 'completed'),
          new Promise<never>((_, reject) => setTimeout(() => reject(new Error('timeout')), 1000)),
        ]);
        for (const [state, n] of Object.entries(counts)) metrics.queueJobs.set({ state }, n);
      } catch {
        // Redis away: the gauge keeps its last values; the endpoint's own metrics still answer.
      }
    }
    res.set('Content-Type', metrics.registry.contentType).send(await metrics.registry.metrics());
  });
  return r;
}

const MANIFEST_PATH = /\/manifests\/[^/]+$/;

/** Counts manifest PUTs and DELETEs by outcome, once each answer is sent. */
export function countManifestWrites(metrics: Metrics) {
  return (req: Request, res: Response, next: NextFunction): void => {
    if ((req.method === 'PUT' || req.method === 'DELETE') && MANIFEST_PATH.test(req.path)) {
      res.on('finish', () => {
        metrics.manifestsReceived.inc({ action: req.method === 'PUT' ? 'put' : 'delete', outcome: res.statusCode < 300 ? 'recorded' : 'rejected' });
      });
    }
    next();
  };
}

/**
 * bull-board, the queue dashboard, mounted at `basePath` (behind the admin credential);
 * built on the first request after Redis is connected, 503 before.
 */
export function queueDashboard(queueOf: () => Queue | undefined, basePath: string) {
  let router: Promise<express.Router> | undefined;
  return async (req: Request, res: Response, next: NextFunction): Promise<void> => {
    if (!router) {
      const queue = queueOf();
      if (!queue) {
        res.status(503).json({ error: 'the queue is not connected yet (Redis unreachable)' });
        return;
      }
      // bull-board is loaded with the first page asked for, not at start: a process whose
      // dashboard nobody opens does not hold it (a few MiB of resident memory).
      router = (async () => {
        const [{ createBullBoard }, { BullMQAdapter }, { ExpressAdapter }] = await Promise.all([
          import('@bull-board/api'), import('@bull-board/api/bullMQAdapter'), import('@bull-board/express')]);
        const adapter = new ExpressAdapter();
        adapter.setBasePath(basePath);
        createBullBoard({ queues: [new BullMQAdapter(queue)], serverAdapter: adapter });
        return adapter.getRouter() as express.Router;
      })();
    }
    (await router)(req, res, next);
  };
}
