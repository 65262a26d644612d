import { inTransaction, query, type Pool } from '../db/pool.js';
import type { DigestAlgorithm } from '../oci/digest.js';
import * as sql from './upload-store.sql.js';

export interface UploadSession {
  id: string;
  repository: string;
  algorithm: DigestAlgorithm;
  hashState: Buffer;
  size: number;
}

/** How many sessions one credential may hold open, and after how long idle one is gone. */
export interface UploadLimits {
  maxOpenPerOwner: number;
  idleMinutes: number;
}

/**
 * Blob upload sessions: the running hash state between chunks, never the bytes. A session
 * untouched for `idleMinutes` no longer exists for any request, and is deleted by the next
 * session opened (and by the pruner), so the table stays bounded by owners × the cap.
 */
export class UploadStore {
  constructor(private readonly pool: Pool, private readonly limits: UploadLimits = { maxOpenPerOwner: 100, idleMinutes: 10 }) {}

  /**
   * Opens a session for `owner` unless it already holds the maximum of live ones; false
   * then. Serialised per owner (advisory lock) so concurrent POSTs cannot overshoot the cap.
   */
  async create(id: string, repository: string, owner: string, algorithm: DigestAlgorithm, hashState: Buffer): Promise<boolean> {
    return inTransaction(this.pool, async (c) => {
      await c.query("SELECT pg_advisory_xact_lock(hashtext('satellite-uploads:' || $1))", [owner]);
      await c.query('DELETE FROM uploads WHERE updated_at < now() - make_interval(mins => $1)', [this.limits.idleMinutes]);
      const { rows } = await c.query<{ n: number }>('SELECT count(*)::int AS n FROM uploads WHERE owner = $1', [owner]);
      if ((rows[0]?.n ?? 0) >= this.limits.maxOpenPerOwner) return false;
      await c.query('INSERT INTO uploads (id, repository, owner, algorithm, hash_state) VALUES ($1, $2, $3, $4, $5)',
        [id, repository, owner, algorithm, hashState]);
      return true;
    });
  }

  async get(id: string, repository: string): Promise<UploadSession | undefined> {
    const { rows } = await query<{ id: string; repository: string; algorithm: DigestAlgorithm; hash_state: Buffer; size: string }>(
      this.pool, sql.GET,
      [id, repository, this.limits.idleMinutes],
    );
    const r = rows[0];
    return r && { id: r.id, repository: r.repository, algorithm: r.algorithm, hashState: r.hash_state, size: Number(r.size) };
  }

  /**
   * Saves the state after a chunk, only if nobody else advanced the session meanwhile
   * (compare-and-set on the size). False means a concurrent chunk won.
   */
  async advance(id: string, fromSize: number, toSize: number, hashState: Buffer): Promise<boolean> {
    const { rowCount } = await query(
      this.pool,
      'UPDATE uploads SET size = $3, hash_state = $4, updated_at = now() WHERE id = $1 AND size = $2',
      [id, fromSize, toSize, hashState],
    );
    return rowCount === 1;
  }

  async remove(id: string): Promise<boolean> {
    const { rowCount } = await query(this.pool, 'DELETE FROM uploads WHERE id = $1', [id]);
    return rowCount === 1;
  }

  /** Drops sessions idle longer than the limit; returns how many. */
  async expireIdle(): Promise<number> {
    const { rowCount } = await query(this.pool, 'DELETE FROM uploads WHERE updated_at < now() - make_interval(mins => $1)', [this.limits.idleMinutes]);
    return rowCount ?? 0;
  }

}
