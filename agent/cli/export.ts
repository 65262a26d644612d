import { signatureImage, signatureTag } from '../../core/cosign/signature-image.js';
import { SIGNATURE_ANNOTATION } from '../../core/cosign/simple-signing.js';
import { REF_NAME_ANNOTATION, ROLE_ANNOTATION, writeLayoutArchive, type ArchiveBlob, type ArchiveRole, type LayoutEntry } from '../../core/oci/layout-archive.js';
import { configPlatform, parseManifest, type ParsedManifest, type Platform } from '../../core/oci/manifest.js';
import { INDEX_TYPES } from '../../core/oci/media-types.js';
import { RegistryClient } from '../../core/registry/registry-client.js';
import type { VersionedState } from '../../core/state/delta.js';
import type { AgentConfig } from '../config/config.js';
import { ContentStore } from '../store/content-store.js';
import { AgentStateFiles } from '../store/state-files.js';
import { chooseChildren, isAttestation, matches } from '../sync/platform.js';
import { AGENT_VERSION } from '../version.js';

// `satellite agent export <group> -o site.tar`: the archive `satellite export` writes
// (core/oci/layout-archive.ts), made from what this agent holds instead of from Harbor: the
// signed state it applied (manifest, layer and cosign signature, kept by the sync for its
// site peers: the group's stateContent, sync/verify.ts) and every image that state lists for the chosen platforms, each blob
// once. A site gateway that holds every platform of the site can so hand an air-gapped
// neighbour (or a device that is being set up) the same archive a machine with access to
// Harbor would make; the importing agent checks it exactly as it checks Harbor's.
// Nothing is fetched but the state's own blobs the sync did not read: after a delta, the whole
// state layer (a device without the version before needs it), and the signature's config
// when it cannot be rebuilt from the payloads; from the registry, by digest, checked. Any other blob the store
// lacks fails the export, naming it, before a byte is written. The export reads the store
// and adds nothing a sync would not, so it runs beside the running agent.

export class AgentExportError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'AgentExportError';
  }
}

export interface AgentExportSummary {
  version: number;
  stateDigest: string;
  images: number;
  blobs: number;
  bytes: number;
}


