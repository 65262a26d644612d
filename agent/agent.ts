import { stat } from 'node:fs/promises';
import type { Logger } from 'pino';
import { RegistryClient, RegistryRequestError } from '../core/registry/registry-client.js';
import type { VersionedState } from '../core/state/delta.js';
import type { StateArtifact } from '../core/state/render.js';
import { AgentStateFiles, imageKey, type AgentStateDoc, type GroupRecord, type ImageRecord, type Pin } from './agent-state.js';
import type { AgentConfig, AgentGroup } from './config.js';
import { ContentStore } from './content-store.js';
import type { AgentMetrics } from './metrics.js';
import { pullEntry, type PullContext } from './puller.js';
import { pushImage, removeImage } from './push-target.js';
import { ServedView } from './served-view.js';
import { isStoreFull, StoreSpace } from './store-space.js';
import { parseState, readState, StateRefusedError } from './state-reader.js';
import { AGENT_VERSION } from './version.js';

// The sync: per group, one HEAD of the state (or of the pinned version); only a new digest
// fetches the manifest, verifies its signature, and reads the state (from the delta when
// possible). Then every listed image is pulled by digest, the served view is swapped, and
// what no state names any more is collected. Images that failed are retried on the next
// pass, even when the state did not change. A store that fills stops the pulls of the pass
// (store-space.ts).

/** 'full': a new state could not be recorded, the store being full. */
export type GroupOutcome = 'unchanged' | 'applied' | 'retried' | 'unreachable' | 'refused' | 'missing' | 'full';

export interface SyncSummary {
  groups: Record<string, GroupOutcome>;
  /** Images listed but not available (failed or still pending), all groups. */
  failedImages: number;
  bytes: number;
  /** The store cannot take more bytes: pulls are paused (and the next pass backed off). */
  storeFull: boolean;
}

/** Blobs downloaded less than this long ago are kept by a collection that runs while images fail. */
const KEEP_RECENT_MS = 60 * 60 * 1000;

export class Agent {
  readonly store: ContentStore;
  readonly files: AgentStateFiles;
  readonly space: StoreSpace;
  doc!: AgentStateDoc;
  view = new ServedView();
  /** Groups whose served content lost a blob (found corrupt on read): resync them. */
  private readonly damaged = new Set<string>();
  private readonly clients = new Map<string, RegistryClient>();
  private states = new Map<string, VersionedState>();

  constructor(readonly config: AgentConfig, readonly log: Logger, readonly metrics: AgentMetrics) {
    this.store = new ContentStore(config.store, config.timeoutMs);
    this.files = new AgentStateFiles(config.store);
    this.space = new StoreSpace(config.store, metrics);
  }

  /** Loads what was applied before, so it is served at once, with or without a network. */
  async open(): Promise<void> {
    await this.store.init();
    await this.files.init();
    this.doc = await this.files.load(AGENT_VERSION);
    this.doc.startedAt = new Date().toISOString();
    if (this.doc.store?.full) this.space.restore(this.doc.store.full);
    for (const g of this.config.groups) {
      const json = await this.files.appliedJson(g.name);
      const rec = this.doc.groups[g.name];
      if (!json || !rec?.applied) continue;
      try {
        this.states.set(g.name, parseState(json));
      } catch (err) {
        // A state applied by an older agent that this one's checks refuse (or a file damaged
        // on disk) must not keep the device from starting: it is read again from the
        // registry, verified as any new state. highestVersion stays, so no replay gets in.
        this.log.error({ group: g.name, err: (err as Error).message }, 'the applied state no longer passes its checks; it is fetched again');
        delete rec.applied;
      }
    }
    this.rebuildView();
  }

  /**
   * A client per registry origin and purpose. Credentials go only to the registry they were
   * configured for: the pull credential to `registry`'s origin, the target's to the target.
   */
  client(url: string, credentials?: { username: string; password: string }, actions: 'pull' | 'pull,push' = 'pull'): RegistryClient {
    const origin = new URL(url).origin;
    const key = `${actions} ${origin}`;
    let c = this.clients.get(key);
    if (!c) {
      const own = origin === new URL(this.config.registry).origin ? this.config.credentials : undefined;
      c = new RegistryClient(origin, actions === 'pull' ? own : credentials, this.config.timeoutMs, actions, this.config.ca);
      this.clients.set(key, c);
    }
    return c;
  }

