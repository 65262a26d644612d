import { query } from '../../core/db/pool.js';
import { DEFAULT_STATE_MAX_MB } from '../../core/state/format.js';
import { diffVersions, publishedState, StateNotPublishedError, type VersionDiff } from '../../core/state/version-diff.js';
import { AppliedStore } from '../../core/store/applied-store.js';
import { GroupStore } from '../../core/store/group-store.js';
import { groupStateRepository, type HarborContext } from '../../harbor/context.js';
import { ApiError, badRequest, notFound } from '../../harbor/errors.js';
import { groupDrift, type HarborSatelliteHeartbeat, type StatusReport } from '../../harbor/fleet.js';

// What the fleet dashboard shows that the rest of the admin API does not: the fleet at a
// glance (per group: latest version, who runs it, who is behind, failing or silent, and how
// fast satellites converged after the latest publish), a group's version history, the diff
// between two versions, and what a satellite last reported. Read in a few queries over the
// whole fleet, never one per satellite: the overview is the page opened first.

/** How long a registered satellite may go unseen before the overview calls it silent (20 default agent intervals of 30 s, and twice the agent's longest back-off). */
export const DEFAULT_SILENT_SECONDS = 600;

export interface GroupOverview {
  name: string;
  latest: { version: number; publishedAt: string | null } | null;
  /** Satellites of the group that are not revoked. */
  satellites: number;
  onLatest: number;
  /** Behind the latest version: how many in all, and how many by each number of versions. */
  behind: { total: number; byVersions: Record<string, number> };
  failing: number;
  /** Reported once, not seen for `silentAfterSeconds`. */
  silent: number;
  /** Registered, never reported. */
  neverReported: number;
  /** Given a token, not registered yet. */
  notRegistered: number;
  /** Reporting, but nothing of this group applied yet. */
  pending: number;
}

export interface ConvergencePoint {
  /** Seconds after the group's latest version was published. */
  seconds: number;
  /** Share (0..1) of the satellites that run it by then. */
  share: number;
}

export interface FleetOverview {
  generatedAt: string;
  silentAfterSeconds: number;
  totals: { groups: number; satellites: number; onLatest: number; behind: number; failing: number; silent: number };
  groups: GroupOverview[];
  /**
   * After each group's latest publish, the share of (satellite, group) pairs running it, by
   * seconds since that publish: when each satellite reported it applied the version.
   */
  convergence: { pairs: number; points: ConvergencePoint[] };
  /**
   * Over the last `HISTORY_DAYS`: the share of (satellite, group) pairs running their
   * group's latest version at each moment; it drops at each publish and climbs as
   * satellites apply it. Pairs are today's; at most HISTORY_POINTS points.
   */
  history: { since: string; points: { at: string; share: number }[] };
}

export const HISTORY_DAYS = 7;
/** The versions per group the overview reads: the newest, however long the group has lived. */
export const RECENT_VERSIONS = 100;
const HISTORY_POINTS = 300;

export interface VersionView {
  version: number;
  digest: string | null;
  createdAt: string;
  publishedAt: string | null;
  /** Images (manifests and indexes) the state lists. */
  images: number;
  /** The state artifact's size in bytes (manifest and blobs); null for a version published before it was kept. */
  bytes: number | null;
  /** Removed from the registry by the pruner (older than the versions kept). */
  pruned: boolean;
}

export interface SatelliteReportView {
  name: string;
  lastSeen: string | null;
  reportedAt: string | null;
  /** The report as the agent sent it (or a Harbor Satellite heartbeat), null before the first. */
  report: StatusReport | HarborSatelliteHeartbeat | null;
  /** Its newest registration token: unused (until expiresAt), used, expired or revoked; null if none was issued. */
  token: { status: 'unused' | 'used' | 'expired' | 'revoked'; issuedAt: string; expiresAt: string; usedAt: string | null } | null;
}

type SatelliteRow = {
  name: string; groups: string[] | null; robot_id: string | null; revoked_at: Date | null; last_seen: Date | null;
  report: StatusReport | HarborSatelliteHeartbeat | null;
};

