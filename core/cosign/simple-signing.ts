import { createHash, sign as cryptoSign, verify as cryptoVerify, type KeyObject } from 'node:crypto';

// cosign's legacy signature: a "simple signing" payload, signed with ECDSA P-256 over its
// SHA-256, the ASN.1 DER signature base64'd into the layer annotation below.

export const SIMPLE_SIGNING_MEDIA_TYPE = 'application/vnd.dev.cosign.simplesigning.v1+json';
export const SIGNATURE_ANNOTATION = 'dev.cosignproject.cosign/signature';
export const COSIGN_SIGNATURE_TYPE = 'cosign container image signature';

/**
 * The exact payload cosign writes: compact JSON, keys in this order, no tag in the
 * reference (cosign's default), `optional: null`.
 */
export function simpleSigningPayload(dockerReference: string, manifestDigest: string): Buffer {
  return Buffer.from(JSON.stringify({
    critical: {
      identity: { 'docker-reference': dockerReference },
      image: { 'docker-manifest-digest': manifestDigest },
      type: COSIGN_SIGNATURE_TYPE,
    },
    optional: null,
  }));
}

export function signPayload(key: KeyObject, payload: Buffer): string {
  return cryptoSign('sha256', payload, { key, dsaEncoding: 'der' }).toString('base64');
}

export function verifyPayloadSignature(key: KeyObject, payload: Buffer, signatureB64: string): boolean {
  const der = Buffer.from(signatureB64.replace(/\s+/g, ''), 'base64');
  try {
    return cryptoVerify('sha256', payload, { key, dsaEncoding: 'der' }, der);
  } catch {
    return false;
  }
}

export interface PayloadClaims {
  dockerReference: string;
  manifestDigest: string;
}

/** Parses a payload and checks it is a cosign image signature; undefined when it is not. */
export function readPayload(payload: Buffer): PayloadClaims | undefined {
  try {
    const doc = JSON.parse(payload.toString('utf8')) as {
      critical?: { identity?: { 'docker-reference'?: unknown }; image?: { 'docker-manifest-digest'?: unknown }; type?: unknown };
    };
    const c = doc.critical;
    if (c?.type !== COSIGN_SIGNATURE_TYPE) return undefined;
    const digest = c.image?.['docker-manifest-digest'];
    const ref = c.identity?.['docker-reference'];
    if (typeof digest !== 'string' || typeof ref !== 'string') return undefined;
    return { manifestDigest: digest, dockerReference: ref };
  } catch {
    return undefined;
  }
}

/** Strips a tag or digest from a reference: "host/repo:tag" → "host/repo". */
export function repositoryOf(reference: string): string {
  const at = reference.indexOf('@');
  const noDigest = at >= 0 ? reference.slice(0, at) : reference;
  const lastSlash = noDigest.lastIndexOf('/');
  const colon = noDigest.lastIndexOf(':');
  return colon > lastSlash ? noDigest.slice(0, colon) : noDigest;
}

/**
 * A repository without its registry host. As in the reference grammar of
 * distribution/reference, the first component is a host only when it holds a "." or a ":" or
 * is "localhost"; "other/library/app" is the path other/library/app, not library/app on host
 * "other".
 */
function pathOf(repository: string): string {
  const slash = repository.indexOf('/');
  if (slash < 0) return repository;
  const first = repository.slice(0, slash);
  return first.includes('.') || first.includes(':') || first === 'localhost' ? repository.slice(slash + 1) : repository;
}

export type SignatureVerdict =
  | { ok: true; claims: PayloadClaims }
  | { ok: false; reason: string };

/**
 * What `cosign verify --key` checks of one signature layer: the layer's bytes match its
 * digest, the signature over them verifies with the key, the payload is a cosign image
 * signature, it claims exactly `manifestDigest`, and (when given) its identity names
 * `repository` (registry host and path, exactly) or `repositoryAnyHost` (the path, under
 * any registry host).
 */
export function verifySignatureLayer(input: {
  key: KeyObject;
  payload: Buffer;
  payloadDigest?: string;
  signatureB64: string | undefined;
  manifestDigest: string;
  repository?: string;
  repositoryAnyHost?: string;
}): SignatureVerdict {
  if (input.payloadDigest !== undefined) {
    const actual = `sha256:${createHash('sha256').update(input.payload).digest('hex')}`;
    if (actual !== input.payloadDigest) return { ok: false, reason: 'payload bytes do not match the layer digest' };
  }
  if (!input.signatureB64) return { ok: false, reason: 'layer has no signature annotation' };
  if (!verifyPayloadSignature(input.key, input.payload, input.signatureB64)) {
    return { ok: false, reason: 'signature does not verify with the given key' };
  }
  const claims = readPayload(input.payload);
  if (!claims) return { ok: false, reason: 'payload is not a cosign container image signature' };
  if (claims.manifestDigest !== input.manifestDigest) {
    return { ok: false, reason: `payload claims ${claims.manifestDigest}, not ${input.manifestDigest}` };
  }
  if (input.repository !== undefined && repositoryOf(claims.dockerReference) !== input.repository) {
    return { ok: false, reason: `payload identity ${claims.dockerReference} does not name ${input.repository}` };
  }
  if (input.repositoryAnyHost !== undefined && pathOf(repositoryOf(claims.dockerReference)) !== input.repositoryAnyHost) {
    return { ok: false, reason: `signature names ${claims.dockerReference}` };
  }
  return { ok: true, claims };
}
