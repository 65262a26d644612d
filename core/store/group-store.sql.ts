// The SQL of group-store.ts (GroupStore), one named statement per operation, kept apart to be read
// and reviewed as SQL. Parameters are numbered as the calls in group-store.ts pass them.

/** GroupStore.summary and .list: a group with its satellite count and newest published version (filtered and ordered there). */
export const SUMMARY = `
  SELECT p.*,
         (SELECT count(*) FROM satellite_groups sg JOIN satellites s ON s.name = sg.satellite
           WHERE sg.group_name = p.group_name AND s.revoked_at IS NULL) AS satellites,
         v.version, v.manifest_digest, v.published_at
    FROM group_policies p
    LEFT JOIN LATERAL (
      SELECT version, manifest_digest, published_at FROM state_versions
       WHERE group_name = p.group_name AND status = 'published' ORDER BY version DESC LIMIT 1
    ) v ON true
   WHERE p.deleted_at IS NULL`;

/** GroupStore.save */
export const SAVE = `WITH g AS (INSERT INTO groups (name) VALUES ($1) ON CONFLICT DO NOTHING),
  o AS (INSERT INTO outbox (group_name) SELECT $1
         WHERE NOT EXISTS (SELECT 1 FROM state_versions WHERE group_name = $1 AND status = 'published'))
  INSERT INTO group_policies (group_name, policy_id, registry_id, filters, trigger, projects, adopted)
  VALUES ($1, $2, $3, $4, $5, $6, $7)
  ON CONFLICT (group_name) DO UPDATE SET
    policy_id = EXCLUDED.policy_id, registry_id = EXCLUDED.registry_id, filters = EXCLUDED.filters,
    trigger = EXCLUDED.trigger, projects = EXCLUDED.projects, adopted = EXCLUDED.adopted, updated_at = now(),
    created_at = CASE WHEN group_policies.deleted_at IS NULL THEN group_policies.created_at ELSE now() END,
    deleted_at = NULL
  RETURNING (xmax = 0 OR created_at = updated_at) AS created`;

/** GroupStore.deleteAndTombstone */
export const DELETE_AND_TOMBSTONE = `WITH gone AS (
    UPDATE group_policies SET deleted_at = now() WHERE group_name = $1 AND deleted_at IS NULL RETURNING group_name
  ), old_tags AS (
    DELETE FROM tags t USING gone WHERE t.group_name = gone.group_name
    RETURNING t.repository, t.digest, t.tag
  ), a AS (
    UPDATE artifacts a
       SET deleted = true, deleted_at = now(),
           deleted_tags = COALESCE((SELECT array_agg(o.tag ORDER BY o.tag) FROM old_tags o
                                     WHERE o.repository = a.repository AND o.digest = a.digest), '{}')
      FROM gone
     WHERE a.group_name = gone.group_name AND NOT a.deleted
     RETURNING a.repository, a.digest
  ), l AS (
    INSERT INTO change_log (group_name, action, repository, digest) SELECT $1, 'delete', repository, digest FROM a
  ), o AS (
    INSERT INTO outbox (group_name) SELECT group_name FROM gone
  )
  SELECT (SELECT count(*) FROM a) AS n, (SELECT count(*) FROM gone) AS g`;

/** GroupStore.listing */
export const LISTING = `SELECT DISTINCT group_name FROM artifacts
  WHERE repository = $1 AND (digest = $2 OR subject_digest = $2) AND NOT deleted ORDER BY group_name`;

/** GroupStore.isLive */
export const IS_LIVE = `SELECT 1 FROM groups g WHERE g.name = $1
  AND NOT EXISTS (SELECT 1 FROM group_policies p WHERE p.group_name = g.name AND p.deleted_at IS NOT NULL)`;

/** GroupStore.imageProjects */
export const IMAGE_PROJECTS = `SELECT DISTINCT split_part(repository, '/', 1) AS project FROM artifacts
  WHERE group_name = ANY($1) AND NOT deleted ORDER BY 1`;
