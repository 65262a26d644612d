import DataLoader from 'dataloader';
import { inTransaction, query, queryArrays, type Pool } from '../db/pool.js';
import type { ArtifactKind } from '../oci/media-types.js';
import type { ParsedManifest, Platform } from '../oci/manifest.js';

// All SQL about a group's artifacts lives here. Every write is one statement (data-modifying
// CTEs), so it is atomic without an explicit transaction and costs one round trip; each
// writes its change_log and outbox rows in that same statement, so a change is either
// recorded together with the "group is dirty" mark, or not at all.

export interface ArtifactRef {
  group: string;
  repository: string;
}

export interface StoredManifest {
  digest: string;
  mediaType: string;
  body: Buffer;
  subject: string | null;
}

export interface ReferrerRow {
  digest: string;
  mediaType: string;
  size: number;
  artifactType: string | null;
  annotations: Record<string, string> | null;
}

export interface GroupArtifactRow {
  repository: string;
  digest: string;
  mediaType: string;
  kind: ArtifactKind;
  size: number;
  subject: string | null;
  deleted: boolean;
  tags: string[];
  children: { digest: string; mediaType: string; platform: Platform | null }[] | null;
  /** Harbor's labels of the artifact, when reconciliation has read them. */
  labels?: string[] | null;
  /** The platform Harbor read from a single-platform image's config, when known. */
  platform?: Platform | null;
}

/** What a state does with a superseded manifest (SUPERSEDED_MANIFESTS). */
export type SupersededPolicy = 'tombstone' | 'keep';

/** A group as one snapshot saw it (ArtifactStore.snapshot). */
export interface GroupSnapshot {
  /** pg_snapshot_xmin of the read (xid8 as text): changes of this transaction or later may be unseen. */
  xmin: string;
  /** The database's time of the read. */
  at: Date;
  /** The newest change of the group the read saw (or a newer one). */
  changeId: number;
  /** The read's whole snapshot (pg_snapshot as text): exactly which transactions it saw. */
  snapshot?: string;
  rows: ListedRow[];
  /** When read since an earlier snapshot: the entries re-read (rows holds those still listed). */
  keys?: { repository: string; digest: string }[];
}

/** A listed artifact, and when it leaves the list by itself (a tombstone's retention ends). */
export interface ListedRow extends GroupArtifactRow {
  expiresAt: Date | null;
}

type ListingRow = [string, string, string, ArtifactKind, number, string | null, boolean, string | null, GroupArtifactRow['children'],
  string[] | null, Platform | null, Date | null];

const fromListing = (r: ListingRow): ListedRow => ({
  repository: r[0], digest: r[1], mediaType: r[2], kind: r[3], size: r[4],
  subject: r[5], deleted: r[6], tags: r[7] === null ? [] : r[7].split(' '), children: r[8], labels: r[9], platform: r[10], expiresAt: r[11],
});

// cosign's attachment tags, sha256-<hex>.sig|.att|.sbom, and the digest they name.
const COSIGN_TAG = `'^(sha256|sha512)-([a-f0-9]+)\\.(sig|att|sbom)$'`;
const cosignTarget = (tag: string) => `regexp_replace(${tag}, ${COSIGN_TAG}, '\\1:\\2')`;

/**
 * The group listing: one pass over each table (hash joins on pre-aggregated tags and
 * children), not a subquery per artifact. $1 group, $2 retention in hours, $3 whether
 * superseded manifests become tombstones. Keyed ($4 the xmin of an earlier snapshot): only
 * the entries changes since then may have touched, each with its listing row (or nulls).
 */
/** Rows a statement reads before a listing goes through a cursor (memory stays per batch). */
const BATCH = 5000;

/** Where a build starts: the oldest transaction still running, the time, the group's newest change. */
const POINT = `pg_snapshot_xmin(pg_current_snapshot())::text AS xmin, now() AS at,
  COALESCE((SELECT max(id) FROM change_log WHERE group_name = $1), 0)::text AS change_id,
  pg_current_snapshot()::text AS snapshot`;