  /** Called by the server when a stored blob failed its digest check on read. */
  blobCorrupt(digest: string): void {
    this.log.error({ digest }, 'a stored blob no longer matches its digest; removed, it will be fetched again');
    this.metrics.failures.inc({ where: 'store' });
    for (const [name, rec] of Object.entries(this.doc.groups)) {
      if (Object.values(rec.images).some((i) => i.manifests?.includes(digest) || i.blobs?.includes(digest))) this.damaged.add(name);
    }
  }

  async syncOnce(only?: string): Promise<SyncSummary> {
    const summary: SyncSummary = { groups: {}, failedImages: 0, bytes: 0, storeFull: false };
    await this.space.beginPass();
    if (this.space.stopped) this.log.warn({ store: this.space.record() }, 'the store is still full: nothing is pulled this pass; what is stored is served');
    const pins = await this.files.pins();
    for (const g of this.config.groups) {
      if (only !== undefined && g.name !== only) continue;
      const stop = this.metrics.syncSeconds.startTimer();
      summary.groups[g.name] = await this.syncGroup(g, pins[g.name], summary);
      stop();
    }
    for (const rec of Object.values(this.doc.groups)) {
      summary.failedImages += Object.values(rec.images).filter((i) => i.status === 'failed' || i.status === 'pending').length;
    }
    await this.space.endPass();
    await this.collect(summary.failedImages === 0);
    summary.storeFull = this.space.isFull;
    await this.saveDoc();
    return summary;
  }

  /** The store has no room: this pass stops pulling, and status and metrics say so. */
  private async storeFull(err: unknown): Promise<void> {
    const first = !this.space.isFull;
    await this.space.markFull(err);
    this.doc.store = { full: this.space.record()! };
    if (first) this.log.error({ store: this.config.store, ...this.space.record() }, 'the store is full: pulls stop until space is freed; what is stored is still served');
  }

  /**
   * Records the status file. With the store full the record stays in memory (served by
   * /status) and is written at a later pass: the pass goes on rather than failing.
   */
  private async saveDoc(): Promise<void> {
    const full = this.space.record();
    if (full) this.doc.store = { full };
    else delete this.doc.store;
    try {
      await this.files.save(this.doc);
    } catch (err) {
      if (!isStoreFull(err)) throw err;
      await this.storeFull(err);
    }
  }

  private record(group: string): GroupRecord {
    return (this.doc.groups[group] ??= { highestVersion: 0, images: {} });
  }

