// The SQL of satellite-store.ts (SatelliteStore), one named statement per operation, kept apart to be read
// and reviewed as SQL. Parameters are numbered as the calls in satellite-store.ts pass them.

/** SatelliteStore.get and .list: a satellite with its groups (filtered and ordered there). */
export const SATELLITES = `
  SELECT s.*, (SELECT array_agg(group_name ORDER BY group_name) FROM satellite_groups g WHERE g.satellite = s.name) AS groups
    FROM satellites s`;

/** SatelliteStore.ofGroup */
export const OF_GROUP = `SELECT s.name FROM satellites s JOIN satellite_groups g ON g.satellite = s.name
  WHERE g.group_name = $1 AND s.revoked_at IS NULL ORDER BY s.name`;

/** SatelliteStore.create */
export const CREATE = `INSERT INTO satellites (name) VALUES ($1)
  ON CONFLICT (name) DO UPDATE SET created_at = now(), registered_at = NULL, revoked_at = NULL, robot_id = NULL,
    robot_name = NULL, robot_secret_hash = NULL, robot_projects = '{}', last_seen = NULL, report = NULL, reported_at = NULL
    WHERE satellites.revoked_at IS NOT NULL`;

/** SatelliteStore.claimToken */
export const CLAIM_TOKEN = `SELECT t.satellite, t.expires_at <= now() AS expired, t.used_at, t.revoked_at, s.revoked_at AS sat_revoked
   FROM registration_tokens t JOIN satellites s ON s.name = t.satellite
  WHERE t.token_hash = $1 FOR UPDATE OF t, s`;

/** SatelliteStore.revoke */
export const REVOKE = `WITH t AS (UPDATE registration_tokens SET revoked_at = now() WHERE satellite = $1 AND revoked_at IS NULL AND used_at IS NULL)
  UPDATE satellites SET revoked_at = now(), robot_id = NULL, robot_name = NULL, robot_secret_hash = NULL, robot_projects = '{}'
   WHERE name = $1`;

/** SatelliteStore.latestVersions */
export const LATEST_VERSIONS = `SELECT DISTINCT ON (group_name) group_name, version, manifest_digest FROM state_versions
  WHERE group_name = ANY($1) AND status = 'published' ORDER BY group_name, version DESC`;
