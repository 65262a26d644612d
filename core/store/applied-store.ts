import { query, type Pool } from '../db/pool.js';
import type { StatusReport } from '../satellite-protocol.js';

// When each satellite applied each version of its groups, from its status reports: the
// history behind the dashboard's convergence chart. All SQL about it lives here.

/** Versions kept per satellite and group. */
export const APPLIED_KEPT = 50;

export interface AppliedEvent {
  satellite: string;
  group: string;
  version: number;
  appliedAt: Date;
}

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

  /** Every version applied since `since`, and for each satellite and group the newest applied before it. */
  async since(since: Date): Promise<{ before: AppliedEvent[]; after: AppliedEvent[] }> {
    type Row = { satellite: string; group_name: string; version: number; applied_at: Date };
    const map = (r: Row): AppliedEvent => ({ satellite: r.satellite, group: r.group_name, version: r.version, appliedAt: r.applied_at });
    const [before, after] = await Promise.all([
      query<Row>(this.pool,
        `SELECT DISTINCT ON (satellite, group_name) satellite, group_name, version, applied_at FROM satellite_applied
          WHERE applied_at <= $1 ORDER BY satellite, group_name, version DESC`, [since]),
      query<Row>(this.pool, 'SELECT satellite, group_name, version, applied_at FROM satellite_applied WHERE applied_at > $1 ORDER BY applied_at', [since]),
    ]);
    return { before: before.rows.map(map), after: after.rows.map(map) };
  }
}
