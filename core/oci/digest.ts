import { createHash } from 'node:crypto';

// OCI image-spec "Digests": algorithm ":" encoded. Only the registered algorithms are
// accepted, with their exact encoded lengths, lower-case hex.
const DIGEST = /^(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$/;

export type DigestAlgorithm = 'sha256' | 'sha512';

export function isDigest(value: string): boolean {
  return DIGEST.test(value);
}

export function digestAlgorithm(digest: string): DigestAlgorithm {
  return digest.startsWith('sha512:') ? 'sha512' : 'sha256';
}

export function computeDigest(bytes: Uint8Array, algorithm: DigestAlgorithm = 'sha256'): string {
  return `${algorithm}:${createHash(algorithm).update(bytes).digest('hex')}`;
}

/** cosign's tag for the signature of `digest`: "sha256-<hex>.sig". */
const COSIGN_TAG = /^(sha256|sha512)-([a-f0-9]{64}|[a-f0-9]{128})\.(sig|att|sbom)$/;

export function cosignTagTarget(tag: string): { digest: string; kind: 'sig' | 'att' | 'sbom' } | undefined {
  const m = COSIGN_TAG.exec(tag);
  if (!m) return undefined;
  const digest = `${m[1]}:${m[2]}`;
  return isDigest(digest) ? { digest, kind: m[3] as 'sig' | 'att' | 'sbom' } : undefined;
}
