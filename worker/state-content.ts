import { createHash } from 'node:crypto';
import { gzip as gzipCallback, gzipSync, inflateRawSync, type Inflate } from 'node:zlib';
import { promisify } from 'node:util';
import pLimit from 'p-limit';
import { artifactOf } from '../core/state/render.js';
import type { StateLayout } from '../core/state/layouts/index.js';
import { ociLayout } from '../core/state/layouts/oci.js';
import type { GroupSnapshot, ListedRow } from '../core/store/artifact-store.js';

// A group's state between builds, so a build of a 100,000-entry group after one change
// costs the change, not the list. What a build needs of the state:
//
// - its entries' canonical JSON in order: a build re-reads only the entries changes since
//   the last read may have touched (ArtifactStore.snapshot with `since`), and reads back
//   into entries only the chunks (below) those fall into;
// - the full layer, gzip'd as one gzip member per chunk of entries (RFC 1952 allows
//   members back to back; every gunzip, zlib and Go's reader read them as one stream):
//   chunk boundaries follow the entries' digests (a chunk ends after an entry whose digest
//   ends in "00", about 256 entries, ~70 KB), so a change recompresses its chunk only and
//   the same content always gives the same bytes, whichever build (cold or incremental)
//   made them;
// - the delta from the version last published from it: the entries changed since.
//
// A cold build (no content kept, or kept too long) lists the whole group and gives the
// same bytes. Content is kept per worker process, least recently built out first.

const gzip = promisify(gzipCallback);
/**
 * Up to this many bytes a member is compressed on the event loop: handing a small input to
 * libuv's threads cost about ten times the compression itself (0.13-0.23 ms of CPU a call
 * against 0.02 ms, three or more calls a state), which a worker publishing many small
 * groups paid per state. The bytes are the same either way.
 */
const SYNC_GZIP_BYTES = 16 * 1024;
/** gzip as the state layers use it (core/state/artifact.ts): level 6, no name, mtime 0. */
const gzipMember = async (bytes: Buffer): Promise<Buffer> =>
  (bytes.length <= SYNC_GZIP_BYTES ? gzipSync(bytes, { level: 6 }) : gzip(bytes, { level: 6 }));
/**
 * Chunks compressed at once on libuv's threads (off the event loop), per process: each zlib
 * stream holds a few hundred KB from the moment it is created, so a 100,000-entry listing's
 * 400 chunks must not all be handed to zlib at once.
 */
const GZIP_AT_ONCE = 4;

/** Sort key of an entry: repository then digest, by code unit (\0 sorts first). */
const keyOf = (r: { repository: string; digest: string }): string => `${r.repository}\u0000${r.digest}`;
const byCodeUnit = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);
/** A chunk of the full layer ends after an entry whose digest ends in "00". */
const endsChunk = (key: string): boolean => key.endsWith('00');

/** The beginning of a state document, up to its artifacts array (render.ts's stateDocument). */
export function stateHead(group: string, registry: string, version?: number): string {
  return `{"group":${JSON.stringify(group)},"registry":${JSON.stringify(registry)},${version === undefined ? '' : `"version":${version},`}"artifacts":`;
}

export interface FullLayer {
  /** gzip members, back to back. */
  gzip: Buffer;
  /** sha256 of the uncompressed document. */
  digest: string;
  /** Bytes of the uncompressed document. */
  size: number;
}

/**
 * A run of entries of the full layer, one gzip member: what the content holds of them. Its
 * entries are not kept one by one (a 100,000-entry group would then sit in memory twice,
 * as 100,000 strings and as the chunks' text): a chunk is read back into entries only when
 * a change touches it (entriesOf).
 */
interface Chunk {
  /** The key of its first entry: a chunk is found by it. */
  first: string;
  /** How many entries it holds; undefined for a chunk taken up and not read back since (restore). */
  count?: number;
  /** Its text as the document has it: its entries' JSON joined by ',', after a ',' unless it is the first chunk. */
  bytes: Buffer;
  /** Whether `bytes` begins with that ','. */
  leading: boolean;
  /** Its gzip member, once compressed. */
  member?: Buffer;
  /** The member on its way (a full read compresses chunks as their rows arrive); undefined if that failed. */
  pending?: Promise<Buffer | undefined>;
}

/** Entries in order: their keys, and their JSON. */
interface Entries {
  keys: string[];
  jsons: string[];
}

/**
 * Content that is not laid out as this worker writes it (a chunk taken up from a published
 * layer whose entries are out of order, or cut elsewhere): it cannot be built on, and the
 * group is read in full instead.
 */
export class UnusableContentError extends Error {
  constructor(group: string, why: string) {
    super(`the state content kept for group ${group} cannot be built on: ${why}`);
    this.name = 'UnusableContentError';
  }
}

const COMMA = Buffer.from(',');

/**
 * The entries of a group's state as of one snapshot. Not thread-safe across builds of the
 * same group; the queue runs one build per group at a time.
 */
