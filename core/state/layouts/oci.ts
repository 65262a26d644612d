import {
  DELTA_BASE_ANNOTATION, DELTA_BASE_VERSION_ANNOTATION, DELTA_FILE, STATE_ARTIFACT_TYPE, STATE_DELTA_TYPE,
  STATE_DIGEST_ANNOTATION, STATE_FILE, STATE_LAYER_TYPE, TITLE_ANNOTATION,
} from '../format.js';
import { blob, createdStamp, gzipState, sha256, type BlobBytes, type CompressedState, type PackagedDelta, type PackagedState } from '../artifact.js';
import type { StateLayout } from './layout.js';

// The "oci" layout (the default, what our own agent reads): an OCI 1.1 artifact exactly as
// `oras push --artifact-type` makes it from files: empty config, the state JSON gzip'd as
// artifacts.json.gz, and, when the previous version is known, the delta from it as a second
// layer (core/state/format.ts describes both), a created annotation. Every entry is listed,
// tombstones and signatures included; robots only pull.

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

export const ociLayout: StateLayout = {
  name: 'oci',
  deltas: true,
  package: ociArtifact,
  extraTags: () => [],
  robotAccess: [{ resource: 'repository', action: 'pull' }],
  harborSatellites: false,
};
