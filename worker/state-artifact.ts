import { createHash } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import { tar } from '../core/oci/tar.js';

// How a rendered state is packaged as an OCI artifact. Two layouts:
// - "oci" (default): an OCI 1.1 artifact exactly as `oras push --artifact-type` makes it:
//   empty config, the JSON as one layer titled artifacts.json, a created annotation.
// - "harbor-satellite": what the open-source Harbor Satellite's ground control pushes with
//   crane: a one-layer Docker image whose layer is a tar.gz holding artifacts.json.

export const STATE_ARTIFACT_TYPE = 'application/vnd.satellite-for-harbor.state.v1+json';
export const STATE_LAYER_TYPE = 'application/vnd.satellite-for-harbor.state.layer.v1+json';
export const STATE_FILE = 'artifacts.json';

export type StateLayout = 'oci' | 'harbor-satellite';

export interface BlobBytes {
  digest: string;
  bytes: Buffer;
}

export interface PackagedState {
  manifest: Buffer;
  mediaType: string;
  digest: string;
  blobs: BlobBytes[];
}

const sha256 = (b: Uint8Array) => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const blob = (bytes: Buffer): BlobBytes => ({ digest: sha256(bytes), bytes });

/** RFC 3339 in whole seconds, UTC: what oras writes for org.opencontainers.image.created. */
export function createdStamp(at: Date): string {
  return at.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/**
 * The oras-compatible artifact. Key order follows the OCI Go structs oras marshals
 * (schemaVersion, mediaType, artifactType, config, layers, annotations; descriptor: mediaType,
 * digest, size, annotations, data), so the bytes, and the digest, are the ones oras produces
 * for `oras push --artifact-type T --annotation org.opencontainers.image.created=C ref artifacts.json:L`.
 */
function ociArtifact(json: Buffer, created: Date): PackagedState {
  const empty = blob(Buffer.from('{}'));
  const layer = blob(json);
  const manifest = Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    artifactType: STATE_ARTIFACT_TYPE,
    config: { mediaType: 'application/vnd.oci.empty.v1+json', digest: empty.digest, size: 2, data: 'e30=' },
    layers: [{ mediaType: STATE_LAYER_TYPE, digest: layer.digest, size: json.length, annotations: { 'org.opencontainers.image.title': STATE_FILE } }],
    annotations: { 'org.opencontainers.image.created': createdStamp(created) },
  }));
  return { manifest, mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: sha256(manifest), blobs: [empty, layer] };
}

/** crane's shape: Docker schema 2 image, one gzip'd tar layer, a config with its diff_id. */
function harborSatelliteImage(json: Buffer, created: Date): PackagedState {
  const raw = tar([{ name: STATE_FILE, content: json }]);
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

export function packageState(layout: StateLayout, json: Buffer, created: Date): PackagedState {
  return layout === 'oci' ? ociArtifact(json, created) : harborSatelliteImage(json, created);
}

/** Where a group's state lives: <project>/group-state/<group>/state. */
export function stateRepository(project: string, group: string): string {
  return `${project}/group-state/${group}/state`;
}

/** The immutable tag of a version (both layouts: satellites of either kind read `latest`). */
export function versionTag(version: number): string {
  return `v${version}`;
}