export class StateContent {
  /** The chunks of the full layer, in order. */
  private chunks: Chunk[] = [];
  private total = 0;
  /** Entries that leave the list by themselves, with when (ms). */
  expiries = new Map<string, number>();
  /** The snapshot this content is as of. */
  xmin = '';
  readAt = 0;
  /** The version last published from this content and its full layer's digest. */
  published: { version: number; digest: string } | undefined;
  /** Entries changed since `published`: their JSON then (undefined: not listed then). */
  sincePublished = new Map<string, string | undefined>();
  private memoDigest: string | undefined;
  /**
   * The version the next build is expected to publish (StateStore.nextVersion): its full
   * layer's digest is computed in the same pass over the text as the content digest, not in
   * a second pass once the version is allocated (a guess that missed costs that second pass).
   */
  private expected: number | undefined;
  private memoLayerDigest: { version: number; digest: string } | undefined;

  constructor(readonly group: string, readonly registry: string,
    /** Which entries are listed, and whether the full layer is taken up (core/state/layouts/). */
    readonly layout: StateLayout = ociLayout) {}

  /** Whether the layout lists this entry. */
  private lists(r: ListedRow): boolean {
    return !this.layout.leavesOut?.({ deleted: r.deleted, type: r.kind });
  }

  get count(): number {
    return this.total;
  }

  /** Approximate bytes held (for the cache's budget). */
  get bytes(): number {
    let n = 0;
    for (const c of this.chunks) n += c.bytes.length + (c.member?.length ?? 0) + c.first.length + 128;
    for (const [key, json] of this.sincePublished) n += key.length + (json?.length ?? 0) + 64;
    return n + this.expiries.size * 128;
  }

  /** Every entry's key in order (each chunk read back: for tests and the rare paths that need them all). */
  get keys(): string[] {
    return this.allEntries().keys;
  }

  /** Every entry's JSON in order (as `keys`). */
  get jsons(): string[] {
    return this.allEntries().jsons;
  }

  /** Replaces everything with a full listing. */
  loadFull(snapshot: GroupSnapshot): void {
    const load = this.beginFull();
    load.add(snapshot.rows);
    load.finish(snapshot);
  }

  /**
   * Replaces everything with a full listing taken in batches (in the store's order): each
   * batch is rendered as it comes (one JSON.stringify per batch), and while the listing is
   * in order (it is: the store sorts it) each chunk's text is cut straight out of that
   * rendering as soon as its last entry arrives: it goes into the content digest and to gzip
   * then. No string per entry is made on the way (its JSON or its key): a 100,000-entry
   * first build made 200,000 of them and then joined them again into the chunks' text
   * (15-20 % of the worker's CPU in that build). Hashing and compressing a large group so overlap reading the next
   * batches from the database, and what stays is the chunks' text, once.
   */
  beginFull(): { add: (rows: readonly ListedRow[]) => void; finish: (snapshot: GroupSnapshot) => void } {
    const expiries = new Map<string, number>();
    // The last row's repository and digest: the next must come after them (in code-unit order).
    let lastRepository: string | undefined;
    let lastDigest = '';
    // The chunks cut so far, in order, and the content digest over them (as hash() feeds it).
    let cut: Chunk[] = [];
    // The chunk being filled: its first key, its entries so far, and their text out of the
    // batches before this one (after a ',' unless it is the first chunk).
    let open: { first: string; count: number; parts: Buffer[] } | undefined;
    // Once a row came out of order (should not happen: the listing sorts with COLLATE "C"):
    // every entry, kept until the end and then sorted, so the bytes never depend on the
    // database's collation.
    let unsorted: Entries | undefined;
    const digest = createHash('sha256').update(stateHead(this.group, this.registry)).update('[');
    const expected = this.expected;
    const layerDigest = expected === undefined ? undefined : createHash('sha256').update(stateHead(this.group, this.registry, expected)).update('[');
    const limit = pLimit(GZIP_AT_ONCE);
    const cutChunk = (chunk: Chunk) => {
      digest.update(chunk.bytes);
      layerDigest?.update(chunk.bytes);
      // A failure here only means fullLayer compresses the chunk itself.
      chunk.pending = limit(() => gzipMember(chunk.bytes)).catch(() => undefined);
      cut.push(chunk);
    };
    const closeOpen = (last: string) => {
      const parts = last === '' ? open!.parts : [...open!.parts, textBytes(open!.parts.length > 0 || cut.length > 0, last)];
      cutChunk({ first: open!.first, count: open!.count, bytes: parts.length === 1 ? parts[0]! : Buffer.concat(parts), leading: cut.length > 0 });
      open = undefined;
    };
    const inOrder = (rows: readonly ListedRow[]): boolean => {
      for (const r of rows) {
        if (lastRepository !== undefined && (r.repository < lastRepository || (r.repository === lastRepository && r.digest <= lastDigest))) return false;
        lastRepository = r.repository;
        lastDigest = r.digest;
      }
      return true;
    };
    const addRows = (rows: readonly ListedRow[]) => {
      if (rows.length === 0) return;
      const { text, ends } = renderBatch(rows);
      for (const r of rows) if (r.expiresAt) expiries.set(keyOf(r), r.expiresAt.getTime());
      if (!unsorted && !inOrder(rows)) {
        unsorted = entriesIn(this.group, open ? [...cut, { first: open.first, count: open.count, bytes: Buffer.concat(open.parts), leading: cut.length > 0 }] : cut);
        cut = [];
        open = undefined;
      }
      if (unsorted) {
        for (let i = 0; i < rows.length; i++) {
          unsorted.keys.push(keyOf(rows[i]!));
          unsorted.jsons.push(text.slice(i === 0 ? 1 : ends[i - 1]! + 1, ends[i]));
        }
        return;
      }
      // Where the open chunk's text in this batch begins (past '[', or the ',' after an entry).
      let from = 1;
      for (let i = 0; i < rows.length; i++) {
        const r = rows[i]!;
        if (!open) open = { first: keyOf(r), count: 0, parts: [] };
        open.count++;
        if (!endsChunk(r.digest)) continue; // a key ends with its digest: the same test, no key made
        closeOpen(text.slice(from, ends[i]));
        from = ends[i]! + 1;
      }
      if (open && from < text.length - 1) open.parts.push(textBytes(open.parts.length > 0 || cut.length > 0, text.slice(from, text.length - 1)));
    };
    return {
      add: (all) => addRows(this.layout.leavesOut ? all.filter((r) => this.lists(r)) : all),
      finish: (snapshot) => {
        if (unsorted) {
          const order = unsorted.keys.map((_, i) => i).sort((x, y) => byCodeUnit(unsorted!.keys[x]!, unsorted!.keys[y]!));
          cut = cutAll({ keys: order.map((i) => unsorted!.keys[i]!), jsons: order.map((i) => unsorted!.jsons[i]!) });
        } else if (open) {
          closeOpen('');
        }
        const before = this.published ? this.entryMap() : undefined;
        this.chunks = cut;
        this.total = cut.reduce((n, c) => n + c.count!, 0);
        this.expiries = expiries;
        this.xmin = snapshot.xmin;
        this.readAt = snapshot.at.getTime();
        this.memoDigest = undefined;
        this.memoLayerDigest = undefined;
        if (!unsorted) {
          this.memoDigest = `sha256:${digest.update(']}').digest('hex')}`;
          if (layerDigest) this.memoLayerDigest = { version: expected!, digest: `sha256:${layerDigest.update(']}').digest('hex')}` };
        }
        if (before) {
          // Still able to tell what changed since the version last published from here.
          const now = this.entryMap();
          for (const [key, json] of now) if (before.get(key) !== json) this.noteChange(key, before.get(key));
          for (const [key, json] of before) if (!now.has(key)) this.noteChange(key, json);
        }
      },
    };
  }