  private async syncGroup(g: AgentGroup, pin: Pin | undefined, summary: SyncSummary): Promise<GroupOutcome> {
    const rec = this.record(g.name);
    const stateClient = this.client(this.config.registry);
    const reference = pin?.digest ?? (pin?.version !== undefined ? `v${pin.version}` : 'latest');
    const now = new Date().toISOString();
    rec.checkedAt = now;
    let head: { digest: string } | undefined;
    try {
      head = await stateClient.headManifest(g.state, reference);
    } catch (err) {
      rec.staleSince ??= now;
      rec.error = `registry unreachable: ${(err as Error).message}`;
      this.metrics.polls.inc({ group: g.name, result: 'unreachable' });
      this.metrics.failures.inc({ where: 'poll' });
      this.log.warn({ group: g.name, err: (err as Error).message, staleSince: rec.staleSince }, 'cannot reach the registry; serving what was applied');
      return 'unreachable';
    }
    rec.lastSuccessAt = now;
    delete rec.staleSince;
    if (!head) {
      rec.error = `no state at ${g.state}:${reference}`;
      this.metrics.polls.inc({ group: g.name, result: 'missing' });
      return 'missing';
    }

    const held = this.states.get(g.name);
    if (head.digest === rec.applied?.digest && held) {
      const incomplete = this.damaged.has(g.name) || Object.values(rec.images).some((i) => i.status === 'failed' || i.status === 'pending');
      if (!incomplete) {
        delete rec.error;
        this.metrics.polls.inc({ group: g.name, result: 'unchanged' });
        return 'unchanged';
      }
      this.metrics.polls.inc({ group: g.name, result: 'retried' });
      await this.apply(g, held, rec, summary);
      return 'retried';
    }

    try {
      const heldJson = rec.applied && held ? await this.files.appliedJson(g.name) : undefined;
      const read = await readState(stateClient, g, head.digest, heldJson && rec.applied ? { stateDigest: rec.applied.stateDigest, json: heldJson } : undefined, this.config.maxStateBytes, this.log);
      summary.bytes += read.bytes;
      this.metrics.bytesPulled.inc({ what: 'state' }, read.bytes);
      this.checkAcceptable(g, rec, read.state, read.stateDigest, pin);
      this.log.info({ group: g.name, version: read.state.version, digest: read.digest, via: read.via, bytes: read.bytes }, 'new state verified');
      // What is served now stays served, tag by tag, until its replacement is present; it
      // is recorded before the new state is, so a crash in between loses none of it.
      if (held) {
        rec.fallback = ServedView.servedEntries(held, rec.images, rec.fallback);
        await this.files.save(this.doc);
      }
      await this.files.saveAppliedJson(g.name, read.json);
      this.states.set(g.name, read.state);
      rec.applied = { version: read.state.version, digest: read.digest, stateDigest: read.stateDigest, appliedAt: new Date().toISOString() };
      if (!pin) rec.highestVersion = Math.max(rec.highestVersion, read.state.version);
      this.metrics.polls.inc({ group: g.name, result: 'changed' });
      await this.apply(g, read.state, rec, summary);
      return 'applied';
    } catch (err) {
      if (err instanceof StateRefusedError) {
        rec.error = `state refused (${err.reason}): ${err.message}`;
        this.metrics.polls.inc({ group: g.name, result: 'refused' });
        this.metrics.failures.inc({ where: 'state' });
        this.log.error({ group: g.name, reason: err.reason, err: err.message }, 'state refused; nothing applied');
        return 'refused';
      }
      if (err instanceof RegistryRequestError) {
        rec.staleSince ??= now;
        rec.error = `cannot read the state: ${err.message}`;
        this.metrics.failures.inc({ where: 'poll' });
        this.log.warn({ group: g.name, err: err.message }, 'cannot read the state; serving what was applied');
        return 'unreachable';
      }
      if (isStoreFull(err)) {
        await this.storeFull(err);
        rec.error = `the store is full: the new state could not be recorded (${(err as Error).message})`;
        return 'full';
      }
      throw err;
    }
  }

  /** Refuses a state for another group, and (unless pinned) one older than what was applied. */
  private checkAcceptable(g: AgentGroup, rec: GroupRecord, state: VersionedState, stateDigest: string, pin: Pin | undefined): void {
    if (state.group !== g.name) {
      throw new StateRefusedError('wrong-group', `the state is for group ${JSON.stringify(state.group)}, not ${JSON.stringify(g.name)}`);
    }
    if (pin) {
      if (pin.version !== undefined && state.version !== pin.version) {
        throw new StateRefusedError('replay', `the state tagged v${pin.version} says it is version ${state.version}`);
      }
      return;
    }
    if (state.version < rec.highestVersion) {
      throw new StateRefusedError('replay', `version ${state.version} is older than version ${rec.highestVersion} already applied (a replayed state?); pin it to go back on purpose`);
    }
    if (rec.applied && state.version === rec.applied.version && stateDigest !== rec.applied.stateDigest) {
      throw new StateRefusedError('replay', `another state claims version ${state.version}, which is already applied`);
    }
  }

