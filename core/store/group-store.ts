import { inTransaction, query, type Client, type Pool } from '../db/pool.js';
import * as sql from './group-store.sql.js';

// Groups run through the admin API (group_policies): their Harbor replication rule, the
// filters and trigger it was given, the source projects whose webhooks report to us. All
// SQL about them goes through here (the longer statements are in group-store.sql.ts).

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
    const { rows } = await query<SummaryRow>(this.pool, `${sql.SUMMARY} AND p.group_name = $1`, [group]);
    return rows[0] && summaryFromRow(rows[0]);
  }

  async list(): Promise<GroupSummary[]> {
    const { rows } = await query<SummaryRow>(this.pool, `${sql.SUMMARY} ORDER BY p.group_name`);
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
    const { rows } = await query<{ created: boolean }>(this.pool, sql.SAVE,
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
      const { rows } = await c.query<{ n: string }>(sql.DELETE_AND_TOMBSTONE, [group]);
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
    const { rows } = await query<{ group_name: string }>(this.pool, sql.LISTING, [repository, digest]);
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
    const { rowCount } = await query(this.pool, sql.IS_LIVE, [group]);
    return rowCount === 1;
  }

  /** The Harbor projects of a group's live images (the first component of each repository). */
  async imageProjects(groups: readonly string[]): Promise<string[]> {
    const { rows } = await query<{ project: string }>(this.pool, sql.IMAGE_PROJECTS, [groups]);
    return rows.map((r) => r.project);
  }
}