  /**
   * Takes up the content `version` was published from, out of its full layer as fullLayer
   * wrote it: each gzip member is inflated once and kept, compressed as it was, as the
   * chunk it holds; the content is as of the snapshot that build read (`xmin`, `readAt`),
   * so the caller then applies what changed since. Undefined, and nothing changed, when the
   * layer is not laid out so for this group and registry (`digest` is its text's, as the
   * manifest that names the layer says). Only each chunk's first and last entries are read
   * here; a chunk is read whole (and checked whole) when a change touches it.
   * Gives the entries listed as deleted: when they leave the list (their retention) is not
   * in the layer, so the caller reads them again.
   */
  restore(version: number, layer: Buffer, digest: string, xmin: string, readAt: Date,
    /** The entries the version lists, when known (its state_versions row): the chunks' entries are then not counted. */
    count?: number): { repository: string; digest: string }[] | undefined {
    if (!this.layout.deltas) return undefined;
    // The layer's bytes are the published ones (the caller found them by digest) and gzip
    // is deterministic, so their text is that version's: no need to hash it again.
    const members = gzipMembers(layer);
    if (!members || members.length < 2) return undefined;
    if (members[0]!.text.toString('utf8') !== `${stateHead(this.group, this.registry, version)}[`
      || members[members.length - 1]!.text.toString('utf8') !== ']}') return undefined;
    const chunks: Chunk[] = [];
    const deleted: { repository: string; digest: string }[] = [];
    const inner = members.slice(1, -1);
    let previous = '';
    for (let c = 0; c < inner.length; c++) {
      const text = inner[c]!.text;
      const leading = c > 0;
      const start = leading ? 1 : 0;
      if ((text[0] === COMMA[0]) !== leading || text[text.length - 1] !== 0x7d) return undefined;
      const entryAt = (at: number) => {
        const end = text.indexOf(SEPARATOR, at);
        return entryKey(text.toString('utf8', at, end < 0 ? text.length : end + 1));
      };
      const first = entryAt(start);
      const lastAt = text.lastIndexOf(SEPARATOR);
      const last = lastAt < start ? first : entryAt(lastAt + 2);
      if (!first || !last) return undefined;
      const firstKey = keyOf(first);
      const lastKey = keyOf(last);
      // In order, and chunked as this worker chunks: a chunk ends after an entry whose
      // digest ends in "00", or with the list.
      if (firstKey <= previous || lastKey < firstKey || (!endsChunk(lastKey) && c < inner.length - 1)) return undefined;
      let entries: number | undefined;
      if (count === undefined) {
        entries = 1;
        for (let at = text.indexOf(SEPARATOR, start); at >= 0; at = text.indexOf(SEPARATOR, at + SEPARATOR.length)) entries++;
      }
      for (let at = text.indexOf(DELETED, start); at >= 0; at = text.indexOf(DELETED, at + DELETED.length)) {
        const before = text.lastIndexOf(SEPARATOR, at);
        const entry = entryAt(before < start ? start : before + 2);
        if (!entry) return undefined;
        deleted.push({ repository: entry.repository, digest: entry.digest });
      }
      chunks.push({ first: firstKey, count: entries, bytes: text, leading, member: inner[c]!.member });
      previous = lastKey;
    }
    this.chunks = chunks;
    this.total = count ?? chunks.reduce((n, c) => n + c.count!, 0);
    this.expiries = new Map();
    this.memoDigest = undefined;
    this.memoLayerDigest = undefined;
    this.xmin = xmin;
    this.readAt = readAt.getTime();
    this.markPublished(version, digest);
    return deleted;
  }

