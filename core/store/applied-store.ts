import { query, type Pool } from '../db/pool.js';
import type { StatusReport } from '../satellite-protocol.js';

// When each satellite applied each version of its groups, from its status reports: the
// history behind the dashboard's convergence chart. All SQL about it lives here.

/** Versions kept per satellite and group. */
export const APPLIED_KEPT = 50;

export class AppliedStore {
  constructor(private readonly pool: Pool) {}

  /**
   * Records the versions a report says are applied (the version its digest was published
   * as, else the one it names), at the time it says they were applied (else now); a version
   * already recorded keeps its first time. Older rows beyond APPLIED_KEPT versions go.
   */
  async record(satellite: string, report: StatusReport): Promise<void> {
    const groups = report.groups.filter((g) => g.version !== null || g.digest !== null);
    if (groups.length === 0) return;
    await query(this.pool,
      `WITH r AS (
         SELECT * FROM unnest($2::text[], $3::int[], $4::text[], $5::timestamptz[]) AS r(group_name, version, digest, applied_at)
       ), v AS (
         SELECT r.group_name, COALESCE(
                  (SELECT s.version FROM state_versions s WHERE s.group_name = r.group_name AND s.manifest_digest = r.digest AND s.status = 'published'),
                  r.version) AS version,
                LEAST(COALESCE(r.applied_at, now()), now()) AS applied_at
           FROM r
       ), ins AS (
         INSERT INTO satellite_applied (satellite, group_name, version, applied_at)
         SELECT $1, group_name, version, applied_at FROM v WHERE version IS NOT NULL
         ON CONFLICT DO NOTHING
       )
       DELETE FROM satellite_applied a USING v
        WHERE a.satellite = $1 AND a.group_name = v.group_name AND a.version <= v.version - $6`,
      [satellite, groups.map((g) => g.name), groups.map((g) => g.version), groups.map((g) => g.digest), groups.map((g) => g.appliedAt ?? null), APPLIED_KEPT]);
  }

  /**
   * How many (satellite, group) pairs (registered, not revoked, of a live group) started
   * or stopped running their group's latest version, per bucket of `bucketMs` from `since`
   * (bucket -1: before `since`), up to `now`. A pair runs version v of a group from when it
   * first reported v (or when v was published, if later) until the next version is
   * published; of each group's newest `recentVersions` versions. Only buckets with a change are answered: a few hundred rows, however many
   * reports (the sums are made here, in one pass over the week's rows).
   */
  async onLatestDeltas(since: Date, bucketMs: number, now: Date, recentVersions: number): Promise<Map<number, number>> {
    const { rows } = await query<{ b: number; d: number }>(this.pool,
      `WITH v AS (
         SELECT * FROM (
           SELECT group_name, version, published_at AS p,
                  COALESCE(lead(published_at) OVER (PARTITION BY group_name ORDER BY version), 'infinity') AS n
             FROM (SELECT s.* FROM group_policies g CROSS JOIN LATERAL (
                     SELECT group_name, version, published_at FROM state_versions s
                      WHERE s.group_name = g.group_name AND s.status = 'published' AND s.published_at IS NOT NULL
                      ORDER BY s.version DESC LIMIT $4) s
                    WHERE g.deleted_at IS NULL) recent
         ) x WHERE n > $1
       ), a AS MATERIALIZED (
         -- Read whole, once (a hash join): probing the primary key once per pair and version was slower.
         SELECT satellite, group_name, version, applied_at FROM satellite_applied
       ), on_latest AS (
         SELECT greatest(v.p, a.applied_at) AS start, v.n AS stop
           FROM a
           JOIN v ON v.group_name = a.group_name AND v.version = a.version
          WHERE greatest(v.p, a.applied_at) < v.n
            AND (a.satellite, a.group_name) IN (
                  SELECT sg.satellite, sg.group_name FROM satellite_groups sg JOIN satellites s ON s.name = sg.satellite
                   WHERE s.robot_id IS NOT NULL AND s.revoked_at IS NULL)
       ), edge AS (
         SELECT start AS at, 1 AS d FROM on_latest
         UNION ALL SELECT stop, -1 FROM on_latest WHERE stop <> 'infinity'
       )
       SELECT greatest(-1, floor(date_part('epoch', at - $1::timestamptz) * 1000 / $2::float8))::int AS b, sum(d)::int AS d
         FROM edge WHERE at <= $3 GROUP BY 1`, [since, bucketMs, now, recentVersions]);
    return new Map(rows.map((r) => [r.b, r.d]));
  }
}
