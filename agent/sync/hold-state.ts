import { signatureImage, signatureTag } from '../../core/cosign/signature-image.js';
import { SIGNATURE_ANNOTATION, SIMPLE_SIGNING_MEDIA_TYPE } from '../../core/cosign/simple-signing.js';
import { parseManifest } from '../../core/oci/manifest.js';
import type { FetchedManifest, RegistryClient } from '../../core/registry/registry-client.js';
import type { AgentGroup } from '../config/config.js';
import { CorruptContentError } from '../store/content-store.js';
import type { AppliedState } from '../store/state-files.js';
import type { PassBytes, SyncContext } from './context.js';
import { StateRefusedError } from './state-reader.js';

// Part of step 2 (verify.ts): a state that passed its checks is kept in the content store as
// the registry holds it, not only as the JSON applied: its manifest, the layer it was read
// from (the delta or the whole state), its cosign signature's manifest, config and payloads.
// So `agent export` writes an archive another device verifies exactly as it verifies the
// registry, and a site's peers can be served the signed state. The collection (agent.ts)
// keeps what holdState returns for as long as the state is the applied one.
//
// Nothing is downloaded twice: the reads of the check are recorded (recordReads) and written
// from memory (each checked against its digest again by the store). The signature's config,
// which the check does not read, is rebuilt from the payloads as cosign writes it, and
// fetched only when that does not give its digest.

export interface RecordedReads {
  /** Manifests and blobs read whole, by digest. */
  bytes: Map<string, Buffer>;
  /** Manifests read by tag, by "<repository>:<tag>". */
  tags: Map<string, FetchedManifest>;
}

/** `client`, with what its getManifest and getBlob read recorded in `reads`. */
export function recordReads<T extends Pick<RegistryClient, 'getManifest' | 'getBlob'>>(client: T): { client: T; reads: RecordedReads } {
  const reads: RecordedReads = { bytes: new Map(), tags: new Map() };
  const proxy = new Proxy(client, {
    get(target, prop) {
      if (prop === 'getManifest') {
        return async (repository: string, reference: string) => {
          const m = await target.getManifest(repository, reference);
          if (m) {
            reads.bytes.set(m.digest, m.bytes);
            reads.tags.set(`${repository}:${reference}`, m);
          }
          return m;
        };
      }
      if (prop === 'getBlob') {
        return async (repository: string, digest: string, ...rest: [number?, string?]) => {
          const b = await target.getBlob(repository, digest, ...rest);
          reads.bytes.set(digest, b);
          return b;
        };
      }
      const v = Reflect.get(target, prop, target) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
  return { client: proxy, reads };
}

export async function holdState(ctx: SyncContext, g: AgentGroup, client: RegistryClient, digest: string, reads: RecordedReads, totals: PassBytes): Promise<NonNullable<AppliedState['held']>> {
  const manifest = reads.bytes.get(digest);
  if (!manifest) throw new Error(`the state manifest ${digest} was verified but not recorded`);
  await ctx.store.write(digest, manifest);
  const blobs: string[] = [];
  // The layer the state was read from; the other (the whole state, after a delta) is not fetched.
  for (const b of parseManifest(manifest, undefined).blobs) {
    const bytes = reads.bytes.get(b.digest);
    if (!bytes) continue;
    await ctx.store.write(b.digest, bytes);
    blobs.push(b.digest);
  }
  let sig = reads.tags.get(`${g.state}:${signatureTag(digest)}`);
  if (!sig) {
    sig = await client.getManifest(g.state, signatureTag(digest));
    if (sig) totals.bytes += sig.bytes.length;
  }
  // Verified a moment ago; gone now means the registry changed under us: try again next pass.
  if (!sig) throw new StateRefusedError('unsigned', `the signature of ${g.state}@${digest} went away while the state was being applied`);
  await ctx.store.write(sig.digest, sig.bytes);
  const doc = JSON.parse(sig.bytes.toString('utf8')) as { layers?: { mediaType?: string; digest?: string; annotations?: Record<string, string> }[] };
  const payloads = (doc.layers ?? []).filter((l) => l.mediaType === SIMPLE_SIGNING_MEDIA_TYPE && l.digest && reads.bytes.has(l.digest))
    .map((l) => ({ payload: reads.bytes.get(l.digest!)!, signatureB64: l.annotations?.[SIGNATURE_ANNOTATION] ?? '' }));
  const rebuiltConfig = signatureImage(payloads).blobs[0]!;
  for (const b of parseManifest(sig.bytes, sig.mediaType || undefined).blobs) {
    const known = reads.bytes.get(b.digest);
    try {
      if (known) await ctx.store.write(b.digest, known);
      else if (!(await ctx.store.has(b.digest, b.size))) {
        const rebuilt = await ctx.store.write(b.digest, rebuiltConfig).then(() => true, () => false);
        if (!rebuilt) totals.bytes += (await ctx.store.ingest(b.digest, b.size, (offset) => client.openBlob(g.state, b.digest, offset))).downloaded;
      }
    } catch (err) {
      if (err instanceof CorruptContentError) throw new StateRefusedError('digest-mismatch', `the signature of ${g.state}@${digest}: ${err.message}`);
      throw err;
    }
    blobs.push(b.digest);
  }
  return { signature: sig.digest, blobs };
}
