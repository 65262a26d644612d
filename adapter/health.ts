import express from 'express';
import { query, type Pool } from '../core/db/pool.js';

/** /healthz: the process answers. /readyz: it can also reach Postgres, so it can take writes. */
export function healthRoutes(pool: Pool): express.Router {
  const r = express.Router();
  r.get('/healthz', (_req, res) => {
    res.status(200).json({ status: 'ok' });
  });
  r.get('/readyz', async (req, res) => {
    try {
      await query(pool, 'SELECT 1');
      res.status(200).json({ status: 'ready', postgres: 'ok' });
    } catch (err) {
      req.log.warn({ err }, 'not ready');
      res.status(503).json({ status: 'not ready', postgres: 'unreachable' });
    }
  });
  return r;
}