type VersionRow = { group_name: string; version: number; manifest_digest: string | null; published_at: Date | null };

export class FleetService {
  private readonly groups: GroupStore;

  constructor(private readonly ctx: HarborContext, private readonly maxStateMb = DEFAULT_STATE_MAX_MB) {
    this.groups = new GroupStore(ctx.pool);
  }

  async overview(silentAfterSeconds = DEFAULT_SILENT_SECONDS, now = new Date()): Promise<FleetOverview> {
    const [groups, sats, versions] = await Promise.all([
      this.groups.list(),
      query<SatelliteRow>(this.ctx.pool,
        `SELECT s.name, s.robot_id, s.revoked_at, s.last_seen, s.report,
                (SELECT array_agg(group_name ORDER BY group_name) FROM satellite_groups g WHERE g.satellite = s.name) AS groups
           FROM satellites s WHERE s.revoked_at IS NULL`),
      // The newest versions of each group only (the table keeps every version ever
      // published): a satellite further behind is placed by the version it reports.
      query<VersionRow>(this.ctx.pool,
        `SELECT v.* FROM group_policies p CROSS JOIN LATERAL (
           SELECT group_name, version, manifest_digest, published_at FROM state_versions s
            WHERE s.group_name = p.group_name AND s.status = 'published' ORDER BY s.version DESC LIMIT $1) v
          WHERE p.deleted_at IS NULL`, [RECENT_VERSIONS]),
    ]);
    // group → digest → version, and the latest of each group.
    const byDigest = new Map<string, Map<string, number>>();
    const latest = new Map<string, VersionRow>();
    for (const v of versions.rows) {
      if (v.manifest_digest) {
        if (!byDigest.has(v.group_name)) byDigest.set(v.group_name, new Map());
        byDigest.get(v.group_name)!.set(v.manifest_digest, v.version);
      }
      const l = latest.get(v.group_name);
      if (!l || l.version < v.version) latest.set(v.group_name, v);
    }
    const rows = new Map<string, GroupOverview>(groups.map((g) => {
      const l = latest.get(g.name);
      return [g.name, {
        name: g.name, latest: l ? { version: l.version, publishedAt: l.published_at?.toISOString() ?? null } : null,
        satellites: 0, onLatest: 0, behind: { total: 0, byVersions: {} }, failing: 0, silent: 0, neverReported: 0, notRegistered: 0, pending: 0,
      }];
    }));
    const reachedAfter: number[] = [];
    let pairs = 0;
    const silentBefore = now.getTime() - silentAfterSeconds * 1000;
    for (const s of sats.rows) {
      const ours = s.report && !('kind' in s.report) ? s.report : null;
      for (const g of s.groups ?? []) {
        const row = rows.get(g);
        if (!row) continue; // a deleted group's
        row.satellites++;
        const l = latest.get(g);
        if (s.robot_id === null) {
          row.notRegistered++;
          continue;
        }
        if (l) pairs++;
        if (!s.report) {
          row.neverReported++;
          continue;
        }
        const reported = ours?.groups.find((x) => x.name === g);
        const drift = groupDrift(g, l && { version: l.version, digest: l.manifest_digest }, reported,
          reported?.digest ? byDigest.get(g)?.get(reported.digest) : undefined);
        if (l && drift.appliedVersion !== null && drift.appliedVersion >= l.version && reported?.appliedAt && l.published_at) {
          reachedAfter.push(Math.max(0, (Date.parse(reported.appliedAt) - l.published_at.getTime()) / 1000));
        }
        if (!s.last_seen || s.last_seen.getTime() < silentBefore) row.silent++;
        else if (drift.status === 'failing') row.failing++;
        else if (drift.status === 'up to date' || drift.status === 'no state yet') row.onLatest++;
        else if (drift.status === 'behind') {
          row.behind.total++;
          row.behind.byVersions[String(drift.behind)] = (row.behind.byVersions[String(drift.behind)] ?? 0) + 1;
        } else row.pending++;
      }
    }
    const history = await this.history(sats.rows.filter((s) => s.robot_id !== null), versions.rows.filter((v) => rows.has(v.group_name)), now);
    reachedAfter.sort((a, b) => a - b);
    const points: ConvergencePoint[] = [{ seconds: 0, share: 0 }];
    reachedAfter.forEach((seconds, i) => {
      const share = (i + 1) / pairs;
      if (points[points.length - 1]!.seconds === seconds) points[points.length - 1]!.share = share;
      else points.push({ seconds, share });
    });
    const list = [...rows.values()];
    const sum = (f: (g: GroupOverview) => number) => list.reduce((n, g) => n + f(g), 0);
    return {
      generatedAt: now.toISOString(), silentAfterSeconds,
      totals: {
        groups: list.length, satellites: sats.rows.length, onLatest: sum((g) => g.onLatest), behind: sum((g) => g.behind.total),
        failing: sum((g) => g.failing), silent: sum((g) => g.silent),
      },
      groups: list,
      convergence: { pairs, points: pairs === 0 ? [] : points },
      history,
    };
  }

