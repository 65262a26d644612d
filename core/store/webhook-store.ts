import { query, type Pool } from '../db/pool.js';
import * as sql from './webhook-store.sql.js';

// The webhook policies we set on Harbor's source projects: one per project, shared by every
// group replicating from it. The secret Harbor sends back as Authorization is random; only
// its SHA-256 is kept, and a notification is matched to its policy by that hash.

export interface WebhookPolicyRecord {
  project: string;
  harborId: number;
}

export class WebhookStore {
  constructor(private readonly pool: Pool) {}

  async get(project: string): Promise<WebhookPolicyRecord | undefined> {
    const { rows } = await query<{ project: string; harbor_id: string }>(this.pool,
      'SELECT project, harbor_id FROM webhook_policies WHERE project = $1', [project]);
    return rows[0] && { project: rows[0].project, harborId: Number(rows[0].harbor_id) };
  }

  async save(project: string, harborId: number, secretHash: Buffer): Promise<void> {
    await query(this.pool, sql.SAVE,
      [project, harborId, secretHash]);
  }

  async remove(project: string): Promise<void> {
    await query(this.pool, 'DELETE FROM webhook_policies WHERE project = $1', [project]);
  }

  /** The project whose policy carries this secret, if any. */
  async projectOf(secretHash: Buffer): Promise<string | undefined> {
    const { rows } = await query<{ project: string }>(this.pool, 'SELECT project FROM webhook_policies WHERE secret_hash = $1', [secretHash]);
    return rows[0]?.project;
  }
}
