import { createHash } from 'node:crypto';
import { MANIFEST_LIMIT } from '../http/bounded-body.js';
import type { RegistryReader } from '../registry/registry-client.js';
import { SIGNATURE_ANNOTATION, SIMPLE_SIGNING_MEDIA_TYPE } from './simple-signing.js';

// The ".sig" image cosign attaches to a manifest: tag sha256-<hex>.sig in the same
// repository, an OCI image manifest whose layers are simple-signing payloads, each with its
// signature in the dev.cosignproject.cosign/signature annotation.

const sha256 = (b: Uint8Array) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

export interface SignatureLayer {
  payload: Buffer;
  signatureB64: string;
}

export function signatureTag(digest: string): string {
  return `${digest.replace(':', '-')}.sig`;
}

/** The manifest, config and blobs of a signature image holding `layers`, in that order. */
export function signatureImage(layers: SignatureLayer[]): { manifest: Buffer; blobs: Buffer[] } {
  const zero = '0001-01-01T00:00:00Z';
  const config = Buffer.from(JSON.stringify({
    architecture: '',
    created: zero,
    history: [{ created: zero }],
    os: '',
    rootfs: { type: 'layers', diff_ids: layers.map((l) => sha256(l.payload)) },
    config: {},
  }));
  const manifest = Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', size: config.length, digest: sha256(config) },
    layers: layers.map((l) => ({
      mediaType: SIMPLE_SIGNING_MEDIA_TYPE,
      size: l.payload.length,
      digest: sha256(l.payload),
      annotations: { [SIGNATURE_ANNOTATION]: l.signatureB64 },
    })),
  }));
  return { manifest, blobs: [config, ...layers.map((l) => l.payload)] };
}

interface ManifestDoc {
  layers?: { mediaType?: string; digest?: string; annotations?: Record<string, string> }[];
}

/** Reads every signature layer attached to `digest` (none when there is no .sig). */
export async function readSignatureLayers(client: RegistryReader, repository: string, digest: string): Promise<(SignatureLayer & { digest: string })[]> {
  const sig = await client.getManifest(repository, signatureTag(digest));
  if (!sig) return [];
  const doc = JSON.parse(sig.bytes.toString('utf8')) as ManifestDoc;
  const out: (SignatureLayer & { digest: string })[] = [];
  for (const layer of doc.layers ?? []) {
    if (layer.mediaType !== SIMPLE_SIGNING_MEDIA_TYPE || !layer.digest) continue;
    const payload = await client.getBlob(repository, layer.digest, MANIFEST_LIMIT, 'a signature payload');
    out.push({ payload, digest: layer.digest, signatureB64: layer.annotations?.[SIGNATURE_ANNOTATION] ?? '' });
  }
  return out;
}