/** How many columns of each listing row the point takes. */
const P = 4;

function listingSql(mode: 'plain' | 'all' | 'keyed'): string {
  const keyed = mode === 'keyed';
  const on = (alias: string, digest: string) => (keyed ? `AND (${alias}.repository, ${alias}.${digest}) IN (SELECT repository, digest FROM touched)` : '');
  const touched = keyed ? `changes AS (
         SELECT repository, digest, tag, previous_digest FROM change_log WHERE group_name = $1 AND xid >= $4::xid8
       ), direct AS (
         SELECT repository, digest FROM changes
         UNION SELECT repository, digest FROM harbor_artifacts WHERE xid >= $4::xid8
         UNION SELECT repository, previous_digest FROM changes WHERE previous_digest IS NOT NULL
         UNION SELECT repository, ${cosignTarget('tag')} FROM changes WHERE tag ~ ${COSIGN_TAG}
         UNION SELECT * FROM unnest($5::text[], $6::text[])
       ), touched AS (
         SELECT repository, digest FROM direct
         UNION SELECT c.repository, c.child_digest FROM index_children c JOIN direct d USING (repository)
                WHERE c.group_name = $1 AND c.index_digest = d.digest
         UNION SELECT a.repository, a.subject_digest FROM artifacts a JOIN direct d USING (repository)
                WHERE a.group_name = $1 AND a.digest = d.digest AND a.subject_digest IS NOT NULL
         UNION SELECT a.repository, ${cosignTarget('x.tag')} FROM artifacts a JOIN direct d USING (repository), unnest(a.deleted_tags) AS x(tag)
                WHERE a.group_name = $1 AND a.digest = d.digest AND x.tag ~ ${COSIGN_TAG}
       ), ` : '';
  return `WITH ${touched}t AS (
         SELECT repository, digest, string_agg(tag, ' ') AS tags FROM tags x WHERE group_name = $1 ${on('x', 'digest')} GROUP BY repository, digest
       ), ch AS (
         SELECT repository, index_digest,
                json_agg(json_build_object('digest', child_digest, 'mediaType', media_type, 'platform', platform) ORDER BY position) AS children
           FROM index_children x WHERE group_name = $1 ${on('x', 'index_digest')} GROUP BY repository, index_digest
       ), kids AS (
         SELECT DISTINCT repository, child_digest FROM index_children x WHERE group_name = $1 ${on('x', 'child_digest')}
       ), listed AS (
         SELECT a.repository, a.digest, a.media_type, a.kind, a.size, a.subject_digest, a.deleted, a.deleted_at,
                CASE WHEN a.deleted THEN NULLIF(array_to_string(a.deleted_tags, ' '), '') ELSE t.tags END AS tags,
                ch.children, h.labels, h.platform, sm.superseded_at,
                -- Superseded: untagged since a tag moved away from it, and neither an index
                -- nor a signature (a subject, or cosign's sha256-<hex>.sig tag) names it.
                (NOT a.deleted AND sm.superseded_at IS NOT NULL AND (a.tagged_at IS NULL OR sm.superseded_at > a.tagged_at)
                 AND t.tags IS NULL AND $3
                 AND NOT EXISTS (SELECT 1 FROM artifacts s WHERE s.group_name = $1 AND s.repository = a.repository
                                    AND s.subject_digest = a.digest AND s.kind = 'SIGNATURE' AND NOT s.deleted)
                 AND NOT EXISTS (SELECT 1 FROM tags st WHERE st.group_name = $1 AND st.repository = a.repository
                                    AND st.tag = replace(a.digest, ':', '-') || '.sig')) AS superseded
           FROM artifacts a
           LEFT JOIN t ON t.repository = a.repository AND t.digest = a.digest
           LEFT JOIN ch ON ch.repository = a.repository AND ch.index_digest = a.digest
           LEFT JOIN kids k ON k.repository = a.repository AND k.child_digest = a.digest
           LEFT JOIN harbor_artifacts h ON h.repository = a.repository AND h.digest = a.digest
           LEFT JOIN superseded_manifests sm ON sm.group_name = $1 AND sm.repository = a.repository AND sm.digest = a.digest
          WHERE a.group_name = $1 ${on('a', 'digest')}
            AND (NOT a.deleted OR a.deleted_at > now() - make_interval(hours => $2))
            AND (cardinality(a.deleted_tags) > 0 OR t.tags IS NOT NULL OR k.child_digest IS NULL)
       ), visible AS (
         SELECT repository, digest, media_type, kind, size, subject_digest, deleted OR superseded AS deleted, tags, children, labels, platform,
                CASE WHEN deleted THEN deleted_at + make_interval(hours => $2)
                     WHEN superseded THEN superseded_at + make_interval(hours => $2) END AS expires_at
           FROM listed
          WHERE NOT superseded OR superseded_at > now() - make_interval(hours => $2)
       )
       ${{
    // The point comes first in every row (one row of it alone when nothing is listed).
    keyed: `, point AS (SELECT ${POINT})
       SELECT p.*, k.repository, k.digest, v.repository, v.digest, v.media_type, v.kind, v.size, v.subject_digest, v.deleted, v.tags, v.children, v.labels, v.platform, v.expires_at
         FROM point p LEFT JOIN (touched k LEFT JOIN visible v USING (repository, digest)) ON true`,
    // A group of more than $4 records gets the point alone (a one-time filter: the listing
    // is not run), and is then read through a cursor.
    all: `, point AS (SELECT ${POINT}), page AS (
         SELECT * FROM visible WHERE (SELECT count(*) FROM artifacts WHERE group_name = $1) <= $4)
       SELECT p.*, v.* FROM point p LEFT JOIN page v ON true ORDER BY v.repository COLLATE "C", v.digest COLLATE "C"`,
    plain: 'SELECT * FROM visible ORDER BY repository COLLATE "C", digest COLLATE "C"',
  }[mode]}`;
}

