import { stat } from 'node:fs/promises';
import type { Logger } from 'pino';
import { RegistryClient } from '../../core/registry/registry-client.js';
import type { VersionedState } from '../../core/state/delta.js';
import { imageRegistry, type AgentConfig, type AgentGroup } from '../config/config.js';
import type { AgentMetrics } from '../metrics.js';
import { PullThrough } from '../serve/pull-through.js';
import { ServedView } from '../serve/served-view.js';
import { ContentStore } from '../store/content-store.js';
import { isStoreFull, StoreSpace } from '../store/space.js';
import { AgentStateFiles, type AgentStateDoc, type GroupRecord, type Pin } from '../store/state-files.js';
import { AGENT_VERSION } from '../version.js';
import { applyImages } from './apply.js';
import { ImageBackoff } from './backoff.js';
import type { GroupOutcome, SyncContext } from './context.js';
import { planPulls } from './plan.js';
import { poll } from './poll.js';
import { PullProgress } from './progress.js';
import { pullImages } from './pull.js';
import { parseState } from './state-reader.js';
import { SiteClient, Upstreams } from './upstreams.js';
import { notApplied, verifyState } from './verify.js';

// The sync: per group, five steps, one file each: poll.ts (one HEAD of the state or of the
// pinned version), verify.ts (only a new digest: signature, then the state, from the delta
// when possible; replays refused), plan.ts (which images are not complete in the store),
// pull.ts (those, by digest), apply.ts (records, registry target, the served view swapped).
// Then what no state names any more is collected. Images that failed are retried, even when
// the state did not change, each after its own backoff (backoff.ts). A store that fills stops the pulls of the
// pass (store/space.ts).

export type { GroupOutcome } from './context.js';

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

export class Agent implements SyncContext {
  readonly store: ContentStore;
  readonly files: AgentStateFiles;
  readonly space: StoreSpace;
  doc!: AgentStateDoc;
  view = new ServedView();
  /** Groups whose served content lost a blob (found corrupt on read): resync them. */
  readonly damaged = new Set<string>();
  readonly backoff: ImageBackoff;
  private readonly clients = new Map<string, RegistryClient>();
  readonly states = new Map<string, VersionedState>();
  readonly progress = new PullProgress();
  private reporting: Promise<void> | undefined;
  /** Set by `agent import`: the archive, read in the place of every registry pulled from. */
  source: RegistryClient | undefined;
  /** The verification of a new state under way in this pass (the server's pull-through waits for it a little). */
  verifying: Promise<unknown> | undefined;
  /** What the server fetches for peers (serve/pull-through.ts); undefined: server.pullThrough is off. */
  readonly pullThrough: PullThrough | undefined;
  /** The site's other agents (`upstreams`), asked before the registry (upstreams.ts); none configured: undefined. */
  readonly upstreams: Upstreams | undefined;