  /**
   * The history, made again only when what it is made of changed (a version applied or
   * published, a satellite's groups) or a bucket of time went by: the overview is asked
   * every few seconds by every open page. The key is read from the database, so each
   * replica's copy is exact.
   */
  private async history(sats: SatelliteRow[], versions: VersionRow[], now: Date): Promise<FleetOverview['history']> {
    const { rows } = await query<{ n: number; last: Date | null }>(this.ctx.pool, 'SELECT count(*)::int AS n, max(applied_at) AS last FROM satellite_applied');
    const key = [rows[0]?.n, rows[0]?.last?.getTime(), versions.length, versions.reduce((m, v) => Math.max(m, v.published_at?.getTime() ?? 0), 0),
      sats.map((s) => `${s.name}:${(s.groups ?? []).join(',')}`).join(' ')].join('|');
    const bucketMs = (HISTORY_DAYS * 86_400_000) / HISTORY_POINTS;
    const cached = this.historyCache;
    if (cached && cached.key === key && now.getTime() - cached.at < bucketMs && cached.value.points.length > 0) {
      const points = cached.value.points;
      return { since: cached.value.since, points: [...points.slice(0, -1), { at: now.toISOString(), share: points[points.length - 1]!.share }] };
    }
    const value = await this.computeHistory(sats, versions, now);
    this.historyCache = { key, at: now.getTime(), value };
    return value;
  }

  private historyCache: { key: string; at: number; value: FleetOverview['history'] } | undefined;

  /**
   * The share of (satellite, group) pairs on their group's latest version since HISTORY_DAYS
   * ago, at the end of each of HISTORY_POINTS buckets (a point where it changed, and now).
   * The database adds up when each pair reached and left the latest version per bucket
   * (AppliedStore.onLatestDeltas), so a week of a large fleet is a few hundred rows here.
   */
  private async computeHistory(sats: SatelliteRow[], versions: VersionRow[], now: Date): Promise<FleetOverview['history']> {
    const since = new Date(now.getTime() - HISTORY_DAYS * 86_400_000);
    const bucketMs = (now.getTime() - since.getTime()) / HISTORY_POINTS;
    const bucketOf = (t: number) => Math.max(-1, Math.floor((t - since.getTime()) / bucketMs));
    // Pairs are counted from their group's first publish: before it there is no latest version.
    const pairs = new Map<string, number>();
    for (const s of sats) for (const g of s.groups ?? []) pairs.set(g, (pairs.get(g) ?? 0) + 1);
    const first = new Map<string, number>();
    for (const v of versions) {
      const t = v.published_at?.getTime();
      if (t !== undefined && t <= now.getTime() && t < (first.get(v.group_name) ?? Infinity)) first.set(v.group_name, t);
    }
    const counted = new Map<number, number>();
    for (const [g, t] of first) counted.set(bucketOf(t), (counted.get(bucketOf(t)) ?? 0) + (pairs.get(g) ?? 0));
    const on = await new AppliedStore(this.ctx.pool).onLatestDeltas(since, bucketMs, now, RECENT_VERSIONS);
    const points: { at: string; share: number }[] = [];
    let c = 0;
    let n = 0;
    for (let b = -1; b < HISTORY_POINTS; b++) {
      c += counted.get(b) ?? 0;
      n += on.get(b) ?? 0;
      const share = c === 0 ? undefined : n / c;
      const at = Math.min(now.getTime(), since.getTime() + (b + 1) * bucketMs);
      if (share !== undefined && (points.length === 0 || points[points.length - 1]!.share !== share)) points.push({ at: new Date(at).toISOString(), share });
    }
    const last = points[points.length - 1];
    if (last && last.at !== now.toISOString()) points.push({ at: now.toISOString(), share: last.share });
    return { since: since.toISOString(), points };
  }