export class ArtifactStore {
  private sizes: DataLoader<string, number | undefined> | undefined;
  private readonly knownSizes = new Map<string, number>();

  constructor(private readonly pool: Pool) {}

  /**
   * Records a manifest (and moves `tag` to it) in one atomic statement, with its change_log
   * and outbox rows when it changes what the group holds.
   */
  async recordManifest(ref: ArtifactRef, m: ParsedManifest, tag: string | null): Promise<void> {
    const children = m.children;
    await query(
      this.pool,
      `WITH changed AS (
         -- Nothing changes when the manifest is already live and the tag (if any) already
         -- names it: Harbor's re-sends then add no change_log row and no build.
         SELECT NOT EXISTS (SELECT 1 FROM artifacts WHERE group_name = $1 AND repository = $2 AND digest = $3 AND NOT deleted)
             OR ($15::text IS NOT NULL AND NOT EXISTS (
                   SELECT 1 FROM tags WHERE group_name = $1 AND repository = $2 AND tag = $15 AND digest = $3)) AS yes
       ), g AS (
         INSERT INTO groups (name) VALUES ($1) ON CONFLICT DO NOTHING
       ), a AS (
         INSERT INTO artifacts (group_name, repository, digest, media_type, kind, artifact_type, size, body,
                                subject_digest, annotations, tagged_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, CASE WHEN $15::text IS NOT NULL THEN clock_timestamp() END)
         ON CONFLICT (group_name, repository, digest) DO UPDATE
           SET last_seen = now(), deleted = false, deleted_at = NULL, deleted_tags = '{}',
               tagged_at = COALESCE(EXCLUDED.tagged_at, artifacts.tagged_at)
           -- An identical re-send writes nothing (no dead row per PUT): only a revival, a
           -- tag new to this manifest (tagged_at), or last_seen once an hour.
           WHERE artifacts.deleted OR artifacts.last_seen < now() - interval '1 hour'
              OR ($15::text IS NOT NULL AND (SELECT yes FROM changed))
       ), c AS (
         INSERT INTO index_children (group_name, repository, index_digest, position, child_digest, media_type, size, platform)
         SELECT $1, $2, $3, p.position - 1, p.digest, p.media_type, p.size, p.platform
           FROM unnest($11::text[], $12::text[], $13::bigint[], $14::jsonb[]) WITH ORDINALITY
                AS p(digest, media_type, size, platform, position)
         ON CONFLICT DO NOTHING
       ), t AS (
         -- previous_digest comes from the row the upsert locked (the newest committed one),
         -- so two PUTs moving the same tag at once each learn what they moved it from.
         INSERT INTO tags (group_name, repository, tag, digest)
         SELECT $1, $2, $15, $3 WHERE $15::text IS NOT NULL
         ON CONFLICT (group_name, repository, tag) DO UPDATE
           SET digest = EXCLUDED.digest, updated_at = now(), previous_digest = tags.digest
           WHERE tags.digest <> EXCLUDED.digest
         RETURNING CASE WHEN previous_digest <> digest THEN previous_digest END AS moved_from
       ), b AS (
         INSERT INTO blob_sizes (group_name, repository, digest, size)
         SELECT $1, $2, x.digest, x.size FROM unnest($16::text[], $17::bigint[]) AS x(digest, size)
         ON CONFLICT DO NOTHING
       ), s AS (
         -- The manifest the tag moved away from is superseded once nothing else names it
         -- (decided when states are listed). An upsert: its row may be newer than this
         -- statement's snapshot.
         INSERT INTO superseded_manifests (group_name, repository, digest, superseded_at)
         SELECT $1, $2, moved_from, clock_timestamp() FROM t WHERE moved_from IS NOT NULL
         ON CONFLICT (group_name, repository, digest) DO UPDATE SET superseded_at = EXCLUDED.superseded_at
       ), d AS (
         -- A change: what the snapshot saw says so, or the tag upsert moved the tag (a PUT
         -- racing another PUT of the same tag can see no change yet move it back).
         SELECT yes OR EXISTS (SELECT 1 FROM t) AS yes FROM changed
       ), l AS (
         INSERT INTO change_log (group_name, action, repository, digest, tag, previous_digest)
         SELECT $1, 'put', $2, $3, $15, (SELECT moved_from FROM t) FROM d WHERE yes
       )
       INSERT INTO outbox (group_name) SELECT $1 FROM d WHERE yes`,
      [
        ref.group, ref.repository, m.digest, m.mediaType, m.kind, m.artifactType, m.bytes.length, m.bytes,
        m.subject, m.annotations === null ? null : JSON.stringify(m.annotations),
        children.map((c) => c.digest), children.map((c) => c.mediaType), children.map((c) => c.size),
        children.map((c) => (c.platform === null ? null : JSON.stringify(c.platform))),
        tag,
        m.blobs.map((b) => b.digest), m.blobs.map((b) => b.size),
      ],
    );
  }

