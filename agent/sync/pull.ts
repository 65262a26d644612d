import type { KeyObject } from 'node:crypto';
import pLimit from 'p-limit';
import { verifyImageSignature } from '../../core/cosign/verify.js';
import type { Descriptor } from '../../core/oci/manifest.js';
import { INDEX_TYPES, MediaType } from '../../core/oci/media-types.js';
import type { RegistryReader } from '../../core/registry/registry-client.js';
import type { StateArtifact } from '../../core/state/render.js';
import type { AgentGroup } from '../config/config.js';
import type { ContentStore } from '../store/content-store.js';
import { isStoreFull } from '../store/space.js';
import { imageRecordKey, type ImageRecord } from '../store/state-files.js';
import type { PassBytes, SyncContext } from './context.js';
import type { PullPlan } from './plan.js';
import { chooseChildren, formatPlatform, isAttestation, matches, type Platform } from './platform.js';
import { SiteClient } from './upstreams.js';

// Step 4 of a group's sync: the images plan.ts chose are pulled, `concurrency` at a time.
// Each entry goes into the content store by digest only: the manifest first, for an index
// only the children of the device's platforms, for an image its config before any layer (so
// an image for another platform costs one small blob), then the layers. Every byte is
// checked against its digest before it is kept. An image that fails is recorded 'failed'
// with its reason (logged and retried by backoff.ts); a store that fills stops every download
// that has not started (store/space.ts).

/** Pulls the planned images; resolves with the record of every live image, kept or pulled. */
export async function pullImages(ctx: SyncContext, g: AgentGroup, plan: PullPlan, totals: PassBytes): Promise<Record<string, ImageRecord>> {
  const signatures = new Map<string, StateArtifact[]>();
  for (const a of plan.live) if (a.subject) signatures.set(a.subject, [...(signatures.get(a.subject) ?? []), a]);
  const blobSlots = pLimit(ctx.config.concurrency * 2);
  const pull: PullContext = {
    // The site's upstreams first (upstreams.ts), for what is addressed by digest.
    client: ctx.siteClient(plan.registry),
    store: ctx.store,
    platforms: ctx.config.platforms,
    attestations: ctx.config.attestations,
    allPlatforms: ctx.config.pushTo !== undefined,
    // No blob download starts once the store filled during this pass.
    limit: (fn) => blobSlots(() => (ctx.space.stopped ? Promise.reject(storeFullError()) : fn())),
    onBytes: (n) => {
      totals.bytes += n;
      ctx.metrics.bytesPulled.inc({ what: 'image' }, n);
    },
    signatures,
    ...(g.imageKey ? { imageKey: g.imageKey } : {}),
  };
  const images: Record<string, ImageRecord> = { ...plan.kept };
  const limit = pLimit(ctx.config.concurrency);
  await Promise.all(plan.toPull.map((a) => limit(async () => {
    const key = imageRecordKey(a.repository, a.digest);
    const at = new Date().toISOString();
    if (ctx.space.stopped) {
      images[key] = { repository: a.repository, digest: a.digest, status: 'failed', reason: `not pulled: the store is full (since ${ctx.space.record()?.since ?? at})`, at };
      return;
    }
    const progress = ctx.progress.start(g.name, a.repository, a.digest);
    try {
      const out = await pullEntry({ ...pull, track: progress.blob }, a);
      images[key] = { repository: a.repository, digest: a.digest, status: out.status, ...(out.reason ? { reason: out.reason } : {}), manifests: out.manifests, blobs: out.blobs, at };
    } catch (err) {
      if (isStoreFull(err)) await ctx.storeFull(err);
      ctx.metrics.failures.inc({ where: 'image' });
      images[key] = { repository: a.repository, digest: a.digest, status: 'failed', reason: describeFailure(err), at };
    } finally {
      progress.done();
    }
  })));
  await ctx.progressDone();
  return images;
}

/** What an entry holds in the store: the manifests it serves and the other blobs they name. */
export interface PullOutcome {
  status: 'present' | 'skipped';
  reason?: string;
  manifests: string[];
  blobs: string[];
}

/** An image that must not be made available (it is reported, and retried next sync). */
export class PullRefusedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PullRefusedError';
  }
}

