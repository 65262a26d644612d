import { createHash } from 'node:crypto';
import { gzipSync } from 'node:zlib';

// What every state layout packages into and where a group's state goes; how each layout
// packages a version is its own module (layouts/).

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

/** The difference from the previous version: the second layer of a layout with deltas ("oci"). */
export interface PackagedDelta {
  json: Buffer;
  baseDigest: string;
  baseVersion: number;
}

export const sha256 = (b: Uint8Array) => `sha256:${createHash('sha256').update(b).digest('hex')}`;
export const blob = (bytes: Buffer): BlobBytes => ({ digest: sha256(bytes), bytes });

/** RFC 3339 in whole seconds, UTC: what oras writes for org.opencontainers.image.created. */
export function createdStamp(at: Date): string {
  return at.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** gzip as the state layers use it: level 6, no name, mtime 0 (node's defaults), so the same JSON gives the same bytes. */
export function gzipState(json: Buffer): Buffer {
  return gzipSync(json, { level: 6 });
}

/** Where a group's state lives: <project>/group-state/<group>/state. */
export function stateRepository(project: string, group: string): string {
  return `${project}/group-state/${group}/state`;
}

/** The immutable tag of a version, in every layout (satellites of every kind read `latest`). */
export function versionTag(version: number): string {
  return `v${version}`;
}