  /**
   * Applies a listing read since this content's snapshot; false when it changed nothing.
   * Only the chunks the changes fall into (and a chunk after one, when the entries cut
   * again join it) are read back into entries and cut again. Throws UnusableContentError
   * when one of them is not laid out as this worker writes it: nothing is changed when a
   * chunk a change falls into is the one, but the content must not be used again when the
   * chunk after it is (StateBuilder then reads the group in full into a new content).
   */
  apply(snapshot: GroupSnapshot): boolean {
    const at = snapshot.at.getTime();
    const updates = new Map<string, ListedRow | undefined>();
    for (const k of snapshot.keys ?? []) updates.set(keyOf(k), undefined);
    for (const r of snapshot.rows) updates.set(keyOf(r), r);
    for (const [key, when] of this.expiries) if (when <= at && !updates.has(key)) updates.set(key, undefined);
    if (updates.size === 0) {
      this.xmin = snapshot.xmin;
      this.readAt = at;
      return false;
    }

    // The changes of each chunk they fall into, checked before anything changes.
    const byChunk = new Map<number, string[]>();
    for (const key of updates.keys()) {
      const c = this.chunkIndex(key);
      const keys = byChunk.get(c);
      if (keys) keys.push(key);
      else byChunk.set(c, [key]);
    }
    const entries = new Map<number, Entries>();
    for (const c of byChunk.keys()) entries.set(c, this.chunks.length === 0 ? { keys: [], jsons: [] } : this.entriesOf(c));

    this.xmin = snapshot.xmin;
    this.readAt = at;
    const rewritten = new Map<number, { entries: Entries; before: number }>();
    for (const [c, keys] of byChunk) {
      const held = entries.get(c)!;
      const changed = new Map<string, string | undefined>();
      for (const key of keys) {
        const i = indexIn(held.keys, key);
        const old = i >= 0 ? held.jsons[i] : undefined;
        const row = updates.get(key);
        const json = row && this.lists(row) ? JSON.stringify(artifactOf(row)) : undefined;
        if (row?.expiresAt) this.expiries.set(key, row.expiresAt.getTime());
        else this.expiries.delete(key);
        if (json === old) continue;
        changed.set(key, json);
        this.noteChange(key, old);
      }
      if (changed.size > 0) rewritten.set(c, { entries: merged(held, changed), before: held.keys.length });
    }
    if (rewritten.size === 0) return false;
    this.memoDigest = undefined;
    this.memoLayerDigest = undefined;
    this.recut(rewritten);
    return true;
  }

  /**
   * The chunks again, with those whose entries changed (`rewritten`, by index) cut anew:
   * where an entry ending a chunk went, or one came that ends one, the chunks around it
   * join or split; every other chunk is kept as it is, its gzip member with it. The count
   * changes by the entries of the chunks cut anew (a chunk kept may not have been counted).
   */
  private recut(rewritten: Map<number, { entries: Entries; before: number }>): void {
    const out: Chunk[] = [];
    let total = this.total;
    // Entries after the last chunk ending so far, joining the next chunk.
    let carry: Entries = { keys: [], jsons: [] };
    const n = Math.max(this.chunks.length, 1);
    for (let c = 0; c < n; c++) {
      const own = rewritten.get(c);
      if (!own && carry.keys.length === 0) {
        out.push(this.chunks[c]!);
        continue;
      }
      const e = own?.entries ?? this.entriesOf(c);
      total -= own?.before ?? e.keys.length;
      const run = carry.keys.length === 0 ? e : { keys: carry.keys.concat(e.keys), jsons: carry.jsons.concat(e.jsons) };
      carry = cutInto(out, run);
      total += run.keys.length - carry.keys.length;
    }
    if (carry.keys.length > 0) {
      out.push(chunkOf(carry, 0, carry.keys.length, out.length > 0));
      total += carry.keys.length;
    }
    // The first chunk's text has no leading ',', every other's has one (a chunk kept as it
    // was may have moved to or from the front).
    for (let i = 0; i < out.length; i++) {
      const c = out[i]!;
      if (c.leading === i > 0) continue;
      out[i] = { first: c.first, count: c.count, leading: i > 0, bytes: i > 0 ? Buffer.concat([COMMA, c.bytes]) : c.bytes.subarray(1) };
    }
    this.chunks = out;
    this.total = total;
  }