export interface PullContext {
  client: RegistryReader;
  store: ContentStore;
  platforms: readonly Platform[];
  attestations: boolean;
  /** Every platform (for a registry target, which refuses an index whose children it lacks). */
  allPlatforms: boolean;
  /** Bounds blob downloads across every image being pulled. */
  limit: <T>(fn: () => Promise<T>) => Promise<T>;
  /** Counts bytes that came over the network. */
  onBytes: (n: number) => void;
  /** Every signature entry of the state, by the digest it signs (for image verification). */
  signatures: ReadonlyMap<string, StateArtifact[]>;
  imageKey?: KeyObject;
  /** Told every blob of the entry being pulled, for its progress (progress.ts). */
  track?: (d: Descriptor) => void;
}

interface ManifestDoc {
  mediaType?: string;
  config?: Descriptor;
  layers?: Descriptor[];
  manifests?: (Descriptor & { platform?: Platform })[];
}

const IMAGE_CONFIGS = new Set<string>([MediaType.OciImageConfig, MediaType.DockerImageConfig]);

/**
 * A signature or other accessory (type SIGNATURE, a cosign `sha256-<hex>.sig` tag, or any
 * entry with a `subject`): it runs on no platform (cosign's config names none), so it is
 * pulled whole, with no platform decision.
 */
export function isAccessory(entry: StateArtifact): boolean {
  return entry.type === 'SIGNATURE' || typeof entry.subject === 'string' || entry.tag.some((t) => /^sha(256|512)-[a-f0-9]+\.(sig|att|sbom)$/.test(t));
}

export async function pullEntry(ctx: PullContext, entry: StateArtifact): Promise<PullOutcome> {
  if (isAccessory(entry) && !ctx.allPlatforms) ctx = { ...ctx, allPlatforms: true };
  const repo = entry.repository;
  const { doc } = await manifest(ctx, repo, entry.digest);
  let outcome: PullOutcome;
  if (INDEX_TYPES.has(doc.mediaType ?? entry.mediaType)) {
    // The signed index is kept byte for byte; only the children this device's runtime picks
    // are pulled (per platform, the best match, as containerd picks it).
    const children = doc.manifests ?? [];
    const picked = new Set(ctx.allPlatforms ? children : chooseChildren(ctx.platforms, children));
    const wanted = children.filter((m) => picked.has(m) || (ctx.attestations && isAttestation(m.platform)));
    if (wanted.length === 0) {
      const offered = (doc.manifests ?? []).map((m) => formatPlatform(m.platform ?? {})).join(', ');
      return { status: 'skipped', reason: `no manifest for ${ctx.platforms.map(formatPlatform).join(', ')} (the index offers ${offered || 'none'})`, manifests: [entry.digest], blobs: [] };
    }
    outcome = { status: 'present', manifests: [entry.digest], blobs: [] };
    for (const child of wanted) {
      const pulled = await pullImage(ctx, repo, child.digest, child.platform ?? null);
      outcome.manifests.push(...pulled.manifests);
      outcome.blobs.push(...pulled.blobs);
    }
  } else {
    outcome = await pullImage(ctx, repo, entry.digest, (entry as { platform?: Platform }).platform ?? null, doc);
  }
  if (ctx.imageKey && entry.type !== 'SIGNATURE' && outcome.status === 'present') await verifyImage(ctx, entry);
  return outcome;
}

/** Why an image is not available, as `status` shows it. */
export function describeFailure(err: unknown): string {
  const e = err as Error & { code?: string };
  if (isStoreFull(e)) return `disk full: the store has no room for this image (${e.code === 'EDQUOT' ? 'quota reached' : 'no space left'})`;
  return e.message ?? String(err);
}

/** What a blob download that is not started, the store having filled, fails with. */
function storeFullError(): Error {
  return Object.assign(new Error('the store is full: no download starts until space is freed'), { code: 'ENOSPC' });
}