  private async requireGroup(group: string): Promise<void> {
    if (!(await this.groups.get(group))) throw notFound(`group ${group}`);
  }

  /** The group's published versions, newest first. */
  async versions(group: string): Promise<VersionView[]> {
    await this.requireGroup(group);
    const { rows } = await query<{ version: number; manifest_digest: string | null; created_at: Date; published_at: Date | null; artifact_count: number; bytes: string | null; pruned_at: Date | null }>(this.ctx.pool,
      `SELECT version, manifest_digest, created_at, published_at, artifact_count, bytes, pruned_at FROM state_versions
        WHERE group_name = $1 AND status = 'published' ORDER BY version DESC`, [group]);
    return rows.map((r) => ({
      version: r.version, digest: r.manifest_digest, createdAt: r.created_at.toISOString(), publishedAt: r.published_at?.toISOString() ?? null,
      images: r.artifact_count, bytes: r.bytes === null ? null : Number(r.bytes), pruned: r.pruned_at !== null,
    }));
  }

  /** What changed for satellites from version `from` to version `to`, as `satellite state diff` says it. */
  async diff(group: string, from: number, to: number): Promise<VersionDiff> {
    await this.requireGroup(group);
    const repository = groupStateRepository(this.ctx, group);
    const read = async (version: number, field: string) => {
      try {
        return await publishedState(this.ctx.stateRegistry, repository, String(version), this.maxStateMb);
      } catch (err) {
        if (err instanceof StateNotPublishedError) throw badRequest(field, `version ${version} of group ${group} is not published (or was pruned)`);
        throw new ApiError('UNAVAILABLE', `the state registry could not be read: ${(err as Error).message}`);
      }
    };
    const [a, b] = await Promise.all([read(from, 'from'), read(to, 'to')]);
    return diffVersions(group, a, b);
  }

  /** What the satellite last reported, as sent. */
  async report(name: string): Promise<SatelliteReportView> {
    type Row = {
      name: string; last_seen: Date | null; reported_at: Date | null; report: SatelliteReportView['report'];
      created_at: Date | null; expires_at: Date | null; used_at: Date | null; revoked_at: Date | null; expired: boolean | null;
    };
    const { rows } = await query<Row>(this.ctx.pool,
      `SELECT s.name, s.last_seen, s.reported_at, s.report, t.created_at, t.expires_at, t.used_at, t.revoked_at, t.expires_at <= now() AS expired
         FROM satellites s
         LEFT JOIN LATERAL (SELECT * FROM registration_tokens t WHERE t.satellite = s.name ORDER BY t.created_at DESC LIMIT 1) t ON true
        WHERE s.name = $1`, [name]);
    const r = rows[0];
    if (!r) throw notFound(`satellite ${name}`);
    const token: SatelliteReportView['token'] = r.created_at && r.expires_at ? {
      status: r.used_at ? 'used' : r.revoked_at ? 'revoked' : r.expired ? 'expired' : 'unused',
      issuedAt: r.created_at.toISOString(), expiresAt: r.expires_at.toISOString(), usedAt: r.used_at?.toISOString() ?? null,
    } : null;
    return { name: r.name, lastSeen: r.last_seen?.toISOString() ?? null, reportedAt: r.reported_at?.toISOString() ?? null, report: r.report, token };
  }
}
