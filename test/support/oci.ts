import { createHash, randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { tar } from '../../core/oci/tar.js';

// Builders for real OCI content: ustar archives, gzip'd layers, image configs, manifests,
// indexes, and OCI image layouts on disk that skopeo can copy from.

export const sha256 = (b: Uint8Array): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;

export interface Blob {
  mediaType: string;
  bytes: Buffer;
  digest: string;
  size: number;
}

export function blob(mediaType: string, bytes: Buffer): Blob {
  return { mediaType, bytes, digest: sha256(bytes), size: bytes.length };
}

export const descriptor = (b: Blob, extra: Record<string, unknown> = {}) => ({ mediaType: b.mediaType, digest: b.digest, size: b.size, ...extra });

export interface Layer extends Blob {
  diffId: string;
}

export function layer(files: { name: string; content: Buffer }[]): Layer {
  const raw = tar(files);
  const gz = gzipSync(raw);
  return { ...blob('application/vnd.oci.image.layer.v1.tar+gzip', gz), diffId: sha256(raw) };
}

export function randomLayer(bytes = 2048): Layer {
  return layer([{ name: `data-${randomBytes(4).toString('hex')}.bin`, content: randomBytes(bytes) }]);
}

export interface Image {
  manifest: Blob;
  config: Blob;
  layers: Blob[];
}

export function image(opts: { architecture?: string; os?: string; variant?: string; layers?: Layer[] } = {}): Image {
  const layers = opts.layers ?? [randomLayer(), randomLayer(), randomLayer()];
  const config = blob('application/vnd.oci.image.config.v1+json', Buffer.from(JSON.stringify({
    architecture: opts.architecture ?? 'amd64',
    os: opts.os ?? 'linux',
    ...(opts.variant ? { variant: opts.variant } : {}),
    config: { Cmd: ['/bin/sh'] },
    rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId) },
  })));
  const manifest = blob('application/vnd.oci.image.manifest.v1+json', Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: descriptor(config),
    layers: layers.map((l) => descriptor(l)),
  })));
  return { manifest, config, layers };
}

export interface Index {
  manifest: Blob;
  children: Image[];
}

export function index(platforms: { architecture: string; os: string; variant?: string }[]): Index {
  const children = platforms.map((p) => image({ architecture: p.architecture, os: p.os, ...(p.variant ? { variant: p.variant } : {}) }));
  const manifest = blob('application/vnd.oci.image.index.v1+json', Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.index.v1+json',
    manifests: children.map((c, i) => descriptor(c.manifest, { platform: platforms[i] })),
  })));
  return { manifest, children };
}

export const EMPTY_CONFIG = blob('application/vnd.oci.empty.v1+json', Buffer.from('{}'));

/** An OCI 1.1 artifact: artifactType set, empty config, one layer. */
export function artifact(artifactType: string, content: Buffer, layerType: string, subject?: Blob): Image {
  const payload = blob(layerType, content);
  const manifest = blob('application/vnd.oci.image.manifest.v1+json', Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    artifactType,
    config: descriptor(EMPTY_CONFIG),
    layers: [descriptor(payload)],
    ...(subject ? { subject: descriptor(subject) } : {}),
  })));
  return { manifest, config: EMPTY_CONFIG, layers: [payload] };
}

/** A cosign signature as `cosign sign` pushes it: tag sha256-<hex>.sig, simple-signing layer. */
export function cosignSignature(signed: Blob, reference: string): Image {
  const payload = blob('application/vnd.dev.cosign.simplesigning.v1+json', Buffer.from(JSON.stringify({
    critical: { identity: { 'docker-reference': reference }, image: { 'docker-manifest-digest': signed.digest }, type: 'cosign container image signature' },
    optional: null,
  })));
  const config = blob('application/vnd.oci.image.config.v1+json', Buffer.from(JSON.stringify({ architecture: '', os: '', config: {}, rootfs: { type: 'layers', diff_ids: [payload.digest] } })));
  const manifest = blob('application/vnd.oci.image.manifest.v1+json', Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: descriptor(config),
    layers: [descriptor(payload, { annotations: { 'dev.cosignproject.cosign/signature': randomBytes(70).toString('base64') } })],
  })));
  return { manifest, config, layers: [payload] };
}

export const signatureTag = (digest: string): string => `${digest.replace(':', '-')}.sig`;

/** Writes an OCI image layout holding one image or index under `ref`. */
export async function writeLayout(dir: string, ref: string, top: Blob, blobs: Blob[]): Promise<void> {
  await mkdir(join(dir, 'blobs', 'sha256'), { recursive: true });
  await writeFile(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  for (const b of [top, ...blobs]) await writeFile(join(dir, 'blobs', 'sha256', b.digest.slice(7)), b.bytes);
  await writeFile(join(dir, 'index.json'), JSON.stringify({
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.index.v1+json',
    manifests: [descriptor(top, { annotations: { 'org.opencontainers.image.ref.name': ref } })],
  }));
}

export const imageBlobs = (i: Image): Blob[] => [i.config, ...i.layers];
export const indexBlobs = (x: Index): Blob[] => x.children.flatMap((c) => [c.manifest, ...imageBlobs(c)]);