  /**
   * The size of a blob a recorded manifest or a finished upload named; undefined when
   * unknown. Harbor HEADs every blob of every image it replicates, so lookups arriving
   * together are answered by one query (DataLoader, batched per turn of the event loop), and
   * known sizes are remembered: a digest's size never changes.
   */
  async blobSize(ref: ArtifactRef, digest: string): Promise<number | undefined> {
    const key = `${ref.group} ${ref.repository} ${digest}`; // names and digests hold no space
    const known = this.knownSizes.get(key);
    if (known !== undefined) return known;
    this.sizes ??= new DataLoader<string, number | undefined>((keys) => this.blobSizes(keys), {
      cache: false,
      maxBatchSize: 500,
      batchScheduleFn: (run) => setImmediate(run),
    });
    const size = await this.sizes.load(key);
    if (size !== undefined) {
      if (this.knownSizes.size >= 100_000) this.knownSizes.clear();
      this.knownSizes.set(key, size);
    }
    return size;
  }

  private async blobSizes(keys: readonly string[]): Promise<(number | undefined)[]> {
    const parts = keys.map((k) => k.split(' ') as [string, string, string]);
    const { rows } = await query<{ k: string; size: string }>(this.pool,
      `SELECT b.group_name || ' ' || b.repository || ' ' || b.digest AS k, b.size
         FROM unnest($1::text[], $2::text[], $3::text[]) AS q(g, r, d)
         JOIN blob_sizes b ON b.group_name = q.g AND b.repository = q.r AND b.digest = q.d`,
      [parts.map((p) => p[0]), parts.map((p) => p[1]), parts.map((p) => p[2])]);
    const found = new Map(rows.map((r) => [r.k, Number(r.size)]));
    return keys.map((k) => found.get(k));
  }