  /** Identifies the content regardless of version (render.ts's contentDigest). */
  contentDigest(): string {
    if (this.memoDigest === undefined) {
      const versions = this.expected === undefined ? [undefined] : [undefined, this.expected];
      const [content, layer] = this.hash(versions.map((v) => stateHead(this.group, this.registry, v)));
      this.memoDigest = content!;
      if (layer) this.memoLayerDigest = { version: this.expected!, digest: layer };
    }
    return this.memoDigest;
  }

  /** The document of `version`, whole (for layouts that need the JSON itself). */
  document(version: number): Buffer {
    return Buffer.concat([Buffer.from(`${stateHead(this.group, this.registry, version)}[`), ...this.chunks.map((c) => c.bytes), Buffer.from(']}')]);
  }

  /**
   * The full layer of `version`: the head, each chunk and the tail as gzip members, the
   * chunks unchanged since the last build taken as they were compressed then.
   */
  async fullLayer(version: number): Promise<FullLayer> {
    const head = `${stateHead(this.group, this.registry, version)}[`;
    const chunks = this.chunks;
    await Promise.all(chunks.map(async (c) => {
      if (!c.pending) return;
      const member = await c.pending;
      if (member) c.member = member;
      c.pending = undefined;
    }));
    // Compressed on libuv's threads (off the event loop), a few at a time: each zlib stream
    // holds a few hundred KB while it runs.
    const todo = chunks.filter((c) => !c.member);
    await Promise.all(Array.from({ length: Math.min(GZIP_AT_ONCE, todo.length) }, async () => {
      for (let c = todo.pop(); c; c = todo.pop()) c.member = await gzipMember(c.bytes);
    }));
    const parts = chunks.map((c) => c.member!);
    const [first, last] = await Promise.all([gzipMember(Buffer.from(head)), gzipMember(Buffer.from(']}'))]);
    const size = Buffer.byteLength(head) + chunks.reduce((n, c) => n + c.bytes.length, 0) + 2;
    const digest = this.memoLayerDigest?.version === version ? this.memoLayerDigest.digest : this.hash([head.slice(0, -1)])[0]!;
    const gzip = Buffer.concat([first, ...parts, last]);
    // From now on each chunk's member is its bytes in the layer. A member compressed on the
    // event loop (up to SYNC_GZIP_BYTES of text) is a view of zlib's 16 KB output buffer,
    // which a kept group of a few entries held whole for a member of a few hundred bytes.
    // Whatever the chunks were views of before (the last build's layer, or the package
    // taken up) is let go with the last of them.
    let at = first.length;
    for (const c of chunks) {
      const n = c.member!.length;
      c.member = gzip.subarray(at, at + n);
      at += n;
    }
    return { gzip, digest, size };
  }

  /**
   * The version the next build will most likely publish: its full layer's digest is then
   * computed with the content digest, in one pass (see `expected`).
   */
  expectVersion(version: number | undefined): void {
    if (version === this.expected) return;
    this.expected = version;
    if (this.memoLayerDigest?.version !== version) this.memoLayerDigest = undefined;
  }

  /** Remembers that `version` was published from this content, with its full layer's digest. */
  markPublished(version: number, digest: string): void {
    this.published = { version, digest };
    this.sincePublished.clear();
  }

  /**
   * The delta from the version last published from this content (core/state/delta.ts's
   * renderDelta(diffStates(...)), byte for byte), or undefined when that version is not
   * `base`.
   */
  deltaFrom(base: { version: number; digest: string }, version: number): string | undefined {
    if (this.published?.version !== base.version || this.published.digest !== base.digest) return undefined;
    const lookup = this.lookup();
    const removed: string[] = [];
    const upserted: string[] = [];
    const removedKeys = [...this.sincePublished.entries()]
      .filter(([key, before]) => before !== undefined && lookup(key) === undefined)
      .map(([key]) => {
        const at = key.indexOf('\u0000');
        return { repository: key.slice(0, at), digest: key.slice(at + 1) };
      })
      // delta.ts orders removals by "repository@digest".
      .sort((x, y) => byCodeUnit(`${x.repository}@${x.digest}`, `${y.repository}@${y.digest}`));
    for (const r of removedKeys) removed.push(JSON.stringify(r));
    for (const key of [...this.sincePublished.keys()].sort(byCodeUnit)) {
      const now = lookup(key);
      if (now !== undefined && now !== this.sincePublished.get(key)) upserted.push(now);
    }
    return renderDeltaText(this.group, this.registry, base, version, removed, upserted);
  }

