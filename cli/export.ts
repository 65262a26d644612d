import { Readable } from 'node:stream';
import type { KeyObject } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { loadPublicKey } from '../core/cosign/keys.js';
import { signatureTag } from '../core/cosign/signature-image.js';
import { verifyStateSignature } from '../core/cosign/verify.js';
import { ArchiveContentError, REF_NAME_ANNOTATION, ROLE_ANNOTATION, writeLayoutArchive, type ArchiveRole, type LayoutEntry } from '../core/oci/layout-archive.js';
import { configPlatform, parseManifest, type ParsedManifest, type Platform } from '../core/oci/manifest.js';
import { MediaType } from '../core/oci/media-types.js';
import { RegistryClient, type FetchedManifest } from '../core/registry/registry-client.js';
import type { VersionedState } from '../core/state/delta.js';
import { layerText, stateLayers } from '../core/state/format.js';
import { chooseChildren, isAttestation, normalizePlatform, parsePlatform } from '../agent/sync/platform.js';
import { stateRegistryCredentials, type Config } from '../core/config.js';
import { stateRepository } from '../core/state/artifact.js';

// `satellite export <group>`: a group's signed state and every image it lists, as one OCI
// image layout in a tar, for a site with no link. Read from the registries as the agent
// reads them (by digest, every manifest and blob checked against its digest), written to
// `<out>.partial` and renamed only when whole, so a failed export leaves no archive that
// looks complete.

export class ExportError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ExportError';
  }
}

export interface ExportOptions {
  stateClient: RegistryClient;
  stateRepository: string;
  /** The version to export; the latest when absent. */
  version?: number;
  /** Children of indexes and single-platform images kept; every one when empty. */
  platforms: Platform[];
  /** A client for the registry a state names (its `registry`). */
  imageClient: (registry: string) => RegistryClient;
  out: string;
  maxStateBytes: number;
  /** When given, the state's signature is checked with it before anything is written. */
  publicKey?: KeyObject;
}

export interface ExportSummary {
  version: number;
  stateDigest: string;
  images: number;
  blobs: number;
  bytes: number;
}

interface Item {
  source: RegistryClient;
  repository: string;
  /** A manifest, or a blob to stream (manifests are read whole: they are small). */
  manifest?: FetchedManifest;
  digest: string;
  size: number;
}


function parsed(m: FetchedManifest, where: string): ParsedManifest {
  try {
    return parseManifest(m.bytes, m.mediaType || undefined);
  } catch (err) {
    throw new ExportError(`${where}: ${(err as Error).message}`);
  }
}

export async function exportGroup(o: ExportOptions): Promise<ExportSummary> {
  const ref = o.version === undefined ? 'latest' : `v${o.version}`;
  const state = await o.stateClient.getManifest(o.stateRepository, ref);
  if (!state) throw new ExportError(`${o.stateRepository}:${ref} is not in the registry ${o.stateClient.baseUrl}`);
  const stateManifest = parsed(state, `${o.stateRepository}:${ref}`);
  const layers = stateLayers(JSON.parse(state.bytes.toString('utf8')) as object);
  if (!layers) throw new ExportError(`${o.stateRepository}@${state.digest} is not a state (no state layer; only the oci layout can be exported)`);
  const signature = await o.stateClient.getManifest(o.stateRepository, signatureTag(state.digest));
  if (!signature) throw new ExportError(`${o.stateRepository}@${state.digest} has no signature (${signatureTag(state.digest)}): an archive without one would be refused`);
  if (o.publicKey) {
    const identity = `${o.stateClient.host}/${o.stateRepository}`;
    const check = await verifyStateSignature(o.stateClient, o.stateRepository, state.digest, o.publicKey, identity);
    if (!check.verified) throw new ExportError(`${identity}@${state.digest} is not signed by that key: ${check.verdicts.map((v) => (v.ok ? 'ok' : v.reason)).join('; ') || 'no signature'}`);
  }
  const raw = await o.stateClient.getBlob(o.stateRepository, layers.full.digest, o.maxStateBytes, 'a state layer');
  const doc = JSON.parse(layerText(raw, layers.full.mediaType, { limit: o.maxStateBytes, url: `${o.stateRepository}@${layers.full.digest}` })) as VersionedState;

  const entries: LayoutEntry[] = [];
  const items: Item[] = [];
  const seen = new Set<string>();
  const add = (item: Item) => {
    if (seen.has(item.digest)) return;
    seen.add(item.digest);
    items.push(item);
  };
  const top = (m: FetchedManifest, p: ParsedManifest, role: ArchiveRole, refName: string) => {
    entries.push({ mediaType: p.mediaType, digest: m.digest, size: m.bytes.length, annotations: { [REF_NAME_ANNOTATION]: refName, [ROLE_ANNOTATION]: role } });
  };
  const addImage = (source: RegistryClient, repository: string, m: FetchedManifest, p: ParsedManifest) => {
    add({ source, repository, manifest: m, digest: m.digest, size: m.bytes.length });
    for (const b of p.blobs) add({ source, repository, digest: b.digest, size: b.size });
  };

  top(state, stateManifest, 'state', `${o.stateRepository}:v${doc.version}`);
  addImage(o.stateClient, o.stateRepository, state, stateManifest);
  const sigManifest = parsed(signature, `${o.stateRepository}:${signatureTag(state.digest)}`);
  top(signature, sigManifest, 'signature', `${o.stateRepository}:${signatureTag(state.digest)}`);
  addImage(o.stateClient, o.stateRepository, signature, sigManifest);

  const client = o.imageClient(doc.registry);
  let images = 0;
  for (const a of doc.artifacts) {
    if (a.deleted) continue;
    const m = await client.getManifest(a.repository, a.digest);
    if (!m) throw new ExportError(`${a.repository}@${a.digest}, listed by the state, is not in ${doc.registry}`);
    const p = parsed(m, `${a.repository}@${a.digest}`);
    if (p.children.length > 0 || p.mediaType === MediaType.OciIndex || p.mediaType === MediaType.DockerManifestList) {
      // The index is kept byte for byte (its digest is what the state names); of its
      // children, the ones a device of the chosen platforms takes, as the agent decides.
      const wanted = o.platforms.length ? chooseChildren(o.platforms, p.children.filter((c) => !isAttestation(c.platform))) : p.children;
      addImage(client, a.repository, m, p);
      for (const c of wanted) {
        const child = await client.getManifest(a.repository, c.digest);
        if (!child) throw new ExportError(`${a.repository}@${c.digest}, a child of ${a.digest}, is not in ${doc.registry}`);
        addImage(client, a.repository, child, parsed(child, `${a.repository}@${c.digest}`));
      }
    } else if (o.platforms.length && a.type === 'IMAGE' && p.blobs[0]) {
      const config = await client.getBlob(a.repository, p.blobs[0].digest);
      const named = configPlatform(config);
      if (named && chooseChildren(o.platforms, [{ platform: named }]).length === 0) continue;
      addImage(client, a.repository, m, p);
    } else {
      addImage(client, a.repository, m, p);
    }
    images++;
    const names = a.tag.length ? a.tag.map((t) => `${a.repository}:${t}`) : [`${a.repository}@${a.digest}`];
    for (const n of names) top(m, p, 'image', n);
  }

  const bytes = await writeLayoutArchive(o.out, entries, items.map((item) => ({
    digest: item.digest, size: item.size, name: `${item.repository}@${item.digest}`,
    ...(item.manifest ? { bytes: item.manifest.bytes } : { open: () => openBlob(item) }),
  })));
  return { version: doc.version, stateDigest: state.digest, images, blobs: items.length, bytes };
}

