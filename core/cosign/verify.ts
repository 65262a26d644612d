import type { KeyObject } from 'node:crypto';
import type { RegistryReader } from '../registry/registry-client.js';
import { readSignatureLayers } from './signature-image.js';
import { verifySignatureLayer, type SignatureVerdict } from './simple-signing.js';

// The one cosign verifier (`cosign verify --key`), for the two things this project checks
// signatures of: a group's STATE (the agent before it parses one, `satellite status` and
// `satellite verify`) and an IMAGE a state lists (the agent with verifyImages, before it
// serves it). They differ only in whose name the signature must carry.

/** Which name a signature's identity (simple signing's `docker-reference`) must carry. */
export type SignedIdentity =
  /** This registry host and repository, exactly (cosign's default check). */
  | { exactly: string }
  /** This repository under any registry host: an image may be signed under Harbor's external name. */
  | { repositoryAnyHost: string };

export interface SignatureCheck {
  verified: boolean;
  /** One verdict per signature layer found (none: no .sig is attached). */
  verdicts: SignatureVerdict[];
}

/**
 * Accepted when at least one signature attached to `digest` (cosign's .sig tag holds each as
 * a layer: one read covers them) verifies with `key`, claims this digest and, given
 * `identity`, names it.
 */
export async function verifyCosignSignatures(client: RegistryReader, repository: string, digest: string, key: KeyObject, identity?: SignedIdentity): Promise<SignatureCheck> {
  const layers = await readSignatureLayers(client, repository, digest);
  const verdicts = layers.map((l) => verifySignatureLayer({
    key, payload: l.payload, payloadDigest: l.digest, signatureB64: l.signatureB64, manifestDigest: digest,
    ...(identity && 'exactly' in identity ? { repository: identity.exactly } : {}),
    ...(identity && 'repositoryAnyHost' in identity ? { repositoryAnyHost: identity.repositoryAnyHost } : {}),
  }));
  return { verified: verdicts.some((v) => v.ok), verdicts };
}

/** A state's signature: by the group's state key, naming the state's reference exactly (`identity`: "host/repository"). */
export function verifyStateSignature(client: RegistryReader, stateRepository: string, digest: string, stateKey: KeyObject, identity: string): Promise<SignatureCheck> {
  return verifyCosignSignatures(client, stateRepository, digest, stateKey, { exactly: identity });
}

/** An image's signature: by the group's image key, naming the image's repository under any registry host. */
export function verifyImageSignature(client: RegistryReader, repository: string, digest: string, imageKey: KeyObject): Promise<SignatureCheck> {
  return verifyCosignSignatures(client, repository, digest, imageKey, { repositoryAnyHost: repository });
}
