import { gzipSync } from 'node:zlib';
import { tar } from '../../oci/tar.js';
import { blob, createdStamp, sha256, type CompressedState, type PackagedState } from '../artifact.js';
import type { StateLayout } from './layout.js';

// The "harbor-satellite" layout: what the open-source Harbor Satellite's ground control
// pushes with crane, a one-layer Docker image whose layer is a tar.gz holding artifacts.json.
// Its satellites pull every entry by tag and stop at the first failure, and they learn of a
// deletion by the entry's absence (they ignore `deleted`): tombstones and signature entries
// are left out. They list artifacts through Harbor's API, so their robots also read
// (what their ground control grants), and their ground control tags each state with a unix
// time too.

/** The file Harbor Satellite's satellites read from the layer. */
export const HARBOR_SATELLITE_FILE = 'artifacts.json';

/** crane's shape: Docker schema 2 image, one gzip'd tar layer, a config with its diff_id. */
function harborSatelliteImage(json: Buffer | CompressedState, created: Date): PackagedState {
  if (!Buffer.isBuffer(json)) throw new Error('the harbor-satellite layout packages the JSON itself');
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

export const harborSatelliteLayout: StateLayout = {
  name: 'harbor-satellite',
  leavesOut: (entry) => entry.deleted === true || entry.type === 'SIGNATURE',
  deltas: false,
  package: (json, created) => harborSatelliteImage(json, created),
  extraTags: (created) => [String(Math.floor(created.getTime() / 1000))],
  robotAccess: [
    { resource: 'repository', action: 'pull' },
    { resource: 'repository', action: 'read' },
    { resource: 'artifact', action: 'read' },
  ],
  harborSatellites: true,
};
