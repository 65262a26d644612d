import { gunzipCapped } from '../http/bounded-body.js';
import type { Descriptor } from '../oci/manifest.js';

// How a state is carried in its OCI artifact (the "oci" layout), for the worker that writes
// it and the agent that reads it:
//
//   artifactType  application/vnd.satellite-for-harbor.state.v1+json
//   layers[0]     the whole state JSON, gzip'd, titled artifacts.json.gz; its annotation
//                 STATE_DIGEST_ANNOTATION is the sha256 of the uncompressed JSON
//   layers[1]     optional: the difference from the previous version, gzip'd; annotation
//                 DELTA_BASE_ANNOTATION names the uncompressed digest of the state it applies to
//
// Both layers are named by digest in the signed manifest, so a delta needs no signature of
// its own: a reader that rebuilds the state from its copy of the previous version and the
// delta checks the result against the full layer's STATE_DIGEST_ANNOTATION.
// States published before compression carry one plain layer (STATE_LAYER_PLAIN_TYPE).

export const STATE_ARTIFACT_TYPE = 'application/vnd.satellite-for-harbor.state.v1+json';
/** The uncompressed layer of the first releases; still read. */
export const STATE_LAYER_PLAIN_TYPE = 'application/vnd.satellite-for-harbor.state.layer.v1+json';
export const STATE_LAYER_TYPE = 'application/vnd.satellite-for-harbor.state.layer.v1.json+gzip';
export const STATE_DELTA_TYPE = 'application/vnd.satellite-for-harbor.state.delta.v1.json+gzip';
export const STATE_FILE = 'artifacts.json.gz';
export const DELTA_FILE = 'artifacts.delta.json.gz';
export const STATE_DIGEST_ANNOTATION = 'vnd.satellite-for-harbor.state.digest';
export const DELTA_BASE_ANNOTATION = 'vnd.satellite-for-harbor.state.delta.base';
export const DELTA_BASE_VERSION_ANNOTATION = 'vnd.satellite-for-harbor.state.delta.base-version';
export const TITLE_ANNOTATION = 'org.opencontainers.image.title';

export interface StateLayers {
  full: Descriptor;
  /** The uncompressed JSON's digest, when the manifest names it. */
  stateDigest: string | undefined;
  delta?: { descriptor: Descriptor; baseDigest: string; baseVersion: number | undefined };
}

/** Finds the full and delta layers of a state manifest; undefined when it is not one. */
export function stateLayers(manifest: { artifactType?: unknown; layers?: unknown }): StateLayers | undefined {
  if (!Array.isArray(manifest.layers)) return undefined;
  const layers = manifest.layers as Descriptor[];
  const full = layers.find((l) => l?.mediaType === STATE_LAYER_TYPE || l?.mediaType === STATE_LAYER_PLAIN_TYPE);
  if (!full || typeof full.digest !== 'string') return undefined;
  const out: StateLayers = { full, stateDigest: full.annotations?.[STATE_DIGEST_ANNOTATION] };
  const delta = layers.find((l) => l?.mediaType === STATE_DELTA_TYPE);
  const base = delta?.annotations?.[DELTA_BASE_ANNOTATION];
  if (delta && typeof delta.digest === 'string' && base) {
    const v = Number(delta.annotations?.[DELTA_BASE_VERSION_ANNOTATION]);
    out.delta = { descriptor: delta, baseDigest: base, baseVersion: Number.isSafeInteger(v) ? v : undefined };
  }
  return out;
}

/**
 * The most a state may weigh, as JSON and as the layer that carries it, unless configured
 * otherwise (the agent's maxStateMb, the service's STATE_MAX_MB): 128 MiB holds 100,000
 * entries of four-platform indexes (~1 KB each as JSON, ~100 MB; ~20 MB gzip'd) with room,
 * and single-platform images (~0.3 KB each) several times over.
 */
export const DEFAULT_STATE_MAX_MB = 128;

/**
 * The JSON text of a full or delta layer's bytes, by its media type. A gzip'd layer
 * decompresses to at most `cap.limit` bytes (a state's cap holds for its JSON, not only
 * for what travelled); `cap.url` names where the bytes came from in the error.
 */
export function layerText(bytes: Buffer, mediaType: string, cap = { limit: DEFAULT_STATE_MAX_MB * 1024 * 1024, url: 'a state layer' }): string {
  return (mediaType.endsWith('+gzip') ? gunzipCapped(bytes, { ...cap, what: 'a state' }) : bytes).toString('utf8');
}
