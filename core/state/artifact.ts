import { createHash } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import { tar } from '../oci/tar.js';
import {
  DELTA_BASE_ANNOTATION, DELTA_BASE_VERSION_ANNOTATION, DELTA_FILE, STATE_ARTIFACT_TYPE, STATE_DELTA_TYPE,
  STATE_DIGEST_ANNOTATION, STATE_FILE, STATE_LAYER_TYPE, TITLE_ANNOTATION,
} from './format.js';

// How a rendered state is packaged as an OCI artifact. Two layouts:
// - "oci" (default): an OCI 1.1 artifact exactly as `oras push --artifact-type` makes it
//   from files: empty config, the state JSON gzip'd as artifacts.json.gz, and, when the
//   previous version is known, the delta from it as a second layer (core/state/format.ts
//   describes both), a created annotation.
// - "harbor-satellite": what the open-source Harbor Satellite's ground control pushes with
//   crane: a one-layer Docker image whose layer is a tar.gz holding artifacts.json.

export type StateLayout = 'oci' | 'harbor-satellite';

export interface BlobBytes {
  digest: string;
  bytes: Buffer;
  /** The same bytes in every version (the empty config): likely in the registry already. */
  shared?: boolean;
}

export interface PackagedState {
  manifest: Buffer;
  mediaType: string;
  digest: string;
  blobs: BlobBytes[];
  /** Made by this attempt: its blobs but the shared ones cannot be in the registry yet. */
  fresh?: boolean;
}

/** A full layer already compressed: its gzip bytes and the uncompressed document's digest. */
export interface CompressedState {
  gzip: Buffer;
  digest: string;
}

/** The difference from the previous version, for the second layer of the "oci" layout. */
export interface PackagedDelta {
  json: Buffer;
  baseDigest: string;
  baseVersion: number;
}

const sha256 = (b: Uint8Array) => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const blob = (bytes: Buffer): BlobBytes => ({ digest: sha256(bytes), bytes });

/** RFC 3339 in whole seconds, UTC: what oras writes for org.opencontainers.image.created. */
export function createdStamp(at: Date): string {
  return at.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** gzip as the state layers use it: level 6, no name, mtime 0 (node's defaults), so the same JSON gives the same bytes. */
export function gzipState(json: Buffer): Buffer {
  return gzipSync(json, { level: 6 });
}

/**
 * The oras-compatible artifact. Key order follows the OCI Go structs oras marshals
 * (schemaVersion, mediaType, artifactType, config, layers, annotations; descriptor: mediaType,
 * digest, size, annotations, data), and annotation keys are sorted as Go marshals maps, so the
 * bytes, and the digest, are the ones oras produces for `oras push --artifact-type T
 * --annotation-file A ref artifacts.json.gz:L [artifacts.delta.json.gz:D]` with the same files.
 */
function ociArtifact(json: Buffer | CompressedState, created: Date, delta: PackagedDelta | undefined): PackagedState {
  const empty: BlobBytes = { ...blob(Buffer.from('{}')), shared: true };
  const full = blob(Buffer.isBuffer(json) ? gzipState(json) : json.gzip);
  const layers: object[] = [{
    mediaType: STATE_LAYER_TYPE, digest: full.digest, size: full.bytes.length,
    annotations: ociLayerAnnotations(STATE_FILE, { [STATE_DIGEST_ANNOTATION]: Buffer.isBuffer(json) ? sha256(json) : json.digest }),
  }];
  const blobs = [empty, full];
  if (delta) {
    const d = blob(gzipState(delta.json));
    layers.push({
      mediaType: STATE_DELTA_TYPE, digest: d.digest, size: d.bytes.length,
      annotations: ociLayerAnnotations(DELTA_FILE, {
        [DELTA_BASE_ANNOTATION]: delta.baseDigest,
        [DELTA_BASE_VERSION_ANNOTATION]: String(delta.baseVersion),
      }),
    });
    blobs.push(d);
  }
  const manifest = Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    artifactType: STATE_ARTIFACT_TYPE,
    config: { mediaType: 'application/vnd.oci.empty.v1+json', digest: empty.digest, size: 2, data: 'e30=' },
    layers,
    annotations: { 'org.opencontainers.image.created': createdStamp(created) },
  }));
  return { manifest, mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: sha256(manifest), blobs };
}

/** A layer's annotations: its title and `extra`, keys in Go's (sorted) order. */
export function ociLayerAnnotations(title: string, extra: Record<string, string>): Record<string, string> {
  const all: Record<string, string> = { ...extra, [TITLE_ANNOTATION]: title };
  return Object.fromEntries(Object.keys(all).sort().map((k) => [k, all[k]!]));
}

/** The file Harbor Satellite's satellites read from the layer. */
export const HARBOR_SATELLITE_FILE = 'artifacts.json';

/** crane's shape: Docker schema 2 image, one gzip'd tar layer, a config with its diff_id. */
function harborSatelliteImage(json: Buffer, created: Date): PackagedState {
  const raw = tar([{ name: HARBOR_SATELLITE_FILE, content: json }]);
  const layer = blob(gzipSync(raw)); // node writes mtime 0 and no name: deterministic
  const config = blob(Buffer.from(JSON.stringify({
    architecture: '',
    created: createdStamp(created),
    os: '',
    rootfs: { type: 'layers', diff_ids: [sha256(raw)] },
    config: {},
  })));
  const manifest = Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: 'application/vnd.docker.distribution.manifest.v2+json',
    config: { mediaType: 'application/vnd.docker.container.image.v1+json', size: config.bytes.length, digest: config.digest },
    layers: [{ mediaType: 'application/vnd.docker.image.rootfs.diff.tar.gzip', size: layer.bytes.length, digest: layer.digest }],
  }));
  return { manifest, mediaType: 'application/vnd.docker.distribution.manifest.v2+json', digest: sha256(manifest), blobs: [config, layer] };
}

/** The package of a version; `delta` is used by the "oci" layout only. */
export function packageState(layout: StateLayout, json: Buffer | CompressedState, created: Date, delta?: PackagedDelta): PackagedState {
  if (layout === 'oci') return ociArtifact(json, created, delta);
  if (!Buffer.isBuffer(json)) throw new Error('the harbor-satellite layout packages the JSON itself');
  return harborSatelliteImage(json, created);
}

/** Where a group's state lives: <project>/group-state/<group>/state. */
export function stateRepository(project: string, group: string): string {
  return `${project}/group-state/${group}/state`;
}

/** The immutable tag of a version (both layouts: satellites of either kind read `latest`). */
export function versionTag(version: number): string {
  return `v${version}`;
}
