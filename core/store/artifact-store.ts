import DataLoader from 'dataloader';
import { fetchArrays, inTransaction, prepared, query, queryArrays, type Pool } from '../db/pool.js';
import type { ArtifactKind } from '../oci/media-types.js';
import type { ParsedManifest, Platform } from '../oci/manifest.js';
import * as sql from './artifact-store.sql.js';

// All SQL about a group's artifacts goes through here (the statements are in
// artifact-store.sql.ts). Every write is one statement (data-modifying
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

/** Rows a statement reads before a listing goes through a cursor (memory stays per batch). */
const BATCH = 5000;
/**
 * Rows a cursor's FETCH takes. Small enough that a batch's row objects die young, in the
 * scavenged new space, while the next batch is read: with 5,000 a 100,000-entry first build
 * peaked about 25 MiB higher (bench/build-once.ts), for no less CPU.
 */
const FETCH_ROWS = 1000;
/** Up to this many entries a group's reads of its changes use a prepared statement. */
const SMALL_GROUP = 1000;
const KEYED_SMALL = prepared(sql.listing('keyed'));
const ALL_UP_TO_BATCH = prepared(sql.listing('all'));
/** How many columns of each listing row the point takes. */
const P = sql.POINT_COLUMNS;

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
      this.pool, sql.RECORD_MANIFEST,
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
    const { rows } = await query<{ k: string; size: string }>(this.pool, sql.BLOB_SIZES,
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
      this.pool, sql.DELETE_MANIFEST,
      [ref.group, ref.repository, digest],
    );
    return rowCount === 1;
  }

  /** Removes a tag (OCI 1.1 DELETE by tag); the manifest stays. False when no such tag. */
  async untag(ref: ArtifactRef, tag: string): Promise<boolean> {
    const { rowCount } = await query(
      this.pool, sql.UNTAG,
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
        ? sql.MANIFEST_BY_TAG
        : sql.MANIFEST_BY_DIGEST,
      [ref.group, ref.repository, byTag ? reference.tag : reference.digest],
    );
    const r = rows[0];
    return r && { digest: r.digest, mediaType: r.media_type, body: r.body, subject: r.subject_digest };
  }

  /** Tags in lexical order, after `last`, at most `limit`; undefined when the repository is unknown. */
  async listTags(ref: ArtifactRef, limit: number, last: string | undefined): Promise<string[] | undefined> {
    const { rows } = await query<{ tag: string | null }>(
      this.pool, sql.LIST_TAGS,
      [ref.group, ref.repository, last ?? null, limit],
    );
    if (rows.length === 0) return undefined;
    return rows.flatMap((r) => (r.tag === null ? [] : [r.tag]));
  }

  /** Live manifests whose `subject` is `digest` (OCI referrers API). */
  async referrers(ref: ArtifactRef, digest: string, artifactType: string | undefined): Promise<ReferrerRow[]> {
    const { rows } = await query<{ digest: string; media_type: string; size: number; artifact_type: string | null; annotations: Record<string, string> | null }>(
      this.pool, sql.REFERRERS,
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
    const rows = await queryArrays<ListingRow>(this.pool, sql.listing('plain'), [group, tombstoneRetentionHours, superseded === 'tombstone']);
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
     * A batch is the callback's only during the call (it is emptied afterwards).
     */
    onRows?: (rows: ListedRow[]) => void,
    /** With `since`: entries to read again whatever the log says (their expiry is not known). */
    also: readonly { repository: string; digest: string }[] = [],
    /** With `since`: how many entries the caller holds of the group, when it knows. */
    holds?: number): Promise<GroupSnapshot> {
    const params = [group, tombstoneRetentionHours, superseded === 'tombstone'];
    const pointOf = (r: unknown[]) => ({ xmin: r[0] as string, at: r[1] as Date, changeId: Number(r[2]), snapshot: r[3] as string });
    if (since !== undefined) {
      // One statement, one snapshot: the point and the entries touched since.
      // Planning this statement took three times as long as running it on a small group
      // (2.8 against 0.9 ms): a group known to be small gets the prepared one, whose generic
      // plan Postgres then keeps; a large one, or one of unknown size, is planned for what
      // it holds (a generic plan guesses the share of a group's changes since $4).
      const statement = holds !== undefined && holds <= SMALL_GROUP ? KEYED_SMALL : sql.listing('keyed');
      const rows = await queryArrays<[string, Date, string, string, string | null, string | null, ...ListingRow]>(this.pool, statement,
        [...params, since, also.map((k) => k.repository), also.map((k) => k.digest)]);
      const touched = rows.filter((r) => r[P] !== null);
      return {
        ...pointOf(rows[0]!),
        keys: touched.map((r) => ({ repository: r[P] as string, digest: r[P + 1] as string })),
        rows: touched.filter((r) => r[P + 2] !== null).map((r) => fromListing(r.slice(P + 2) as ListingRow)),
      };
    }
    // A group of up to BATCH records in one statement; a larger one through a cursor. The
    // statement is prepared: on a larger group it only counts (its listing is behind a
    // one-time filter), so the plan Postgres keeps is one for at most BATCH records.
    const first = await queryArrays<[string, Date, string, string, string, ...ListingRow]>(this.pool, ALL_UP_TO_BATCH, [...params, BATCH]);
    if (Number(first[0]![P]) <= BATCH) {
      const listed = first.filter((r) => r[P + 1] !== null).map((r) => fromListing(r.slice(P + 1) as ListingRow));
      if (onRows) onRows(listed);
      return { ...pointOf(first[0]!), rows: onRows ? [] : listed };
    }
    return inTransaction(this.pool, async (c) => {
      const { rows } = await c.query({ text: `SELECT ${sql.POINT}`, values: [group], rowMode: 'array' });
      const all: ListedRow[] = [];
      await query(c, `DECLARE listing NO SCROLL CURSOR FOR ${sql.listing('plain')}`, params);
      // The next batch is asked for before this one is handed over, so the database reads it
      // while the caller renders this one (node-postgres sends a client's queries in turn).
      const fetchBatch = () => fetchArrays<ListingRow>(c, `FETCH ${FETCH_ROWS} FROM listing`);
      for (let next: Promise<ListingRow[]> | undefined = fetchBatch(); next;) {
        const batch: ListingRow[] = await next;
        next = batch.length === FETCH_ROWS ? fetchBatch() : undefined;
        // Should the caller throw, the fetch in flight fails with the transaction: nothing waits for it.
        next?.catch(() => {});
        if (onRows) {
          const listed = batch.map(fromListing);
          onRows(listed);
          // Emptied once handed over: an array that outlived two scavenges sits in the old
          // generation, and would keep every row it holds alive (and then promoted) until
          // the next full collection.
          listed.length = 0;
        } else {
          all.push(...batch.map(fromListing));
        }
        batch.length = 0;
      }
      return { ...pointOf(rows[0] as unknown[]), rows: all };
    }, 'ISOLATION LEVEL REPEATABLE READ READ ONLY');
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
      this.pool, sql.PURGE_EXPIRED_TOMBSTONES,
      [tombstoneRetentionHours],
    );
    return Number(rows[0]?.n ?? 0);
  }
}
