import express from 'express';
import type { Logger } from '../../core/logger.js';
import { sendErrors } from './errors.js';
import { adminApiDocument } from './openapi.js';

/**
 * The admin API without an admin credential: its document, and 503s that say how to turn it
 * on. Apart from router.ts so that an endpoint without the admin API does not load the
 * Harbor services, the dashboard and their dependencies (router.ts uses it the same way).
 */
export function disabledAdminRouter(log: Logger): express.Router {
  const r = express.Router();
  const doc = adminApiDocument();
  r.get('/api/v1/openapi.json', (_req, res) => {
    res.json(doc);
  });
  log.warn('ADMIN_USERNAME / ADMIN_PASSWORD not set: the admin API (/api/v1) is not served');
  r.use('/api/v1', (_req, res) => {
    sendErrors(res, 503, [{ code: 'UNAVAILABLE', message: 'the admin API is disabled: set ADMIN_USERNAME and ADMIN_PASSWORD (never the endpoint\'s secret)' }]);
  });
  r.use('/ui', (_req, res) => {
    res.status(503).type('text').send('The dashboard is disabled: set ADMIN_USERNAME and ADMIN_PASSWORD (never the endpoint\'s secret).\n');
  });
  return r;
}