  /**
   * The delta from `base` given its document's text (its full layer, uncompressed), for when
   * this content was not what `base` was published from: the same bytes as deltaFrom and
   * delta.ts, from the texts of the entries (no object per entry); undefined when the text
   * is not laid out as this renderer writes it.
   */
  deltaFromText(text: string, base: { version: number; digest: string }, version: number): string | undefined {
    const start = text.indexOf('"artifacts":[');
    if (start < 0 || !text.endsWith(']}')) return undefined;
    const array = text.slice(start + '"artifacts":'.length, -1);
    const entries = array === '[]' ? [] : splitEntries(array, undefined);
    if (!entries) return undefined;
    const own = this.allEntries();
    // Both lists are in key order: one merge pass, no map of the base.
    const removed: { repository: string; digest: string }[] = [];
    const upserted: string[] = [];
    let i = 0;
    let last = '';
    for (const json of entries) {
      const m = ENTRY_KEY.exec(json);
      if (!m) return undefined;
      const entry = { repository: JSON.parse(m[1]!) as string, digest: JSON.parse(m[2]!) as string };
      const key = keyOf(entry);
      if (key <= last) return undefined;
      last = key;
      while (i < own.keys.length && own.keys[i]! < key) upserted.push(own.jsons[i++]!);
      if (i < own.keys.length && own.keys[i] === key) {
        if (own.jsons[i] !== json) upserted.push(own.jsons[i]!);
        i++;
      } else {
        removed.push(entry);
      }
    }
    while (i < own.keys.length) upserted.push(own.jsons[i++]!);
    removed.sort((x, y) => byCodeUnit(`${x.repository}@${x.digest}`, `${y.repository}@${y.digest}`));
    return renderDeltaText(this.group, this.registry, base, version, removed.map((r) => JSON.stringify(r)), upserted);
  }

  private noteChange(key: string, before: string | undefined): void {
    if (this.published && !this.sincePublished.has(key)) this.sincePublished.set(key, before);
  }

  private allEntries(): Entries {
    return entriesIn(this.group, this.chunks);
  }

  private entryMap(): Map<string, string> {
    const { keys, jsons } = this.allEntries();
    const m = new Map<string, string>();
    for (let i = 0; i < keys.length; i++) m.set(keys[i]!, jsons[i]!);
    return m;
  }

  /** The chunk a key is in, or would go into: the last whose first key is not after it (else the first). */
  private chunkIndex(key: string): number {
    let lo = 0;
    let hi = this.chunks.length - 1;
    let found = 0;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      if (this.chunks[mid]!.first <= key) {
        found = mid;
        lo = mid + 1;
      } else {
        hi = mid - 1;
      }
    }
    return found;
  }

  private entriesOf(c: number): Entries {
    return chunkEntries(this.group, this.chunks[c]!, c === this.chunks.length - 1);
  }

  /** Finds an entry's JSON by key, each chunk read back at most once. */
  private lookup(): (key: string) => string | undefined {
    const read = new Map<number, Entries>();
    return (key) => {
      if (this.chunks.length === 0) return undefined;
      const c = this.chunkIndex(key);
      let e = read.get(c);
      if (!e) read.set(c, (e = this.entriesOf(c)));
      const i = indexIn(e.keys, key);
      return i >= 0 ? e.jsons[i] : undefined;
    };
  }

  /** sha256 of head + '[' + entries + ']}' for each head, fed chunk by chunk in one pass. */
  private hash(heads: string[]): string[] {
    const hs = heads.map((head) => createHash('sha256').update(head).update('['));
    for (const c of this.chunks) {
      for (const h of hs) h.update(c.bytes);
    }
    return hs.map((h) => `sha256:${h.update(']}').digest('hex')}`);
  }
}

/** A chunk of entries[from, to), after a ',' when it is not the first chunk. */
function chunkOf(entries: Entries, from: number, to: number, leading: boolean): Chunk {
  return { first: entries.keys[from]!, count: to - from, bytes: textBytes(leading, entries.jsons.slice(from, to).join(',')), leading };
}

/**
 * Cuts `run` (entries in order) into chunks, each ending after an entry that ends one,
 * appended to `out` (after a ',' unless first there); gives the entries after the last such
 * entry, not cut yet (they end the list, or join the next chunk).
 */
function cutInto(out: Chunk[], run: Entries): Entries {
  let start = 0;
  for (let i = 0; i < run.keys.length; i++) {
    if (!endsChunk(run.keys[i]!)) continue;
    out.push(chunkOf(run, start, i + 1, out.length > 0));
    start = i + 1;
  }
  return { keys: run.keys.slice(start), jsons: run.jsons.slice(start) };
}

/** Entries in order cut into chunks as a full read cuts them (the last chunk ends with the list). */
function cutAll(entries: Entries): Chunk[] {
  const chunks: Chunk[] = [];
  const rest = cutInto(chunks, entries);
  if (rest.keys.length > 0) chunks.push(chunkOf(rest, 0, rest.keys.length, chunks.length > 0));
  return chunks;
}

