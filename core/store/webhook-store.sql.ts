// The SQL of webhook-store.ts (WebhookStore), one named statement per operation, kept apart to be read
// and reviewed as SQL. Parameters are numbered as the calls in webhook-store.ts pass them.

/** WebhookStore.save */
export const SAVE = `INSERT INTO webhook_policies (project, harbor_id, secret_hash) VALUES ($1, $2, $3)
  ON CONFLICT (project) DO UPDATE SET harbor_id = EXCLUDED.harbor_id, secret_hash = EXCLUDED.secret_hash, created_at = now()`;
