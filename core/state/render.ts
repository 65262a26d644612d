import { createHash } from 'node:crypto';
import type { GroupArtifactRow } from '../store/artifact-store.js';
import type { ArtifactKind } from '../oci/media-types.js';
import type { Platform } from '../oci/manifest.js';
import { cosignTagTarget } from '../oci/digest.js';

// The state JSON of a group. The keys of the seed state file (group, registry, artifacts[]
// with repository, tag, labels, type, digest, deleted) keep their names and meaning;
// mediaType, size, platforms, subject and platform are additions; labels, null until
// reconciliation with Harbor reads them, become the names of the artifact's Harbor labels.
// Rendering is canonical: fixed key order, arrays sorted by code unit, no whitespace, so the
// same records always give the same bytes and the same digest.

export interface StatePlatform {
  digest: string;
  mediaType: string;
  os: string;
  architecture: string;
  variant?: string;
  'os.version'?: string;
}

/** The platform of a single-platform image, as Harbor read it from the image's config. */
export interface StateImagePlatform {
  os: string;
  architecture: string;
  variant?: string;
}

export interface StateArtifact {
  repository: string;
  tag: string[];
  /** Harbor's labels of the artifact (sorted names); null while unknown or none. */
  labels: string[] | null;
  type: ArtifactKind;
  digest: string;
  deleted: boolean;
  mediaType: string;
  size: number;
  /** For an index: the manifests it lists, in its own order. */
  platforms?: StatePlatform[];
  /** For a signature or any referrer: the digest of the artifact it is about. */
  subject?: string;
  /** For a single-platform image: its platform, when Harbor knows it. */
  platform?: StateImagePlatform;
}

export interface GroupState {
  group: string;
  registry: string;
  artifacts: StateArtifact[];
}

const byCodeUnit = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

function platformOf(child: { digest: string; mediaType: string; platform: Platform | null }): StatePlatform {
  const p: StatePlatform = {
    digest: child.digest,
    mediaType: child.mediaType,
    os: child.platform?.os ?? '',
    architecture: child.platform?.architecture ?? '',
  };
  if (child.platform?.variant) p.variant = child.platform.variant;
  if (child.platform?.['os.version']) p['os.version'] = child.platform['os.version'];
  return p;
}

function imagePlatform(p: Platform): StateImagePlatform {
  const out: StateImagePlatform = { os: p.os, architecture: p.architecture };
  if (p.variant) out.variant = p.variant;
  return out;
}

/** The state entry of one recorded artifact. */
export function artifactOf(r: GroupArtifactRow): StateArtifact {
  const a: StateArtifact = {
    repository: r.repository,
    tag: r.tags.length > 1 ? [...r.tags].sort(byCodeUnit) : r.tags.slice(),
    labels: r.labels && r.labels.length > 0 ? [...r.labels].sort(byCodeUnit) : null,
    type: r.kind,
    digest: r.digest,
    deleted: r.deleted,
    mediaType: r.mediaType,
    size: r.size,
  };
  if (r.children && r.children.length > 0) a.platforms = r.children.map(platformOf);
  // A referrer names its subject; a cosign signature pushed by tag names it in the tag.
  const subject = r.subject ?? a.tag.map((t) => cosignTagTarget(t)?.digest).find((d) => d !== undefined);
  if (subject) a.subject = subject;
  if (r.platform && !a.platforms) a.platform = imagePlatform(r.platform);
  return a;
}

const inOrder = (x: StateArtifact, y: StateArtifact): number => byCodeUnit(x.repository, y.repository) || byCodeUnit(x.digest, y.digest);

/** Sorts by repository then digest; rows listed in that order (the store's) cost one pass. */
function sortArtifacts(artifacts: StateArtifact[]): StateArtifact[] {
  for (let i = 1; i < artifacts.length; i++) {
    if (inOrder(artifacts[i - 1]!, artifacts[i]!) > 0) return artifacts.sort(inOrder);
  }
  return artifacts;
}

export function buildState(group: string, registry: string, rows: readonly GroupArtifactRow[]): GroupState {
  return { group, registry, artifacts: sortArtifacts(rows.map(artifactOf)) };
}

/** A state rendered once: its `artifacts` array as canonical JSON, and what wraps it. */
export interface RenderedState {
  group: string;
  registry: string;
  count: number;
  /** The canonical JSON of the `artifacts` array. */
  artifacts: string;
}

/**
 * Serialises the entries once. The objects are built with a fixed key order, which
 * JSON.stringify keeps; one call over the whole array is several times faster than one per
 * entry or a hand-written writer.
 */
export function renderArtifacts(state: GroupState): RenderedState {
  return { group: state.group, registry: state.registry, count: state.artifacts.length, artifacts: JSON.stringify(state.artifacts) };
}

const head = (r: RenderedState, version?: number): string =>
  `{"group":${JSON.stringify(r.group)},"registry":${JSON.stringify(r.registry)},${version === undefined ? '' : `"version":${version},`}"artifacts":`;

/** The published document of a rendered state: what `renderState` gives, without rendering again. */
export function stateDocument(r: RenderedState, version?: number): Buffer {
  return Buffer.from(`${head(r, version)}${r.artifacts}}`);
}

/** The content digest of a rendered state (the document without a version), hashed piecewise. */
export function renderedContentDigest(r: RenderedState): string {
  return `sha256:${createHash('sha256').update(head(r)).update(r.artifacts).update('}').digest('hex')}`;
}

/**
 * The exact bytes that are published (and that `satellite list --json` prints): canonical,
 * with a fixed key order.
 */
export function renderState(state: GroupState, version?: number): string {
  const r = renderArtifacts(state);
  return `${head(r, version)}${r.artifacts}}`;
}

/** Identifies the content of a state regardless of its version number. */
export function contentDigest(state: GroupState): string {
  return renderedContentDigest(renderArtifacts(state));
}
