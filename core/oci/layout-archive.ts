// An air-gapped site's archive (`satellite export`, `satellite agent import`): one OCI image
// layout (image-spec image-layout.md: `oci-layout`, `index.json`, `blobs/<alg>/<hex>`) in a
// tar. Its index.json names every top-level manifest with org.opencontainers.image.ref.name
// (so skopeo, umoci and containerd can pick one) and says what each is for this project.

export const REF_NAME_ANNOTATION = 'org.opencontainers.image.ref.name';
/** What an index.json entry is: the signed state, its cosign signature, or an image the state lists. */
export const ROLE_ANNOTATION = 'vnd.satellite-for-harbor.export.role';
export type ArchiveRole = 'state' | 'signature' | 'image';

export const OCI_LAYOUT = JSON.stringify({ imageLayoutVersion: '1.0.0' });

/** The path of a blob in the layout. */
export function blobPath(digest: string): string {
  const [alg, hex] = digest.split(':');
  return `blobs/${alg}/${hex}`;
}

export interface LayoutEntry {
  mediaType: string;
  digest: string;
  size: number;
  annotations: Record<string, string>;
}
