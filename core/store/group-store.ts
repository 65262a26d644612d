import { inTransaction, query, type Client, type Pool } from '../db/pool.js';

// Groups run through the admin API (group_policies): their Harbor replication rule, the
// filters and trigger it was given, the source projects whose webhooks report to us. All
// SQL about them lives here.

export interface HarborFilter {
  type: string;
  value: unknown;
  decoration?: string;
}

export interface HarborTrigger {
  type: string;
  trigger_settings?: { cron?: string };
}

export interface ManagedGroup {
  name: string;
  policyId: number | null;
  registryId: number | null;
  filters: HarborFilter[];
  trigger: HarborTrigger;
  projects: string[];
  adopted: boolean;
  createdAt: Date;
  updatedAt: Date;
}

export interface GroupSummary extends ManagedGroup {
  satellites: number;
  state: { version: number; digest: string | null; publishedAt: Date | null } | null;
}

type Row = {
  group_name: string; policy_id: string | null; registry_id: string | null; filters: HarborFilter[]; trigger: HarborTrigger;
  projects: string[]; adopted: boolean; created_at: Date; updated_at: Date;
};

const fromRow = (r: Row): ManagedGroup => ({
  name: r.group_name, policyId: r.policy_id === null ? null : Number(r.policy_id), registryId: r.registry_id === null ? null : Number(r.registry_id),
  filters: r.filters, trigger: r.trigger, projects: r.projects, adopted: r.adopted, createdAt: r.created_at, updatedAt: r.updated_at,
});