  /** Pulls every listed image (those complete already are left alone), then swaps the served view. */
  private async apply(g: AgentGroup, state: VersionedState, rec: GroupRecord, summary: SyncSummary): Promise<void> {
    const live = state.artifacts.filter((a) => !a.deleted);
    const signatures = new Map<string, StateArtifact[]>();
    for (const a of live) if (a.subject) signatures.set(a.subject, [...(signatures.get(a.subject) ?? []), a]);
    const blobSlots = limiter(this.config.concurrency * 2);
    const ctx: PullContext = {
      client: this.client(state.registry),
      store: this.store,
      platforms: this.config.platforms,
      attestations: this.config.attestations,
      allPlatforms: this.config.pushTo !== undefined,
      // No blob download starts once the store filled during this pass.
      limit: (fn) => blobSlots(() => (this.space.stopped ? Promise.reject(storeFullError()) : fn())),
      onBytes: (n) => {
        summary.bytes += n;
        this.metrics.bytesPulled.inc({ what: 'image' }, n);
      },
      signatures,
      ...(g.imageKey ? { imageKey: g.imageKey } : {}),
    };
    const damaged = this.damaged.delete(g.name);
    // Images listed and never pulled yet are 'pending' until their pull ends (one that failed
    // before stays 'failed', with its reason, until the retry ends): `status` shows them
    // while a long sync runs.
    const started = new Date().toISOString();
    let pending = 0;
    for (const a of live) {
      const key = imageKey(a.repository, a.digest);
      if (rec.images[key] && rec.images[key].status !== 'pending') continue;
      rec.images[key] = { repository: a.repository, digest: a.digest, status: 'pending', at: started };
      pending++;
    }
    if (pending) {
      this.metrics.images.set({ group: g.name, status: 'pending' }, pending);
      await this.saveDoc();
    }
    const images: Record<string, ImageRecord> = {};
    await forEachLimit(live, this.config.concurrency, async (a) => {
      const key = imageKey(a.repository, a.digest);
      const before = rec.images[key];
      if (!damaged && before && (before.status === 'present' || before.status === 'skipped') && (await this.complete(before))) {
        images[key] = before;
        return;
      }
      const at = new Date().toISOString();
      if (this.space.stopped) {
        images[key] = { repository: a.repository, digest: a.digest, status: 'failed', reason: `not pulled: the store is full (since ${this.space.record()?.since ?? at})`, at };
        return;
      }
      try {
        const out = await pullEntry(ctx, a);
        images[key] = { repository: a.repository, digest: a.digest, status: out.status, ...(out.reason ? { reason: out.reason } : {}), manifests: out.manifests, blobs: out.blobs, at };
      } catch (err) {
        if (isStoreFull(err)) await this.storeFull(err);
        this.metrics.failures.inc({ where: 'image' });
        this.log.warn({ group: g.name, repository: a.repository, digest: a.digest, err: (err as Error).message }, 'image not made available');
        images[key] = { repository: a.repository, digest: a.digest, status: 'failed', reason: describe(err), at };
      }
    });
    if (this.config.pushTo) await this.pushToTarget(g, live, rec.images, images);
    rec.images = images;
    const awaited = ServedView.stillAwaited(state, images, rec.fallback ?? []);
    if (awaited.length) rec.fallback = awaited;
    else delete rec.fallback;
    const failed = Object.values(images).filter((i) => i.status === 'failed');
    if (failed.length) rec.error = `${failed.length} of ${live.length} images failed`;
    else delete rec.error;
    for (const status of ['present', 'failed', 'skipped', 'pending'] as const) {
      this.metrics.images.set({ group: g.name, status }, Object.values(images).filter((i) => i.status === status).length);
    }
    this.metrics.appliedVersion.set({ group: g.name }, state.version);
    this.rebuildView();
    await this.saveDoc();
  }