/** Writes the archive of `groupName` from the store of `config`'s agent; `platforms` empty: the agent's own. */
export async function exportFromStore(config: AgentConfig, groupName: string, platforms: readonly Platform[], out: string): Promise<AgentExportSummary> {
  const group = config.groups.find((g) => g.name === groupName);
  if (!group) throw new AgentExportError(`group ${JSON.stringify(groupName)} is not in the configuration (${config.groups.map((g) => g.name).join(', ')})`);
  const files = new AgentStateFiles(config.store);
  const rec = (await files.load(AGENT_VERSION)).groups[group.name];
  const applied = rec?.applied;
  const json = applied ? await files.appliedJson(group.name) : undefined;
  if (!applied || !json) throw new AgentExportError(`the store ${config.store} holds no applied state of group ${group.name}: sync first`);
  const signature = rec.stateContent?.tags[signatureTag(applied.digest)];
  if (!signature) throw new AgentExportError(`version ${applied.version} of group ${group.name} was applied by an agent that did not keep the signed state in its store; the next version is kept (or remove ${config.store} and sync again)`);
  const state = JSON.parse(json) as VersionedState;
  const wanted = platforms.length ? platforms : config.platforms;
  const store = new ContentStore(config.store, config.timeoutMs);

  const entries: LayoutEntry[] = [];
  const blobs: ArchiveBlob[] = [];
  const seen = new Set<string>();
  /** The first blob the store lacks: the export fails naming it. */
  const need = async (digest: string, size: number | undefined, what: string): Promise<void> => {
    if (!(await store.has(digest, size))) throw new AgentExportError(`the store ${config.store} lacks ${digest} (${what}), which version ${applied.version} of group ${group.name} names; nothing written`);
  };
  const manifest = async (digest: string, what: string): Promise<ParsedManifest> => {
    await need(digest, undefined, what);
    return parseManifest(await store.read(digest), undefined, digest.startsWith('sha512:') ? 'sha512' : 'sha256');
  };
  /** A manifest and every blob it names, into the archive (once each). */
  const keep = async (repository: string, p: ParsedManifest, what: string): Promise<ParsedManifest> => {
    if (!seen.has(p.digest)) {
      seen.add(p.digest);
      blobs.push({ digest: p.digest, size: p.bytes.length, bytes: p.bytes, name: `${repository}@${p.digest}` });
    }
    for (const b of p.blobs) {
      await need(b.digest, b.size, `a blob of ${what}`);
      if (seen.has(b.digest)) continue;
      seen.add(b.digest);
      blobs.push({ digest: b.digest, size: b.size, name: `${repository}@${b.digest}`, open: async () => store.stream(b.digest, undefined, () => undefined) });
    }
    return p;
  };
  const add = async (repository: string, digest: string, what: string): Promise<ParsedManifest> => keep(repository, await manifest(digest, what), what);
  const top = (p: ParsedManifest, role: ArchiveRole, refName: string) => {
    entries.push({ mediaType: p.mediaType, digest: p.digest, size: p.bytes.length, annotations: { [REF_NAME_ANNOTATION]: refName, [ROLE_ANNOTATION]: role } });
  };

  const stateManifest = await manifest(applied.digest, `the state manifest ${group.state}@${applied.digest}`);
  for (const b of stateManifest.blobs) if (!(await store.has(b.digest, b.size))) await fetchStateBlob(config, store, group.state, b, 'the whole state layer (the sync read the version from its delta)');
  top(await keep(group.state, stateManifest, `the state manifest ${group.state}@${applied.digest}`), 'state', `${group.state}:v${applied.version}`);
  const sigManifest = await manifest(signature, `the state's signature ${group.state}:${signatureTag(applied.digest)}`);
  await signatureConfig(config, store, group.state, sigManifest);
  top(await keep(group.state, sigManifest, `the state's signature ${group.state}:${signatureTag(applied.digest)}`), 'signature', `${group.state}:${signatureTag(applied.digest)}`);

  let images = 0;
  for (const a of state.artifacts) {
    if (a.deleted) continue;
    const what = `${a.repository}@${a.digest}`;
    const p = await manifest(a.digest, what);
    if (p.children.length > 0 || INDEX_TYPES.has(p.mediaType)) {
      await keep(a.repository, p, what);
      // The index byte for byte (its digest is what the state names); of its children, the
      // ones a device of the chosen platforms takes, as the sync decides.
      for (const c of chooseChildren(wanted, p.children.filter((c) => !isAttestation(c.platform)))) {
        await add(a.repository, c.digest, `${a.repository}@${c.digest}, a child of ${a.digest}`);
      }
    } else if (a.type === 'IMAGE' && p.blobs[0] && a.tag.every((t) => !/^sha(256|512)-[a-f0-9]+\.(sig|att|sbom)$/.test(t)) && !a.subject) {
      await need(p.blobs[0].digest, p.blobs[0].size, `the config of ${what}`);
      const named = configPlatform(await store.read(p.blobs[0].digest));
      if (named && !matches(wanted, named)) continue;
      await keep(a.repository, p, what);
    } else {
      await keep(a.repository, p, what); // a signature or another artifact: whole
    }
    images++;
    for (const n of a.tag.length ? a.tag.map((t) => `${a.repository}:${t}`) : [`${a.repository}@${a.digest}`]) top(p, 'image', n);
  }
  const bytes = await writeLayoutArchive(out, entries, blobs);
  return { version: applied.version, stateDigest: applied.digest, images, blobs: blobs.length, bytes };
}

/**
 * The signature image's config, which the sync's signature check does not read (only the
 * payloads): rebuilt from the payloads as cosign writes it (core/cosign/signature-image.ts),
 * kept when that gives its digest, else fetched from the registry.
 */
async function signatureConfig(config: AgentConfig, store: ContentStore, repository: string, sig: ParsedManifest): Promise<void> {
  const cfg = sig.blobs[0];
  if (!cfg || (await store.has(cfg.digest, cfg.size))) return;
  const doc = JSON.parse(sig.bytes.toString('utf8')) as { layers?: { digest?: string; annotations?: Record<string, string> }[] };
  const layers = [];
  for (const l of doc.layers ?? []) {
    if (!l.digest || !(await store.has(l.digest))) break;
    layers.push({ payload: await store.read(l.digest), signatureB64: l.annotations?.[SIGNATURE_ANNOTATION] ?? '' });
  }
  const rebuilt = signatureImage(layers).blobs[0]!;
  if (await store.write(cfg.digest, rebuilt).then(() => true, () => false)) return;
  await fetchStateBlob(config, store, repository, cfg, 'the config of the state\'s signature');
}

/** A blob of the state's artifact the sync did not read: from the registry, by digest (checked), into the store. */
async function fetchStateBlob(config: AgentConfig, store: ContentStore, repository: string, b: { digest: string; size: number }, what: string): Promise<void> {
  const client = new RegistryClient(new URL(config.registry).origin, config.credentials, config.timeoutMs, 'pull', config.ca);
  try {
    await store.ingest(b.digest, b.size, (offset) => client.openBlob(repository, b.digest, offset));
  } catch (err) {
    throw new AgentExportError(`the store ${config.store} lacks ${b.digest}, ${what} of ${repository}, and the registry ${config.registry} could not give it: ${(err as Error).message}; nothing written`);
  }
}