  /** Remembers the size of a blob whose bytes arrived and matched their digest. */
  async recordBlobSize(ref: ArtifactRef, digest: string, size: number): Promise<void> {
    await query(this.pool,
      'INSERT INTO blob_sizes (group_name, repository, digest, size) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING',
      [ref.group, ref.repository, digest, size]);
  }

  /**
   * Turns the manifest into a tombstone: it disappears from the registry API and its tags
   * are kept on the row so the next state can tell satellites what to remove.
   * Returns false when there is no live manifest with that digest.
   */
  async deleteManifest(ref: ArtifactRef, digest: string): Promise<boolean> {
    const { rowCount } = await query(
      this.pool,
      `WITH old_tags AS (
         DELETE FROM tags WHERE group_name = $1 AND repository = $2 AND digest = $3 RETURNING tag
       ), a AS (
         UPDATE artifacts
            SET deleted = true, deleted_at = now(),
                deleted_tags = COALESCE((SELECT array_agg(tag ORDER BY tag) FROM old_tags), '{}')
          WHERE group_name = $1 AND repository = $2 AND digest = $3 AND NOT deleted
          RETURNING group_name
       ), l AS (
         INSERT INTO change_log (group_name, action, repository, digest) SELECT $1, 'delete', $2, $3 FROM a
       )
       INSERT INTO outbox (group_name) SELECT group_name FROM a`,
      [ref.group, ref.repository, digest],
    );
    return rowCount === 1;
  }

  /** Removes a tag (OCI 1.1 DELETE by tag); the manifest stays. False when no such tag. */
  async untag(ref: ArtifactRef, tag: string): Promise<boolean> {
    const { rowCount } = await query(
      this.pool,
      `WITH t AS (
         DELETE FROM tags WHERE group_name = $1 AND repository = $2 AND tag = $3 RETURNING digest
       ), l AS (
         INSERT INTO change_log (group_name, action, repository, digest, tag) SELECT $1, 'untag', $2, digest, $3 FROM t
       )
       INSERT INTO outbox (group_name) SELECT $1 FROM t`,
      [ref.group, ref.repository, tag],
    );
    return rowCount === 1;
  }

  /** A live manifest by tag or digest, with the exact bytes recorded. */
  async getManifest(ref: ArtifactRef, reference: { tag: string } | { digest: string }): Promise<StoredManifest | undefined> {
    const byTag = 'tag' in reference;
    const { rows } = await query<{ digest: string; media_type: string; body: Buffer; subject_digest: string | null }>(
      this.pool,
      byTag
        ? `SELECT a.digest, a.media_type, a.body, a.subject_digest FROM tags t
             JOIN artifacts a USING (group_name, repository, digest)
            WHERE t.group_name = $1 AND t.repository = $2 AND t.tag = $3 AND NOT a.deleted`
        : `SELECT digest, media_type, body, subject_digest FROM artifacts
            WHERE group_name = $1 AND repository = $2 AND digest = $3 AND NOT deleted`,
      [ref.group, ref.repository, byTag ? reference.tag : reference.digest],
    );
    const r = rows[0];
    return r && { digest: r.digest, mediaType: r.media_type, body: r.body, subject: r.subject_digest };
  }

