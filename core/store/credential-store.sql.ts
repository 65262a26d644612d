// The SQL of credential-store.ts (CredentialStore), one named statement per operation, kept apart to be read
// and reviewed as SQL. Parameters are numbered as the calls in credential-store.ts pass them.

/** CredentialStore.create */
export const CREATE = `INSERT INTO group_credentials (username, group_name, secret_hash) VALUES ($1, $2, $3)
  ON CONFLICT (group_name) DO UPDATE SET username = EXCLUDED.username, secret_hash = EXCLUDED.secret_hash, created_at = now()`;