/** A manifest by digest: from the store when held (checked on read), else fetched and kept. */
async function manifest(ctx: PullContext, repository: string, digest: string): Promise<{ bytes: Buffer; doc: ManifestDoc }> {
  let bytes: Buffer | undefined;
  if (await ctx.store.has(digest)) bytes = await ctx.store.read(digest).catch(() => undefined);
  // Once per digest, whoever asks first: this sync, or a peer through the server's pull-through.
  bytes ??= await ctx.store.once(digest, async () => {
    const fetched = await ctx.client.getManifest(repository, digest);
    if (!fetched) throw new PullRefusedError(`${repository}@${digest} is not in the registry`);
    if (fetched.digest !== digest) throw new PullRefusedError(`${repository}@${digest} arrived as ${fetched.digest}`);
    if (!(ctx.client instanceof SiteClient && ctx.client.delivered.has(fetched))) ctx.onBytes(fetched.bytes.length);
    await ctx.store.write(digest, fetched.bytes);
    return fetched.bytes;
  });
  try {
    return { bytes, doc: JSON.parse(bytes.toString('utf8')) as ManifestDoc };
  } catch {
    throw new PullRefusedError(`${repository}@${digest} is not a JSON manifest`);
  }
}

async function pullImage(ctx: PullContext, repo: string, digest: string, platform: Platform | null, known?: ManifestDoc): Promise<PullOutcome> {
  const doc = known ?? (await manifest(ctx, repo, digest)).doc;
  if (!doc.config || !Array.isArray(doc.layers)) throw new PullRefusedError(`${repo}@${digest} is not an image manifest`);
  const blobs = [doc.config.digest];
  ctx.track?.(doc.config);
  await blob(ctx, repo, doc.config);
  // An image without a platform in the state (the endpoint never sees config blobs) is
  // decided by its config, which is fetched before any layer.
  if (IMAGE_CONFIGS.has(doc.config.mediaType) && !ctx.allPlatforms) {
    const actual = platform ?? (await configPlatform(ctx, doc.config.digest));
    if (!isAttestation(actual) && !matches(ctx.platforms, actual)) {
      return { status: 'skipped', reason: `built for ${formatPlatform(actual ?? {})}, not ${ctx.platforms.map(formatPlatform).join(', ')}`, manifests: [digest], blobs };
    }
  }
  for (const l of doc.layers) ctx.track?.(l);
  await Promise.all(doc.layers.map((l) => blob(ctx, repo, l)));
  blobs.push(...doc.layers.map((l) => l.digest));
  return { status: 'present', manifests: [digest], blobs };
}

async function configPlatform(ctx: PullContext, digest: string): Promise<Platform | null> {
  try {
    const c = JSON.parse((await ctx.store.read(digest)).toString('utf8')) as { os?: string; architecture?: string; variant?: string };
    if (typeof c.os !== 'string' || typeof c.architecture !== 'string') return null;
    return { os: c.os, architecture: c.architecture, ...(c.variant ? { variant: c.variant } : {}) };
  } catch {
    return null;
  }
}

async function blob(ctx: PullContext, repo: string, d: Descriptor): Promise<void> {
  if (await ctx.store.has(d.digest, d.size)) return;
  await ctx.limit(async () => {
    const { downloaded } = ctx.client instanceof SiteClient
      ? await ctx.client.ingest(ctx.store, repo, d)
      : await ctx.store.ingest(d.digest, d.size, (offset) => ctx.client.openBlob(repo, d.digest, offset));
    ctx.onBytes(downloaded);
  });
}

/**
 * `cosign verify --key` for one image (core/cosign/verify.ts), from the signatures the state
 * lists for it: at least one signature layer must verify with the group's image key, claim
 * this digest, and name this repository (under any registry host: the image may have been
 * signed under Harbor's external name).
 */
async function verifyImage(ctx: PullContext, entry: StateArtifact): Promise<void> {
  const sigs = (ctx.signatures.get(entry.digest) ?? []).filter((s) => s.repository === entry.repository && !s.deleted);
  if (sigs.length === 0) throw new PullRefusedError(`${entry.repository}@${entry.digest} has no cosign signature in the state`);
  const check = await verifyImageSignature(ctx.client, entry.repository, entry.digest, ctx.imageKey!);
  if (check.verified) return;
  const reasons = check.verdicts.flatMap((v) => (v.ok ? [] : [v.reason]));
  throw new PullRefusedError(`${entry.repository}@${entry.digest} has no valid signature by the group's image key: ${[...new Set(reasons)].join('; ') || 'none found'}`);
}