  constructor(readonly config: AgentConfig, readonly log: Logger, readonly metrics: AgentMetrics) {
    this.store = new ContentStore(config.store, config.timeoutMs);
    this.files = new AgentStateFiles(config.store);
    this.space = new StoreSpace(config.store, metrics);
    this.backoff = new ImageBackoff(config.intervalMs);
    this.upstreams = config.upstreams.length
      ? new Upstreams(config.upstreams, config.upstreamTimeoutMs, config.ca, log, metrics, () => (this.doc.upstreams ??= {}))
      : undefined;
    this.pullThrough = config.server.pullThrough ? new PullThrough(this) : undefined;
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
    if (this.source && actions === 'pull') return this.source;
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

  /**
   * A reader of `url`'s registry that asks the site upstreams first for what a digest names
   * (upstreams.ts); `keep`: it keeps what it read, for the store. An import reads its archive
   * alone.
   */
  siteClient(url: string, keep = false): SiteClient {
    return new SiteClient(this.client(url), this.source ? undefined : this.upstreams, keep);
  }

  /** Called by the server when a stored blob failed its digest check on read. */
  blobCorrupt(digest: string): void {
    this.log.error({ digest }, 'a stored blob no longer matches its digest; removed, it will be fetched again');
    this.metrics.failures.inc({ where: 'store' });
    for (const [name, rec] of Object.entries(this.doc.groups)) {
      if (Object.values(rec.images).some((i) => i.manifests?.includes(digest) || i.blobs?.includes(digest))) this.damaged.add(name);
    }
  }

  /** `scheduled`: a pass of the interval, where failed images wait for their backoff (backoff.ts). */
  async syncOnce(only?: string, opts: { scheduled?: boolean } = {}): Promise<SyncSummary> {
    if (!opts.scheduled) this.backoff.dueNow();
    const summary: SyncSummary = { groups: {}, failedImages: 0, bytes: 0, storeFull: false };
    await this.space.beginPass();
    if (this.space.stopped) this.log.warn({ store: this.space.record() }, 'the store is still full: nothing is pulled this pass; what is stored is served');
    const pins = await this.files.pins();
    const reporting = setInterval(() => {
      this.reporting ??= this.reportProgress().finally(() => (this.reporting = undefined));
    }, this.config.progressIntervalMs);
    try {
      for (const g of this.config.groups) {
        if (only !== undefined && g.name !== only) continue;
        const stop = this.metrics.syncSeconds.startTimer();
        summary.groups[g.name] = await this.syncGroup(g, pins[g.name], summary);
        stop();
      }
    } finally {
      clearInterval(reporting);
      await this.progressDone();
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

  /**
   * Every progressInterval while images are pulled: per image, bytes done / total, in the
   * log and in the store's progress.json (read by `satellite agent status`).
   */
  private async reportProgress(): Promise<void> {
    if (!this.progress.active) return;
    try {
      const images = await this.progress.snapshot(this.store);
      if (!this.progress.active) return;
      this.log.info({ images: images.map((i) => ({ ...i, percent: i.bytesTotal ? Math.floor((i.bytesDone / i.bytesTotal) * 100) : 0 })) }, 'pull progress');
      await this.files.saveProgress({ at: new Date().toISOString(), images });
    } catch (err) {
      this.log.debug({ err: (err as Error).message }, 'pull progress not recorded');
    }
  }

  /** The pulls ended: no progress is shown any more (before the images are recorded present). */
  async progressDone(): Promise<void> {
    await this.reporting;
    await this.files.saveProgress(undefined).catch(() => undefined);
  }

  /** The store has no room: this pass stops pulling, and status and metrics say so. */
  async storeFull(err: unknown): Promise<void> {
    const first = !this.space.isFull;
    await this.space.markFull(err);
    this.doc.store = { full: this.space.record()! };
    if (first) this.log.error({ store: this.config.store, ...this.space.record() }, 'the store is full: pulls stop until space is freed; what is stored is still served');
  }

  /**
   * Records the status file. With the store full the record stays in memory (served by
   * /status) and is written at a later pass: the pass goes on rather than failing.
   */
  async saveDoc(): Promise<void> {
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

  /** One group's pass: poll → verify (a new state only) → plan → pull → apply. */
  private async syncGroup(g: AgentGroup, pin: Pin | undefined, summary: SyncSummary): Promise<GroupOutcome> {
    const rec = this.record(g.name);
    const now = new Date().toISOString();
    // The server's pull-through (serve/pull-through.ts) waits a little for a new state being verified.
    let verified!: () => void;
    this.verifying = new Promise<void>((resolve) => (verified = resolve));
    try {
      const polled = await poll(this, g, pin, rec, now);
      if (polled.outcome !== 'changed' && polled.outcome !== 'retried') return polled.outcome;
      try {
        const state = polled.outcome === 'retried' ? polled.state : await verifyState(this, g, rec, polled.digest, pin, summary, polled.via);
        verified();
        const plan = await planPulls(this, g, state, rec);
        const images = await pullImages(this, g, plan, summary);
        this.backoff.settle(this.log, g.name, plan.toPull, images, this.space.stopped);
        await applyImages(this, g, state, rec, plan, images);
        return polled.outcome === 'retried' ? 'retried' : 'applied';
      } catch (err) {
        return notApplied(this, g, rec, err, now);
      }
    } finally {
      verified();
      this.verifying = undefined;
    }
  }

  rebuildView(): void {
    const groups = this.config.groups.flatMap((g) => {
      const state = this.states.get(g.name);
      const rec = this.doc.groups[g.name];
      return state && rec ? [{ state, images: rec.images, ...(rec.fallback ? { fallback: rec.fallback } : {}), ...(rec.stateContent ? { stateContent: rec.stateContent } : {}) }] : [];
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
        origins.add(new URL(imageRegistry(this.config, s.registry)).origin);
      } catch {
        // a state whose registry is not a URL names no mirror
      }
    }
    return [...origins].sort();
  }
}