/** One blob from the registry, as a stream (the archive's writer checks it against its digest). */
async function openBlob(item: Item): Promise<Readable> {
  const res = await item.source.openBlob(item.repository, item.digest);
  if (!res.body) throw new ExportError(`${item.repository}@${item.digest}: the registry answered without a body`);
  return Readable.fromWeb(res.body as import('node:stream/web').ReadableStream);
}

/** `satellite export <group> [--version N] [--platform os/arch[/variant]]… -o site.tar`, from the state registry (STATE_REGISTRY). */
export async function exportCommand(config: Config, group: string, opts: { version?: string; platform: string[]; output?: string; key?: string }): Promise<number> {
  const fail = (message: string, code = 2) => {
    process.stderr.write(`satellite export: ${message}\n`);
    return code;
  };
  if (!opts.output) return fail('-o <file.tar> is required');
  if (opts.version !== undefined && !/^[1-9][0-9]{0,9}$/.test(opts.version)) return fail(`--version ${JSON.stringify(opts.version)} is not a version number`);
  const platforms: Platform[] = [];
  for (const text of opts.platform) {
    const p = parsePlatform(text);
    if (!p) return fail(`--platform ${JSON.stringify(text)} is not os/architecture[/variant]`);
    platforms.push(normalizePlatform(p));
  }
  // The device checks the signature in any case; with a key (--key, else COSIGN_PUBLIC_KEY)
  // an archive it would refuse is not made in the first place.
  const keyPath = opts.key ?? config.cosignPublicKey;
  let publicKey: KeyObject | undefined;
  if (keyPath !== undefined) {
    try {
      publicKey = loadPublicKey(await readFile(keyPath, 'utf8'));
    } catch (err) {
      return fail(`--key ${keyPath}: ${(err as Error).message}`);
    }
  }
  const creds = stateRegistryCredentials(config);
  const stateOrigin = new URL(config.stateRegistry).origin;
  // The credential goes to the state registry only (same scheme, host and port): a state
  // naming another registry for its images is read from there anonymously.
  const imageClient = (registry: string) => new RegistryClient(registry, new URL(registry).origin === stateOrigin ? creds : undefined, config.registryTimeoutMs, 'pull');
  try {
    const s = await exportGroup({
      stateClient: new RegistryClient(config.stateRegistry, creds, config.registryTimeoutMs, 'pull'),
      stateRepository: stateRepository(config.stateProject, group),
      ...(opts.version !== undefined ? { version: Number(opts.version) } : {}),
      platforms, imageClient, out: opts.output, maxStateBytes: config.stateMaxMb * 1024 * 1024, ...(publicKey ? { publicKey } : {}),
    });
    process.stdout.write(`${opts.output}: group ${group} version ${s.version} (${s.stateDigest}), ${s.images} images, ${s.blobs} blobs, ${s.bytes} bytes\n`);
    return 0;
  } catch (err) {
    if (err instanceof ExportError || err instanceof ArchiveContentError) return fail(err.message, 1);
    throw err;
  }
}