const SUMMARY = `
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

type SummaryRow = Row & { satellites: string; version: number | null; manifest_digest: string | null; published_at: Date | null };
const summaryFromRow = (r: SummaryRow): GroupSummary => ({
  ...fromRow(r),
  satellites: Number(r.satellites),
  state: r.version === null ? null : { version: r.version, digest: r.manifest_digest, publishedAt: r.published_at },
});

export class GroupStore {
  constructor(private readonly pool: Pool) {}

  async get(group: string): Promise<ManagedGroup | undefined> {
    const { rows } = await query<Row>(this.pool, 'SELECT * FROM group_policies WHERE group_name = $1 AND deleted_at IS NULL', [group]);
    return rows[0] && fromRow(rows[0]);
  }

  async summary(group: string): Promise<GroupSummary | undefined> {
    const { rows } = await query<SummaryRow>(this.pool, `${SUMMARY} AND p.group_name = $1`, [group]);
    return rows[0] && summaryFromRow(rows[0]);
  }

  async list(): Promise<GroupSummary[]> {
    const { rows } = await query<SummaryRow>(this.pool, `${SUMMARY} ORDER BY p.group_name`);
    return rows.map(summaryFromRow);
  }

  async byPolicyId(policyId: number): Promise<ManagedGroup | undefined> {
    const { rows } = await query<Row>(this.pool, 'SELECT * FROM group_policies WHERE policy_id = $1 AND deleted_at IS NULL', [policyId]);
    return rows[0] && fromRow(rows[0]);
  }

  /**
   * Records (or revives) a managed group; the group itself is created if it recorded nothing
   * yet. A group with no published state is marked dirty in the same statement, so the worker
   * publishes its first state (empty, if nothing was replicated yet) at once: every group a
   * satellite names has a state to read from the start (Harbor Satellite's satellites fail
   * their whole sync cycle on a missing one).
   */
  async save(g: Omit<ManagedGroup, 'createdAt' | 'updatedAt'>): Promise<{ created: boolean }> {
    const { rows } = await query<{ created: boolean }>(this.pool,
      `WITH g AS (INSERT INTO groups (name) VALUES ($1) ON CONFLICT DO NOTHING),
       o AS (INSERT INTO outbox (group_name) SELECT $1
              WHERE NOT EXISTS (SELECT 1 FROM state_versions WHERE group_name = $1 AND status = 'published'))
       INSERT INTO group_policies (group_name, policy_id, registry_id, filters, trigger, projects, adopted)
       VALUES ($1, $2, $3, $4, $5, $6, $7)
       ON CONFLICT (group_name) DO UPDATE SET
         policy_id = EXCLUDED.policy_id, registry_id = EXCLUDED.registry_id, filters = EXCLUDED.filters,
         trigger = EXCLUDED.trigger, projects = EXCLUDED.projects, adopted = EXCLUDED.adopted, updated_at = now(),
         created_at = CASE WHEN group_policies.deleted_at IS NULL THEN group_policies.created_at ELSE now() END,
         deleted_at = NULL
       RETURNING (xmax = 0 OR created_at = updated_at) AS created`,
      [g.name, g.policyId, g.registryId, JSON.stringify(g.filters), JSON.stringify(g.trigger), g.projects, g.adopted]);
    return { created: rows[0]?.created ?? false };
  }

  /** Managed groups whose source projects include `project`. */
  async byProject(project: string): Promise<ManagedGroup[]> {
    const { rows } = await query<Row>(this.pool,
      'SELECT * FROM group_policies WHERE $1 = ANY(projects) AND deleted_at IS NULL ORDER BY group_name', [project]);
    return rows.map(fromRow);
  }

  /** Source projects some managed group other than `except` still needs webhooks for. */
  async projectsInUse(except: string): Promise<Set<string>> {
    const { rows } = await query<{ project: string }>(this.pool,
      'SELECT DISTINCT unnest(projects) AS project FROM group_policies WHERE group_name <> $1 AND deleted_at IS NULL', [except]);
    return new Set(rows.map((r) => r.project));
  }

  /**
   * Deletes a managed group: every live artifact becomes a tombstone (so its satellites remove
   * the images), the change is logged and the group marked dirty, all in one transaction.
   * Returns how many artifacts were tombstoned.
   */
  async deleteAndTombstone(group: string, alsoInTransaction?: (c: Client) => Promise<void>): Promise<number> {
    return inTransaction(this.pool, async (c) => {
      const { rows } = await c.query<{ n: string }>(
        `WITH gone AS (
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
         SELECT (SELECT count(*) FROM a) AS n, (SELECT count(*) FROM gone) AS g`, [group]);
      await alsoInTransaction?.(c);
      return Number(rows[0]?.n ?? 0);
    });
  }

  /** Marks groups dirty (a build follows through the outbox relay). */
  async markDirty(groups: readonly string[], c?: Client): Promise<void> {
    if (groups.length === 0) return;
    await query(c ?? this.pool, 'INSERT INTO outbox (group_name) SELECT unnest($1::text[])', [groups]);
  }

  /** Groups that hold a live artifact with this repository and digest (or signed by it). */
  async listing(repository: string, digest: string): Promise<string[]> {
    const { rows } = await query<{ group_name: string }>(this.pool,
      `SELECT DISTINCT group_name FROM artifacts
        WHERE repository = $1 AND (digest = $2 OR subject_digest = $2) AND NOT deleted ORDER BY group_name`, [repository, digest]);
    return rows.map((r) => r.group_name);
  }

  /** Whether a group exists at all (recorded something, or created through the API). */
  async exists(group: string): Promise<boolean> {
    const { rowCount } = await query(this.pool, 'SELECT 1 FROM groups WHERE name = $1', [group]);
    return rowCount === 1;
  }

  /**
   * Whether a satellite may belong to the group: it exists and is not a managed group that
   * was deleted (a deleted group keeps its row, and its tombstones, until they are pruned).
   */
  async isLive(group: string): Promise<boolean> {
    const { rowCount } = await query(this.pool,
      `SELECT 1 FROM groups g WHERE g.name = $1
          AND NOT EXISTS (SELECT 1 FROM group_policies p WHERE p.group_name = g.name AND p.deleted_at IS NOT NULL)`, [group]);
    return rowCount === 1;
  }

  /** The Harbor projects of a group's live images (the first component of each repository). */
  async imageProjects(groups: readonly string[]): Promise<string[]> {
    const { rows } = await query<{ project: string }>(this.pool,
      `SELECT DISTINCT split_part(repository, '/', 1) AS project FROM artifacts
        WHERE group_name = ANY($1) AND NOT deleted ORDER BY 1`, [groups]);
    return rows.map((r) => r.project);
  }
}
