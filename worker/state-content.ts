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
// - its entries' canonical JSON in order, kept per entry: a build re-reads only the entries
//   changes since the last read may have touched (ArtifactStore.snapshot with `since`);
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

interface Chunk {
  start: number;
  end: number;
  id: string;
}

/** A chunk's text as bytes, and once compressed, its gzip member (or while it is being compressed). */
interface ChunkBytes {
  bytes: Buffer;
  member?: Buffer;
  /** The member on its way (a full read compresses chunks as their rows arrive); undefined if that failed. */
  pending?: Promise<Buffer | undefined>;
}

/**
 * The entries of a group's state as of one snapshot. Not thread-safe across builds of the
 * same group; the queue runs one build per group at a time.
 */
export class StateContent {
  keys: string[] = [];
  jsons: string[] = [];
  /** The build generation that last changed each entry (chunk identity). */
  gens: number[] = [];
  /** Entries that leave the list by themselves, with when (ms). */
  expiries = new Map<string, number>();
  generation = 0;
  /** The snapshot this content is as of. */
  xmin = '';
  readAt = 0;
  /** The chunks of the last build, by identity. */
  private chunkBytes = new Map<string, ChunkBytes>();
  private memoChunks: Chunk[] | undefined;
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
    return this.keys.length;
  }

  /** Approximate bytes held (for the cache's budget). */
  get bytes(): number {
    let n = 0;
    for (const j of this.jsons) n += j.length + 64;
    for (const c of this.chunkBytes.values()) n += c.bytes.length + (c.member?.length ?? 0);
    return n;
  }

  /** Replaces everything with a full listing. */
  loadFull(snapshot: GroupSnapshot): void {
    const load = this.beginFull();
    load.add(snapshot.rows);
    load.finish(snapshot);
  }

  /**
   * Replaces everything with a full listing taken in batches (in the store's order): each
   * batch is rendered as it comes (one JSON.stringify per batch, split per entry), so its
   * rows and objects are garbage before the next arrives. While the listing is in order (it
   * is: the store sorts it), each chunk is cut as soon as its last entry arrives: its text
   * goes into the content digest and to gzip then, so hashing and compressing a large group
   * overlap reading the next batches from the database instead of following them.
   */
  beginFull(): { add: (rows: readonly ListedRow[]) => void; finish: (snapshot: GroupSnapshot) => void } {
    const keys: string[] = [];
    const jsons: string[] = [];
    const expiries = new Map<string, number>();
    let sorted = true;
    // The chunks cut so far, in order, and the content digest over them (as hash() feeds it).
    const cut: ChunkBytes[] = [];
    const digest = createHash('sha256').update(stateHead(this.group, this.registry)).update('[');
    const expected = this.expected;
    const layerDigest = expected === undefined ? undefined : createHash('sha256').update(stateHead(this.group, this.registry, expected)).update('[');
    const limit = pLimit(GZIP_AT_ONCE);
    let chunkStart = 0;
    const cutTo = (end: number) => {
      const text = jsons.slice(chunkStart, end).join(',');
      const bytes = Buffer.from(chunkStart === 0 ? text : `,${text}`);
      digest.update(bytes);
      layerDigest?.update(bytes);
      // A failure here only means fullLayer compresses the chunk itself.
      cut.push({ bytes, pending: limit(() => gzipMember(bytes)).catch(() => undefined) });
      chunkStart = end;
    };
    return {
      add: (all) => {
        const rows = this.layout.leavesOut ? all.filter((r) => this.lists(r)) : all;
        if (rows.length === 0) return;
        const artifacts = rows.map(artifactOf);
        const split = splitEntries(JSON.stringify(artifacts), artifacts.length) ?? artifacts.map((a) => JSON.stringify(a));
        for (let i = 0; i < rows.length; i++) {
          const key = keyOf(rows[i]!);
          if (keys.length > 0 && keys[keys.length - 1]! >= key) sorted = false;
          keys.push(key);
          jsons.push(split[i]!);
          if (rows[i]!.expiresAt) expiries.set(key, rows[i]!.expiresAt!.getTime());
          if (sorted && endsChunk(key)) cutTo(keys.length);
        }
      },
      finish: (snapshot) => {
        let order: number[] | undefined;
        // Not in code-unit order (should not happen: the listing sorts with COLLATE "C"):
        // put it right, so the bytes never depend on the database's collation; the chunks
        // cut before that was seen are dropped (chunks() cuts them again).
        if (!sorted) order = keys.map((_, i) => i).sort((x, y) => byCodeUnit(keys[x]!, keys[y]!));
        else if (chunkStart < keys.length) cutTo(keys.length);
        const before = this.published ? this.entryMap() : undefined;
        this.generation++;
        this.keys = order ? order.map((i) => keys[i]!) : keys;
        this.jsons = order ? order.map((i) => jsons[i]!) : jsons;
        this.gens = keys.map(() => this.generation);
        this.expiries = expiries;
        this.chunkBytes = new Map();
        this.memoChunks = undefined;
        this.xmin = snapshot.xmin;
        this.readAt = snapshot.at.getTime();
        this.memoDigest = undefined;
        this.memoLayerDigest = undefined;
        if (sorted) {
          // chunks() cuts where cutTo did (after an entry whose digest ends in "00", and at the end).
          const ids = this.chunks();
          for (let c = 0; c < ids.length; c++) this.chunkBytes.set(ids[c]!.id, cut[c]!);
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
   * manifest that names the layer says).
   * Gives the entries listed as deleted: when they leave the list (their retention) is not
   * in the layer, so the caller reads them again.
   */
  restore(version: number, layer: Buffer, digest: string, xmin: string, readAt: Date): { repository: string; digest: string }[] | undefined {
    if (!this.layout.deltas) return undefined;
    // The layer's bytes are the published ones (the caller found them by digest) and gzip
    // is deterministic, so their text is that version's: no need to hash it again.
    const members = gzipMembers(layer);
    if (!members || members.length < 2) return undefined;
    if (members[0]!.text.toString('utf8') !== `${stateHead(this.group, this.registry, version)}[`
      || members[members.length - 1]!.text.toString('utf8') !== ']}') return undefined;
    const keys: string[] = [];
    const jsons: string[] = [];
    const deleted: { repository: string; digest: string }[] = [];
    const chunks = members.slice(1, -1);
    for (let c = 0; c < chunks.length; c++) {
      const text = chunks[c]!.text.toString('utf8');
      if (c > 0 !== text.startsWith(',') || !text.endsWith('}')) return undefined;
      // Entries are split where splitEntries splits them, as slices of the chunk's text.
      for (let start = c > 0 ? 1 : 0; start < text.length;) {
        const next = text.indexOf(ENTRY_SEPARATOR, start);
        const end = next < 0 ? text.length : next + 1;
        const json = text.slice(start, end);
        const entry = entryKey(json);
        if (!entry) return undefined;
        const key = keyOf(entry);
        // In order, and chunked as chunks() chunks: a chunk ends exactly after an entry
        // whose digest ends in "00", or with the list.
        const last = next < 0;
        if ((keys.length > 0 && keys[keys.length - 1]! >= key) || (endsChunk(key) !== last && !(last && c === chunks.length - 1))) return undefined;
        keys.push(key);
        jsons.push(json);
        if (entry.deleted) deleted.push(entry);
        start = next < 0 ? text.length : next + 2;
      }
    }
    this.generation++;
    this.keys = keys;
    this.jsons = jsons;
    this.gens = keys.map(() => this.generation);
    this.expiries = new Map();
    this.chunkBytes = new Map();
    this.memoChunks = undefined;
    this.memoDigest = undefined;
    this.memoLayerDigest = undefined;
    const ids = this.chunks();
    for (let c = 0; c < ids.length; c++) this.chunkBytes.set(ids[c]!.id, { bytes: chunks[c]!.text, member: chunks[c]!.member });
    this.xmin = xmin;
    this.readAt = readAt.getTime();
    this.markPublished(version, digest);
    return deleted.map(({ repository, digest: d }) => ({ repository, digest: d }));
  }

  /** Applies a listing read since this content's snapshot; false when it changed nothing. */
  apply(snapshot: GroupSnapshot): boolean {
    const at = snapshot.at.getTime();
    const updates = new Map<string, ListedRow | undefined>();
    for (const k of snapshot.keys ?? []) updates.set(keyOf(k), undefined);
    for (const r of snapshot.rows) updates.set(keyOf(r), r);
    for (const [key, when] of this.expiries) if (when <= at && !updates.has(key)) updates.set(key, undefined);
    this.xmin = snapshot.xmin;
    this.readAt = at;
    if (updates.size === 0) return false;

    const index = new Map<string, number>();
    const changed = new Map<string, string | undefined>();
    for (const key of updates.keys()) {
      const i = this.find(key);
      const old = i >= 0 ? this.jsons[i] : undefined;
      const row = updates.get(key);
      const json = row && this.lists(row) ? JSON.stringify(artifactOf(row)) : undefined;
      if (row?.expiresAt) this.expiries.set(key, row.expiresAt.getTime());
      else this.expiries.delete(key);
      if (json === old) continue;
      changed.set(key, json);
      if (i >= 0) index.set(key, i);
      this.noteChange(key, old);
    }
    if (changed.size === 0) return false;
    this.generation++;
    this.memoDigest = undefined;
    this.memoLayerDigest = undefined;
    this.memoChunks = undefined;
    // One merge pass: the entries kept, the changed ones put in place.
    const added = [...changed.entries()].filter(([k, j]) => j !== undefined && !index.has(k)).map(([k]) => k).sort(byCodeUnit);
    const keys: string[] = [];
    const jsons: string[] = [];
    const gens: number[] = [];
    let a = 0;
    const push = (key: string, json: string, gen: number) => {
      keys.push(key);
      jsons.push(json);
      gens.push(gen);
    };
    for (let i = 0; i < this.keys.length; i++) {
      const key = this.keys[i]!;
      while (a < added.length && added[a]! < key) push(added[a]!, changed.get(added[a++]!)!, this.generation);
      if (!changed.has(key)) push(key, this.jsons[i]!, this.gens[i]!);
      else if (changed.get(key) !== undefined) push(key, changed.get(key)!, this.generation);
    }
    while (a < added.length) push(added[a]!, changed.get(added[a++]!)!, this.generation);
    this.keys = keys;
    this.jsons = jsons;
    this.gens = gens;
    return true;
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
    return Buffer.from(`${stateHead(this.group, this.registry, version)}[${this.jsons.join(',')}]}`);
  }

  /**
   * The full layer of `version`: the head, each chunk and the tail as gzip members, the
   * chunks unchanged since the last build taken as they were compressed then.
   */
  async fullLayer(version: number): Promise<FullLayer> {
    const head = `${stateHead(this.group, this.registry, version)}[`;
    const chunks = this.chunks().map((c) => this.bytesOf(c));
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
    return { gzip: Buffer.concat([first, ...parts, last]), digest, size };
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
    const removed: string[] = [];
    const upserted: string[] = [];
    const removedKeys = [...this.sincePublished.entries()]
      .filter(([key, before]) => before !== undefined && this.find(key) < 0)
      .map(([key]) => {
        const at = key.indexOf('\u0000');
        return { repository: key.slice(0, at), digest: key.slice(at + 1) };
      })
      // delta.ts orders removals by "repository@digest".
      .sort((x, y) => byCodeUnit(`${x.repository}@${x.digest}`, `${y.repository}@${y.digest}`));
    for (const r of removedKeys) removed.push(JSON.stringify(r));
    for (const key of [...this.sincePublished.keys()].sort(byCodeUnit)) {
      const i = this.find(key);
      if (i >= 0 && this.jsons[i] !== this.sincePublished.get(key)) upserted.push(this.jsons[i]!);
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
      while (i < this.keys.length && this.keys[i]! < key) upserted.push(this.jsons[i++]!);
      if (i < this.keys.length && this.keys[i] === key) {
        if (this.jsons[i] !== json) upserted.push(this.jsons[i]!);
        i++;
      } else {
        removed.push(entry);
      }
    }
    while (i < this.keys.length) upserted.push(this.jsons[i++]!);
    removed.sort((x, y) => byCodeUnit(`${x.repository}@${x.digest}`, `${y.repository}@${y.digest}`));
    return renderDeltaText(this.group, this.registry, base, version, removed.map((r) => JSON.stringify(r)), upserted);
  }

  private noteChange(key: string, before: string | undefined): void {
    if (this.published && !this.sincePublished.has(key)) this.sincePublished.set(key, before);
  }

  private entryMap(): Map<string, string> {
    const m = new Map<string, string>();
    for (let i = 0; i < this.keys.length; i++) m.set(this.keys[i]!, this.jsons[i]!);
    return m;
  }

  private find(key: string): number {
    let lo = 0;
    let hi = this.keys.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const k = this.keys[mid]!;
      if (k === key) return mid;
      if (k < key) lo = mid + 1;
      else hi = mid - 1;
    }
    return -1;
  }

  /** The chunks as of now; those unchanged since the last build keep their bytes (and member). */
  private chunks(): Chunk[] {
    if (this.memoChunks) return this.memoChunks;
    const out: Chunk[] = [];
    let start = 0;
    let gen = 0;
    for (let i = 0; i < this.keys.length; i++) {
      gen = Math.max(gen, this.gens[i]!);
      if (endsChunk(this.keys[i]!) || i === this.keys.length - 1) {
        // The chunk's first key, size and newest generation identify its text (a chunk
        // that gained, lost or changed an entry has a new generation or size); the first
        // chunk has no leading comma.
        out.push({ start, end: i + 1, id: `${this.keys[start]}\u0001${i + 1 - start}\u0001${gen}\u0001${start === 0}` });
        start = i + 1;
        gen = 0;
      }
    }
    const kept = new Map<string, ChunkBytes>();
    for (const c of out) {
      const known = this.chunkBytes.get(c.id);
      if (known) kept.set(c.id, known);
    }
    this.chunkBytes = kept;
    this.memoChunks = out;
    return out;
  }

  private bytesOf(c: Chunk): ChunkBytes {
    let chunk = this.chunkBytes.get(c.id);
    if (!chunk) {
      const text = this.jsons.slice(c.start, c.end).join(',');
      chunk = { bytes: Buffer.from(c.start === 0 ? text : `,${text}`) };
      this.chunkBytes.set(c.id, chunk);
    }
    return chunk;
  }

  /** sha256 of head + '[' + entries + ']}' for each head, fed chunk by chunk in one pass. */
  private hash(heads: string[]): string[] {
    const hs = heads.map((head) => createHash('sha256').update(head).update('['));
    for (const c of this.chunks()) {
      const bytes = this.bytesOf(c).bytes;
      for (const h of hs) h.update(bytes);
    }
    return hs.map((h) => `sha256:${h.update(']}').digest('hex')}`);
  }
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

/**
 * Splits the JSON of an entries array into each entry's JSON. Entries are objects that all
 * begin with "repository", and `},{"repository":` can occur only between two of them (a
 * quote inside a JSON string is escaped); undefined when the count, if given, does not come
 * out right.
 */
function splitEntries(array: string, count: number | undefined): string[] | undefined {
  if (count === 0) return array === '[]' ? [] : undefined;
  if (!array.startsWith('[{"repository":') || !array.endsWith('}]')) return undefined;
  const parts = array.slice(1, -1).split(ENTRY_SEPARATOR);
  if (count !== undefined && parts.length !== count) return undefined;
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
