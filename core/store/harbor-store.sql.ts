// The SQL of harbor-store.ts (HarborStore), one named statement per operation, kept apart to be read
// and reviewed as SQL. Parameters are numbered as the calls in harbor-store.ts pass them.

/** HarborStore.relay */
export const RELAY = `DELETE FROM harbor_outbox WHERE id IN (SELECT id FROM harbor_outbox ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED)
  RETURNING job, data`;

/** HarborStore.metadata */
export const METADATA = `SELECT h.repository, h.digest, h.labels, h.platform FROM harbor_artifacts h
  JOIN unnest($1::text[], $2::text[]) AS k(repository, digest) USING (repository, digest)`;

/** HarborStore.apply: what Harbor says of each artifact (labels, platform). */
export const UPSERT_METADATA = `INSERT INTO harbor_artifacts (repository, digest, labels, platform)
  SELECT m.repository, m.digest,
         CASE WHEN m.labels IS NULL OR jsonb_array_length(m.labels) = 0 THEN NULL
              ELSE ARRAY(SELECT jsonb_array_elements_text(m.labels)) END,
         m.platform
    FROM unnest($1::text[], $2::text[], $3::jsonb[], $4::jsonb[]) AS m(repository, digest, labels, platform)
  ON CONFLICT (repository, digest) DO UPDATE SET labels = EXCLUDED.labels, platform = EXCLUDED.platform, checked_at = now()`;

/** HarborStore.apply: an artifact gone from Harbor becomes a tombstone, with its change_log row. */
export const TOMBSTONE = `WITH old_tags AS (
    DELETE FROM tags WHERE group_name = $1 AND repository = $2 AND digest = $3 RETURNING tag
  ), a AS (
    UPDATE artifacts SET deleted = true, deleted_at = now(),
           deleted_tags = COALESCE((SELECT array_agg(tag ORDER BY tag) FROM old_tags), '{}')
     WHERE group_name = $1 AND repository = $2 AND digest = $3 AND NOT deleted
     RETURNING group_name
  )
  INSERT INTO change_log (group_name, action, repository, digest) SELECT $1, 'delete', $2, $3 FROM a`;