  /**
   * Fills the registry target: what is present and not yet there (or whose tags changed) is
   * pushed; what was pushed and is no longer listed is deleted there. A push that fails is
   * an image failure, retried on the next pass.
   */
  private async pushToTarget(g: AgentGroup, live: readonly StateArtifact[], before: Record<string, ImageRecord>, images: Record<string, ImageRecord>): Promise<void> {
    const target = this.client(this.config.pushTo!.registry, this.config.pushTo!.credentials, 'pull,push');
    for (const a of live) {
      const rec = images[imageKey(a.repository, a.digest)];
      if (rec?.status !== 'present' || (rec.pushedTags && rec.pushedTags.join(',') === a.tag.join(','))) continue;
      try {
        await pushImage(target, this.store, a, rec);
        rec.pushedTags = [...a.tag];
      } catch (err) {
        this.metrics.failures.inc({ where: 'push' });
        this.log.warn({ group: g.name, repository: a.repository, digest: a.digest, err: (err as Error).message }, 'cannot push the image to the target registry');
        images[imageKey(a.repository, a.digest)] = { ...rec, status: 'failed', reason: `push to ${this.config.pushTo!.registry}: ${describe(err)}` };
      }
    }
    for (const [key, old] of Object.entries(before)) {
      if (images[key] || old.pushedTags === undefined) continue;
      await removeImage(target, old.repository, old.digest).catch((err: Error) =>
        this.log.warn({ group: g.name, repository: old.repository, digest: old.digest, err: err.message }, 'cannot remove the image from the target registry'));
    }
  }

  /** Whether every digest an image needs is still in the store. */
  private async complete(rec: ImageRecord): Promise<boolean> {
    for (const d of [...(rec.manifests ?? []), ...(rec.blobs ?? [])]) if (!(await this.store.has(d))) return false;
    return true;
  }

  rebuildView(): void {
    const groups = this.config.groups.flatMap((g) => {
      const state = this.states.get(g.name);
      const rec = this.doc.groups[g.name];
      return state && rec ? [{ state, images: rec.images, ...(rec.fallback ? { fallback: rec.fallback } : {}) }] : [];
    });
    this.view = ServedView.build(groups);
  }

  /**
   * Removes what no applied state needs. While some images fail, blobs fetched within the
   * last hour are kept (they may belong to an image still being retried).
   */
  private async collect(everythingComplete: boolean): Promise<number> {
    const keep = new Set(this.view.referenced);
    for (const d of this.store.downloading()) keep.add(d);
    let removed = 0;
    for (const d of await this.store.list()) {
      if (keep.has(d)) continue;
      if (!everythingComplete) {
        const mtime = await stat(this.store.path(d)).then((s) => s.mtimeMs, () => 0);
        if (Date.now() - mtime < KEEP_RECENT_MS) continue;
      }
      await this.store.remove(d);
      removed++;
    }
    // Interrupted downloads are kept for a resume while some image is not complete.
    if (everythingComplete) removed += await this.store.dropPartials(keep);
    if (removed) this.log.info({ removed }, 'collected blobs no state needs');
    return removed;
  }

  /**
   * The registries of the applied states, as origins (scheme and host): what the runtime
   * mirror files name, and fall back to over the registry's own scheme.
   */
  registryOrigins(): string[] {
    const origins = new Set<string>();
    for (const s of this.states.values()) {
      try {
        origins.add(new URL(s.registry).origin);
      } catch {
        // a state whose registry is not a URL names no mirror
      }
    }
    return [...origins].sort();
  }
}

function describe(err: unknown): string {
  const e = err as Error & { code?: string };
  if (isStoreFull(e)) return `disk full: the store has no room for this image (${e.code === 'EDQUOT' ? 'quota reached' : 'no space left'})`;
  return e.message ?? String(err);
}

/** What a blob download that is not started, the store having filled, fails with. */
function storeFullError(): Error {
  return Object.assign(new Error('the store is full: no download starts until space is freed'), { code: 'ENOSPC' });
}

/** A concurrency limiter: at most `n` calls of `fn` run at once. */
export function limiter(n: number): <T>(fn: () => Promise<T>) => Promise<T> {
  let active = 0;
  const waiting: (() => void)[] = [];
  return async <T>(fn: () => Promise<T>): Promise<T> => {
    if (active < n) active++;
    else await new Promise<void>((r) => waiting.push(r)); // the slot is handed over, still counted
    try {
      return await fn();
    } finally {
      const next = waiting.shift();
      if (next) next();
      else active--;
    }
  };
}

async function forEachLimit<T>(items: readonly T[], n: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const workers = Array.from({ length: Math.min(n, items.length) }, async () => {
    while (next < items.length) await fn(items[next++]!);
  });
  await Promise.all(workers);
}