  /** Tags in lexical order, after `last`, at most `limit`; undefined when the repository is unknown. */
  async listTags(ref: ArtifactRef, limit: number, last: string | undefined): Promise<string[] | undefined> {
    const { rows } = await query<{ tag: string | null }>(
      this.pool,
      `SELECT t.tag FROM (SELECT 1 FROM artifacts WHERE group_name = $1 AND repository = $2 LIMIT 1) known
         LEFT JOIN LATERAL (
           SELECT tag FROM tags WHERE group_name = $1 AND repository = $2 AND ($3::text IS NULL OR tag COLLATE "C" > $3)
            ORDER BY tag COLLATE "C" LIMIT $4
         ) t ON true`,
      [ref.group, ref.repository, last ?? null, limit],
    );
    if (rows.length === 0) return undefined;
    return rows.flatMap((r) => (r.tag === null ? [] : [r.tag]));
  }

  /** Live manifests whose `subject` is `digest` (OCI referrers API). */
  async referrers(ref: ArtifactRef, digest: string, artifactType: string | undefined): Promise<ReferrerRow[]> {
    const { rows } = await query<{ digest: string; media_type: string; size: number; artifact_type: string | null; annotations: Record<string, string> | null }>(
      this.pool,
      `SELECT digest, media_type, size, artifact_type, annotations FROM artifacts
        WHERE group_name = $1 AND repository = $2 AND subject_digest = $3 AND NOT deleted
          AND ($4::text IS NULL OR artifact_type = $4)
        ORDER BY digest COLLATE "C"`,
      [ref.group, ref.repository, digest, artifactType ?? null],
    );
    return rows.map((r) => ({ digest: r.digest, mediaType: r.media_type, size: r.size, artifactType: r.artifact_type, annotations: r.annotations }));
  }

  /**
   * Everything a group's state lists, sorted by repository then digest (code-unit order):
   * live artifacts, and tombstones younger than the retention. An untagged manifest that an
   * index of the same repository lists is part of that index, not an entry of its own
   * (Harbor pushes an index's children first, by digest). A manifest a tag moved away from
   * and that nothing names any more (no tag, no index, no signature) is superseded: with
   * `superseded` "tombstone" it is listed as deleted for the retention, then left out.
   */
  async listGroup(group: string, tombstoneRetentionHours: number, superseded: SupersededPolicy = 'tombstone'): Promise<GroupArtifactRow[]> {
    const rows = await queryArrays<ListingRow>(this.pool, listingSql('plain'), [group, tombstoneRetentionHours, superseded === 'tombstone']);
    return rows.map(fromListing);
  }

