// Media types from the OCI image spec, Docker's image manifest v2 schema 2, and the
// artifacts Harbor knows (cosign, helm, SBOMs).

export const MediaType = {
  OciManifest: 'application/vnd.oci.image.manifest.v1+json',
  OciIndex: 'application/vnd.oci.image.index.v1+json',
  DockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  DockerManifestList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  DockerSchema1: 'application/vnd.docker.distribution.manifest.v1+json',
  DockerSchema1Signed: 'application/vnd.docker.distribution.manifest.v1+prettyjws',
  OciImageConfig: 'application/vnd.oci.image.config.v1+json',
  DockerImageConfig: 'application/vnd.docker.container.image.v1+json',
  OciEmpty: 'application/vnd.oci.empty.v1+json',
  CosignSimpleSigning: 'application/vnd.dev.cosign.simplesigning.v1+json',
  SigstoreBundlePrefix: 'application/vnd.dev.sigstore.bundle',
  HelmConfig: 'application/vnd.cncf.helm.config.v1+json',
} as const;

export const IMAGE_MANIFEST_TYPES: ReadonlySet<string> = new Set([MediaType.OciManifest, MediaType.DockerManifest]);
export const INDEX_TYPES: ReadonlySet<string> = new Set([MediaType.OciIndex, MediaType.DockerManifestList]);

/** The artifact types Harbor shows, and the `type` field of a state entry. */
export type ArtifactKind = 'IMAGE' | 'SIGNATURE' | 'SBOM' | 'CHART' | 'ARTIFACT';

// RFC 6838 type/subtype, with optional parameters; what a descriptor's mediaType must look like.
const MEDIA_TYPE = /^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}\/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}(\s*;.*)?$/;

export function isMediaType(value: unknown): value is string {
  return typeof value === 'string' && MEDIA_TYPE.test(value);
}

function isSbomType(t: string): boolean {
  return /spdx|cyclonedx|sbom|syft/i.test(t);
}

/**
 * Types an artifact the way Harbor's artifact processors do: by the manifest's
 * artifactType, else by its config media type, else by what its layers carry.
 */
export function classify(input: {
  manifestType: string;
  artifactType: string | undefined;
  configType: string | undefined;
  layerTypes: readonly string[];
}): ArtifactKind {
  if (INDEX_TYPES.has(input.manifestType)) return 'IMAGE';
  const declared = input.artifactType ?? input.configType ?? '';
  if (declared.startsWith(MediaType.SigstoreBundlePrefix)) return 'SIGNATURE';
  if (input.layerTypes.length > 0 && input.layerTypes.every((t) => t === MediaType.CosignSimpleSigning)) {
    return 'SIGNATURE';
  }
  if (isSbomType(declared)) return 'SBOM';
  if (declared === MediaType.HelmConfig) return 'CHART';
  if (input.artifactType === undefined && (declared === MediaType.OciImageConfig || declared === MediaType.DockerImageConfig)) {
    return 'IMAGE';
  }
  return 'ARTIFACT';
}