/** Every entry of `chunks`, in order. */
function entriesIn(group: string, chunks: readonly Chunk[]): Entries {
  const keys: string[] = [];
  const jsons: string[] = [];
  for (let c = 0; c < chunks.length; c++) {
    const e = chunkEntries(group, chunks[c]!, c === chunks.length - 1);
    for (let i = 0; i < e.keys.length; i++) {
      keys.push(e.keys[i]!);
      jsons.push(e.jsons[i]!);
    }
  }
  return { keys, jsons };
}

/**
 * A chunk's entries, read back from its text and checked to be laid out as this worker
 * writes them: in order, only its last entry ending a chunk (unless it is the last chunk,
 * which the list ends), as many as it says.
 */
function chunkEntries(group: string, chunk: Chunk, last: boolean): Entries {
  const jsons = splitJoined(chunk.bytes.toString('utf8', chunk.leading ? 1 : 0));
  const keys: string[] = [];
  const final = jsons.length - 1;
  for (let i = 0; i <= final; i++) {
    const json = jsons[i]!;
    const entry = entryKey(json);
    const key = entry && keyOf(entry);
    if (!key || (keys.length > 0 && keys[keys.length - 1]! >= key) || (endsChunk(key) && i < final)) {
      throw new UnusableContentError(group, `a chunk's entries are not in order, or not cut as this worker cuts them (near ${JSON.stringify(json.slice(0, 120))})`);
    }
    keys.push(key);
  }
  if (keys[0] !== chunk.first || (chunk.count !== undefined && keys.length !== chunk.count) || (!last && !endsChunk(keys[final]!))) {
    throw new UnusableContentError(group, 'a chunk does not hold the entries it was taken up with');
  }
  return { keys, jsons };
}

/** `held` with `changed` applied (a JSON puts or replaces the entry, undefined removes it), in one merge pass. */
function merged(held: Entries, changed: Map<string, string | undefined>): Entries {
  const added = [...changed.entries()].filter(([k, j]) => j !== undefined && indexIn(held.keys, k) < 0).map(([k]) => k).sort(byCodeUnit);
  const keys: string[] = [];
  const jsons: string[] = [];
  let a = 0;
  for (let i = 0; i < held.keys.length; i++) {
    const key = held.keys[i]!;
    while (a < added.length && added[a]! < key) {
      keys.push(added[a]!);
      jsons.push(changed.get(added[a++]!)!);
    }
    const json = changed.has(key) ? changed.get(key) : held.jsons[i];
    if (json === undefined) continue;
    keys.push(key);
    jsons.push(json);
  }
  for (; a < added.length; a++) {
    keys.push(added[a]!);
    jsons.push(changed.get(added[a]!)!);
  }
  return { keys, jsons };
}

/** Where `key` is in sorted `keys`, or -1. */
function indexIn(keys: readonly string[], key: string): number {
  let lo = 0;
  let hi = keys.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    const k = keys[mid]!;
    if (k === key) return mid;
    if (k < key) lo = mid + 1;
    else hi = mid - 1;
  }
  return -1;
}

/**
 * The gzip members of a layer as fullLayer writes them (no file name, no extra fields),
 * each with its bytes and its inflated text; undefined when it is laid out otherwise. Hand
 * written: zlib reads members back to back as one stream and says nothing of where each
 * ends; inflating one raw deflate stream tells how many bytes it took, and its 8-byte
 * trailer follows (the text is checked by digest as a whole, not by the trailers' CRCs).
 */
function gzipMembers(layer: Buffer): { member: Buffer; text: Buffer }[] | undefined {
  const out: { member: Buffer; text: Buffer }[] = [];
  for (let at = 0; at < layer.length;) {
    if (layer.length - at < 18 || layer[at] !== 0x1f || layer[at + 1] !== 0x8b || layer[at + 2] !== 8 || layer[at + 3] !== 0) return undefined;
    let inflated: { buffer: Buffer; engine: Inflate };
    try {
      inflated = inflateRawSync(layer.subarray(at + 10), { info: true } as object) as unknown as { buffer: Buffer; engine: Inflate };
    } catch {
      return undefined;
    }
    const end = at + 10 + inflated.engine.bytesWritten + 8;
    // The trailer's ISIZE: the text's length (mod 2^32).
    if (end > layer.length || layer.readUInt32LE(end - 4) !== inflated.buffer.length % 2 ** 32) return undefined;
    out.push({ member: layer.subarray(at, end), text: inflated.buffer });
    at = end;
  }
  return out;
}

/**
 * An entry's repository, digest and whether it is deleted, from its JSON as artifactOf
 * renders it: repository first (a name, never escaped), then tag, labels and type, none of
 * which can hold `,"digest":"` outside a string, whose quotes are escaped.
 */
function entryKey(json: string): { repository: string; digest: string; deleted: boolean } | undefined {
  const open = '{"repository":"';
  const close = json.indexOf('","tag":[');
  if (!json.startsWith(open) || close < 0) return undefined;
  const repository = json.slice(open.length, close);
  const at = json.indexOf(',"digest":"', close);
  const end = at < 0 ? -1 : json.indexOf('"', at + 11);
  if (end < 0 || repository.includes('\\')) return undefined;
  return { repository, digest: json.slice(at + 11, end), deleted: json.startsWith('","deleted":true', end) };
}