  /**
   * The group as one snapshot sees it, for a build: the point it was read at (newest change,
   * time, and the oldest transaction still running then, `xmin`) and its listing. With
   * `since` (the xmin of an earlier snapshot) only the entries that changes since may have
   * touched are read, each with its listing row or none (no longer listed): the caller
   * holds the rest. An entry depends on its own record and tags, on the manifest a tag moved
   * from, on the index it is a child of, and on the signatures naming it; every write that
   * changes any of them logs a change naming those (the put's previous_digest, the index's
   * digest, the signature's digest or its cosign tag), so that set is found from the log;
   * what Harbor says of an artifact (labels, platform) is found by the transaction that
   * wrote it.
   */
  async snapshot(group: string, tombstoneRetentionHours: number, superseded: SupersededPolicy, since?: string,
    /**
     * Takes a full listing in batches, in order, as it is read (through a cursor), instead of
     * it being returned in `rows`: a 100,000-row listing then never sits in memory as rows.
     */
    onRows?: (rows: ListedRow[]) => void,
    /** With `since`: entries to read again whatever the log says (their expiry is not known). */
    also: readonly { repository: string; digest: string }[] = []): Promise<GroupSnapshot> {
    const params = [group, tombstoneRetentionHours, superseded === 'tombstone'];
    const pointOf = (r: unknown[]) => ({ xmin: r[0] as string, at: r[1] as Date, changeId: Number(r[2]), snapshot: r[3] as string });
    if (since !== undefined) {
      // One statement, one snapshot: the point and the entries touched since.
      const rows = await queryArrays<[string, Date, string, string, string | null, string | null, ...ListingRow]>(this.pool, listingSql('keyed'),
        [...params, since, also.map((k) => k.repository), also.map((k) => k.digest)]);
      const touched = rows.filter((r) => r[P] !== null);
      return {
        ...pointOf(rows[0]!),
        keys: touched.map((r) => ({ repository: r[P] as string, digest: r[P + 1] as string })),
        rows: touched.filter((r) => r[P + 2] !== null).map((r) => fromListing(r.slice(P + 2) as ListingRow)),
      };
    }
    // A group of up to BATCH records in one statement; a larger one through a cursor.
    const first = await queryArrays<[string, Date, string, string, ...ListingRow]>(this.pool, listingSql('all'), [...params, BATCH]);
    if (first.length > 1 || first[0]![P] !== null || (await this.recordCount(group)) <= BATCH) {
      const listed = first.filter((r) => r[P] !== null).map((r) => fromListing(r.slice(P) as ListingRow));
      if (onRows) onRows(listed);
      return { ...pointOf(first[0]!), rows: onRows ? [] : listed };
    }
    return inTransaction(this.pool, async (c) => {
      const { rows } = await c.query({ text: `SELECT ${POINT}`, values: [group], rowMode: 'array' });
      const all: ListedRow[] = [];
      await query(c, `DECLARE listing NO SCROLL CURSOR FOR ${listingSql('plain')}`, params);
      for (;;) {
        const batch = await queryArrays<ListingRow>(c, `FETCH ${BATCH} FROM listing`);
        if (batch.length === 0) break;
        if (onRows) onRows(batch.map(fromListing));
        else all.push(...batch.map(fromListing));
      }
      return { ...pointOf(rows[0] as unknown[]), rows: all };
    }, 'ISOLATION LEVEL REPEATABLE READ READ ONLY');
  }

  private async recordCount(group: string): Promise<number> {
    const { rows } = await query<{ n: number }>(this.pool, 'SELECT count(*)::int AS n FROM artifacts WHERE group_name = $1', [group]);
    return rows[0]!.n;
  }

  async groupExists(group: string): Promise<boolean> {
    const { rowCount } = await query(this.pool, 'SELECT 1 FROM groups WHERE name = $1', [group]);
    return rowCount === 1;
  }

  /**
   * Forgets tombstones older than the retention (they no longer appear in states), with the
   * untagged children of a forgotten index that no other index lists.
   */
  async purgeExpiredTombstones(tombstoneRetentionHours: number): Promise<number> {
    const { rows } = await query<{ n: string }>(
      this.pool,
      `WITH expired AS (
         SELECT group_name, repository, digest FROM artifacts
          WHERE deleted AND deleted_at < now() - make_interval(hours => $1)
       ), gone_links AS (
         DELETE FROM index_children c USING expired e
          WHERE c.group_name = e.group_name AND c.repository = e.repository AND c.index_digest = e.digest
          RETURNING c.group_name, c.repository, c.child_digest
       ), gone AS (
         DELETE FROM artifacts a USING expired e
          WHERE a.group_name = e.group_name AND a.repository = e.repository AND a.digest = e.digest
          RETURNING 1
       ), orphans AS (
         DELETE FROM artifacts a USING gone_links l
          WHERE a.group_name = l.group_name AND a.repository = l.repository AND a.digest = l.child_digest
            AND NOT EXISTS (SELECT 1 FROM tags t WHERE t.group_name = a.group_name AND t.repository = a.repository AND t.digest = a.digest)
            AND NOT EXISTS (SELECT 1 FROM index_children o WHERE o.group_name = a.group_name AND o.repository = a.repository
                              AND o.child_digest = a.digest
                              AND NOT (o.group_name, o.repository, o.index_digest) IN (SELECT * FROM expired))
          RETURNING 1
       )
       SELECT (SELECT count(*) FROM gone) + (SELECT count(*) FROM orphans) AS n`,
      [tombstoneRetentionHours],
    );
    return Number(rows[0]?.n ?? 0);
  }
}
