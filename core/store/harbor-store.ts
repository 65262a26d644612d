import type { Platform } from '../oci/manifest.js';
import { inTransaction, query, type Client, type Pool } from '../db/pool.js';
import * as sql from './harbor-store.sql.js';

// What the Harbor side of the service keeps beside the endpoint's records: the jobs waiting
// for the Harbor queue (an outbox, so a change that needs a job never loses it to Redis),
// and what Harbor says of artifacts (labels, platform) that reconciliation fills in.

export type HarborJobName = 'reconcile' | 'reconcile-deleted' | 'reconcile-all' | 'sync-robots';

export interface HarborJobData {
  /** The deployment that queued it (core/deployment.ts): a worker of another refuses it. */
  deployment?: string;
  /** reconcile, sync-robots: the group (sync-robots without one: every satellite). */
  group?: string;
  /** reconcile-deleted: the artifact Harbor reported deleted. */
  repository?: string;
  digest?: string;
}

export interface ArtifactMetadata {
  repository: string;
  digest: string;
  labels: string[] | null;
  platform: Platform | null;
}

export interface TombstoneRef {
  group: string;
  repository: string;
  digest: string;
}

export class HarborStore {
  constructor(private readonly pool: Pool) {}

  /** Queues a Harbor job, in the caller's transaction when given one. */
  async enqueue(job: HarborJobName, data: HarborJobData, c?: Client): Promise<void> {
    await query(c ?? this.pool, 'INSERT INTO harbor_outbox (job, data) VALUES ($1, $2)', [job, JSON.stringify(data)]);
  }

  /**
   * Claims up to `batch` queued jobs (SKIP LOCKED: several relays may run) and hands them to
   * `deliver`; they are deleted only if it resolves, in the same transaction.
   */
  async relay(batch: number, deliver: (jobs: { job: HarborJobName; data: HarborJobData }[]) => Promise<void>): Promise<number> {
    return inTransaction(this.pool, async (c) => {
      const { rows } = await c.query<{ job: HarborJobName; data: HarborJobData }>(sql.RELAY, [batch]);
      if (rows.length) await deliver(rows);
      return rows.length;
    });
  }

  async metadata(keys: readonly { repository: string; digest: string }[]): Promise<Map<string, ArtifactMetadata>> {
    if (keys.length === 0) return new Map();
    const { rows } = await query<{ repository: string; digest: string; labels: string[] | null; platform: Platform | null }>(this.pool, sql.METADATA,
      [keys.map((k) => k.repository), keys.map((k) => k.digest)]);
    return new Map(rows.map((r) => [`${r.repository}@${r.digest}`, r]));
  }

  /**
   * Applies one reconciliation in one transaction: the metadata that changed, the artifacts
   * to tombstone (as a DELETE from Harbor would: tags kept on the row, change logged), and a
   * build for every group concerned.
   */
  async apply(metadata: readonly ArtifactMetadata[], tombstones: readonly TombstoneRef[], dirtyGroups: readonly string[]): Promise<number> {
    return inTransaction(this.pool, async (c) => {
      if (metadata.length) {
        await c.query(sql.UPSERT_METADATA,
          [metadata.map((m) => m.repository), metadata.map((m) => m.digest), metadata.map((m) => JSON.stringify(m.labels ?? [])),
            metadata.map((m) => (m.platform ? JSON.stringify(m.platform) : null))]);
      }
      let tombstoned = 0;
      for (const t of tombstones) {
        const { rowCount } = await c.query(sql.TOMBSTONE,
          [t.group, t.repository, t.digest]);
        tombstoned += rowCount ?? 0;
      }
      if (dirtyGroups.length) await c.query('INSERT INTO outbox (group_name) SELECT unnest($1::text[])', [dirtyGroups]);
      return tombstoned;
    });
  }
}