/** The repository and digest at the start of an entry's JSON, as the renderer writes it. */
const ENTRY_KEY = /^\{"repository":("(?:[^"\\]|\\.)*"),"tag":\[[^\]]*\],"labels":null,"type":"[A-Z]+","digest":("[^"\\]*")/;

/** delta.ts's renderDelta, from the JSON of the entries it lists. */
function renderDeltaText(group: string, registry: string, base: { version: number; digest: string }, version: number, removed: string[], upserted: string[]): string {
  return `{"base":${JSON.stringify({ version: base.version, digest: base.digest })},"group":${JSON.stringify(group)},`
    + `"registry":${JSON.stringify(registry)},"version":${version},"removed":[${removed.join(',')}],"upserted":[${upserted.join(',')}]}`;
}

/** What stands between two entries' JSON, and only there (see splitEntries). */
const ENTRY_SEPARATOR = '},{"repository":';
const SEPARATOR = Buffer.from(ENTRY_SEPARATOR);
/** What follows an entry's digest when it is listed as deleted (entryKey), and only there. */
const DELETED = Buffer.from('","deleted":true');

/**
 * Splits the JSON of an entries array into each entry's JSON. Entries are objects that all
 * begin with "repository", and `},{"repository":` can occur only between two of them (a
 * quote inside a JSON string is escaped); undefined when the count, if given, does not come
 * out right.
 */
function splitEntries(array: string, count: number | undefined): string[] | undefined {
  if (count === 0) return array === '[]' ? [] : undefined;
  if (!array.startsWith('[{"repository":') || !array.endsWith('}]')) return undefined;
  const entries = splitJoined(array.slice(1, -1));
  return count !== undefined && entries.length !== count ? undefined : entries;
}

/**
 * Rows rendered as one JSON array (one JSON.stringify: several times faster than one per
 * entry), with where each entry's JSON ends in it (just past its closing '}').
 */
function renderBatch(rows: readonly ListedRow[]): { text: string; ends: number[] } {
  const text = JSON.stringify(rows.map(artifactOf));
  const ends: number[] = [];
  for (let at = text.indexOf(ENTRY_SEPARATOR); at >= 0; at = text.indexOf(ENTRY_SEPARATOR, at + ENTRY_SEPARATOR.length)) ends.push(at + 1);
  ends.push(text.length - 1);
  // The separator stands only between two entries (see splitEntries): a count that differs is a bug.
  if (ends.length !== rows.length) throw new Error(`rendering ${rows.length} entries gave ${ends.length}`);
  return { text, ends };
}

/** A chunk's text as bytes, after a ',' when asked. */
function textBytes(comma: boolean, text: string): Buffer {
  if (!comma) return Buffer.from(text);
  const bytes = Buffer.allocUnsafe(1 + Buffer.byteLength(text));
  bytes[0] = COMMA[0]!;
  bytes.write(text, 1);
  return bytes;
}

/** Each entry's JSON out of entries joined by ',' (splitEntries's array without its brackets, a chunk's text). */
function splitJoined(text: string): string[] {
  const parts = text.split(ENTRY_SEPARATOR);
  const last = parts.length - 1;
  return parts.map((p, i) => (i === 0 ? '' : '{"repository":') + p + (i === last ? '' : '}'));
}

export interface StateCacheOptions {
  /** Bytes of content kept across groups; 0 keeps none. */
  maxBytes: number;
  /** Content older than this is read again in full (it must stay well within the change log's retention). */
  maxAgeMs: number;
}

/** Contents of the groups this worker built last, within a memory budget. */
export class StateCache {
  /** Each content with its size when it was put (a content is not changed while kept: a build takes it out first). */
  private readonly groups = new Map<string, { content: StateContent; bytes: number }>();
  /** The sizes above, summed: counting them at every put walked every entry of every group kept. */
  private total = 0;

  constructor(private readonly options: StateCacheOptions) {}

  /** How old content may be and still be built on (a kept package's too). */
  get maxAgeMs(): number {
    return this.options.maxAgeMs;
  }

  /** The content kept for `group`, if any and young enough, taken out of the cache while a build uses it. */
  take(group: string, registry: string, now: number): StateContent | undefined {
    const c = this.remove(group);
    if (!c || c.registry !== registry || now - c.readAt > this.options.maxAgeMs) return undefined;
    return c;
  }

  /** Keeps `content` (most recently used), dropping the least recently used beyond the budget. */
  put(content: StateContent): void {
    if (this.options.maxBytes <= 0) return;
    this.remove(content.group);
    const bytes = content.bytes;
    this.groups.set(content.group, { content, bytes });
    this.total += bytes;
    for (const group of this.groups.keys()) {
      if (this.total <= this.options.maxBytes) break;
      this.remove(group);
    }
  }

  private remove(group: string): StateContent | undefined {
    const kept = this.groups.get(group);
    if (!kept) return undefined;
    this.groups.delete(group);
    this.total -= kept.bytes;
    return kept.content;
  }
}
