import { query, type Pool } from '../db/pool.js';

export interface UploadSession {
  id: string;
  repository: string;
  hashState: Buffer;
  size: number;
}

/** Blob upload sessions: the running SHA-256 state between chunks, never the bytes. */
export class UploadStore {
  constructor(private readonly pool: Pool) {}

  async create(id: string, repository: string, hashState: Buffer): Promise<void> {
    await query(this.pool, 'INSERT INTO uploads (id, repository, hash_state) VALUES ($1, $2, $3)', [id, repository, hashState]);
  }

  async get(id: string, repository: string): Promise<UploadSession | undefined> {
    const { rows } = await query<{ id: string; repository: string; hash_state: Buffer; size: string }>(
      this.pool,
      'SELECT id, repository, hash_state, size FROM uploads WHERE id = $1 AND repository = $2',
      [id, repository],
    );
    const r = rows[0];
    return r && { id: r.id, repository: r.repository, hashState: r.hash_state, size: Number(r.size) };
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

  /** Drops sessions nobody touched for `hours`: abandoned uploads. */
  async expire(hours: number): Promise<number> {
    const { rowCount } = await query(this.pool, "DELETE FROM uploads WHERE updated_at < now() - make_interval(hours => $1)", [hours]);
    return rowCount ?? 0;
  }
}
