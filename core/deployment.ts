import type { Pool } from './db/pool.js';

/**
 * The id of this deployment, made by the first migration: two deployments (two databases)
 * on one Redis have different ids, so different default queue prefixes, and a worker refuses
 * a job that carries another id.
 */
export async function readDeploymentId(pool: Pick<Pool, 'query'>): Promise<string> {
  const { rows } = await pool.query<{ id: string }>('SELECT id FROM deployment');
  if (!rows[0]) throw new Error('the database has no deployment id: run `satellite migrate`');
  return rows[0].id;
}

/** QUEUE_PREFIX when it is not set: the deployment's own. */
export const defaultQueuePrefix = (deploymentId: string): string => `satellite:${deploymentId}`;

/** The queue prefix in force: QUEUE_PREFIX, else the deployment's own. */
export const queuePrefixOf = (configured: string | undefined, deploymentId: string): string => configured ?? defaultQueuePrefix(deploymentId);
