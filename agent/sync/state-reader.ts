import { verifyStateSignature } from '../../core/cosign/verify.js';
import { BodyTooLargeError } from '../../core/http/bounded-body.js';
import { REPOSITORY_NAME_PATTERN, registryUrlProblem, TAG_PATTERN } from '../../core/oci/names.js';
import { RegistryRequestError, type RegistryReader } from '../../core/registry/registry-client.js';
import { applyDelta, jsonDigest, type StateDelta, type VersionedState } from '../../core/state/delta.js';
import { layerText, stateLayers } from '../../core/state/format.js';
import type { AgentGroup } from '../config/config.js';
import { compileSchema } from '../config/schema.js';

// Reads a group's state from the registry the way a careful satellite must: the signature is
// checked with the group's key before a byte of the state is parsed; the state comes from
// the delta layer when the agent holds the version the delta applies to (checked against the
// digest the signed manifest names), else from the full layer; then its shape is validated.
// Every body is read under a cap (a manifest's 4 MiB, the state's maxStateMb for its layers,
// compressed and decompressed), and every field that later names a file (the registry's
// host, in the runtime's mirror files) is checked as what it is before anything is applied.

/** The state was refused: it must not be applied. */
export class StateRefusedError extends Error {
  constructor(readonly reason: 'unsigned' | 'not-a-state' | 'wrong-group' | 'replay' | 'malformed' | 'digest-mismatch' | 'too-large', message: string) {
    super(message);
    this.name = 'StateRefusedError';
  }
}

const DIGEST = '^(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$';
const PLATFORM = {
  type: 'object',
  required: ['os', 'architecture'],
  properties: { os: { type: 'string' }, architecture: { type: 'string' }, variant: { type: 'string' } },
};
const ENTRY = {
  type: 'object',
  required: ['repository', 'tag', 'type', 'digest', 'deleted'],
  properties: {
    repository: { type: 'string', pattern: REPOSITORY_NAME_PATTERN, maxLength: 255 },
    tag: { type: 'array', items: { type: 'string', pattern: TAG_PATTERN } },
    type: { type: 'string' },
    digest: { type: 'string', pattern: DIGEST },
    deleted: { type: 'boolean' },
    mediaType: { type: 'string' },
    size: { type: 'integer', minimum: 0 },
    subject: { type: 'string', pattern: DIGEST },
    platform: PLATFORM,
    platforms: {
      type: 'array',
      items: { type: 'object', required: ['digest'], properties: { digest: { type: 'string', pattern: DIGEST }, mediaType: { type: 'string' }, os: { type: 'string' }, architecture: { type: 'string' }, variant: { type: 'string' } } },
    },
  },
};
const validateState = compileSchema({
  type: 'object',
  required: ['group', 'registry', 'version', 'artifacts'],
  properties: { group: { type: 'string' }, registry: { type: 'string' }, version: { type: 'integer', minimum: 1 }, artifacts: { type: 'array', items: ENTRY } },
});
const validateDelta = compileSchema({
  type: 'object',
  required: ['base', 'group', 'registry', 'version', 'removed', 'upserted'],
  properties: {
    base: { type: 'object', required: ['version', 'digest'], properties: { version: { type: 'integer' }, digest: { type: 'string', pattern: DIGEST } } },
    group: { type: 'string' }, registry: { type: 'string' }, version: { type: 'integer', minimum: 1 },
    removed: { type: 'array', items: { type: 'object', required: ['repository', 'digest'] } },
    upserted: { type: 'array', items: ENTRY },
  },
});

export function parseState(json: string): VersionedState {
  let doc: unknown;
  try {
    doc = JSON.parse(json);
  } catch (err) {
    throw new StateRefusedError('malformed', `the state is not JSON: ${(err as Error).message}`);
  }
  const problems = validateState(doc);
  if (problems.length) throw new StateRefusedError('malformed', `the state is malformed: ${problems.slice(0, 5).join('; ')}`);
  // The registry's host becomes a directory of the runtime's mirror configuration.
  const registry = registryUrlProblem((doc as VersionedState).registry);
  if (registry) throw new StateRefusedError('malformed', `the state's registry ${registry}`);
  return doc as VersionedState;
}

export interface ReadState {
  /** The state manifest's digest. */
  digest: string;
  state: VersionedState;
  json: string;
  stateDigest: string;
  via: 'delta' | 'full';
  /** Body bytes fetched for it (manifest, signature, layer). */
  bytes: number;
}

/** What the agent holds of the group, for a delta. */
export interface HeldState {
  stateDigest: string;
  json: string;
}

/**
 * Fetches, verifies and parses the state `digest` of a group. Bytes that do not match the
 * digest they were asked by (the manifest, its signature, a state layer) refuse the state:
 * the registry answered, with content that cannot be trusted, which no backoff mends. So
 * do bodies past their cap (`maxStateBytes` for the layers): what a digest names never
 * changes, so the same state is as large on every try; the registry answered, and what it
 * answered cannot be used.
 */
export async function readState(client: RegistryReader, group: AgentGroup, digest: string, held: HeldState | undefined, maxStateBytes: number, log?: { warn: (o: object, m: string) => void }): Promise<ReadState> {
  try {
    return await fetchState(client, group, digest, held, maxStateBytes, log);
  } catch (err) {
    if (err instanceof RegistryRequestError && err.code === 'DIGEST_INVALID') {
      throw new StateRefusedError('digest-mismatch', `the state ${digest} of group ${group.name} does not match its digest: ${err.message}`);
    }
    if (err instanceof BodyTooLargeError) throw new StateRefusedError('too-large', `the state ${digest} of group ${group.name} is refused: ${err.message}`);
    throw err;
  }
}

async function fetchState(client: RegistryReader, group: AgentGroup, digest: string, held: HeldState | undefined, maxStateBytes: number, log?: { warn: (o: object, m: string) => void }): Promise<ReadState> {
  const manifest = await client.getManifest(group.state, digest);
  if (!manifest) throw new StateRefusedError('not-a-state', `${group.state}@${digest} is not in the registry`);
  let bytes = manifest.bytes.length;

  const check = await verifyStateSignature(client, group.state, manifest.digest, group.publicKey, group.identity);
  if (!check.verified) {
    const why = check.verdicts.map((v) => (v.ok ? 'ok' : v.reason)).join('; ') || 'no signature is attached';
    throw new StateRefusedError('unsigned', `the state ${manifest.digest} of group ${group.name} has no valid signature by its key: ${why}`);
  }
  bytes += 1024; // the signature manifest and payload are small; counted approximately

  let doc: object;
  try {
    doc = JSON.parse(manifest.bytes.toString('utf8')) as object;
  } catch {
    throw new StateRefusedError('not-a-state', `${manifest.digest} is not a JSON manifest`);
  }
  const layers = stateLayers(doc);
  if (!layers) throw new StateRefusedError('not-a-state', `${manifest.digest} has no state layer`);

  if (layers.delta && layers.stateDigest && held && held.stateDigest === layers.delta.baseDigest) {
    const url = blobUrl(client, group.state, layers.delta.descriptor.digest);
    const raw = await client.getBlob(group.state, layers.delta.descriptor.digest, maxStateBytes, 'a state layer');
    bytes += raw.length;
    const rebuilt = rebuildFromDelta(held.json, layerText(raw, layers.delta.descriptor.mediaType, { limit: maxStateBytes, url }));
    if (rebuilt && jsonDigest(rebuilt) === layers.stateDigest) {
      return { digest: manifest.digest, state: parseState(rebuilt), json: rebuilt, stateDigest: layers.stateDigest, via: 'delta', bytes };
    }
    log?.warn({ group: group.name, state: manifest.digest }, 'the delta did not rebuild the signed state; fetching the whole state');
  }

  const raw = await client.getBlob(group.state, layers.full.digest, maxStateBytes, 'a state layer');
  bytes += raw.length;
  const json = layerText(raw, layers.full.mediaType, { limit: maxStateBytes, url: blobUrl(client, group.state, layers.full.digest) });
  const stateDigest = jsonDigest(json);
  if (layers.stateDigest && stateDigest !== layers.stateDigest) {
    throw new StateRefusedError('digest-mismatch', `the state layer holds ${stateDigest}, the signed manifest names ${layers.stateDigest}`);
  }
  return { digest: manifest.digest, state: parseState(json), json, stateDigest, via: 'full', bytes };
}

const blobUrl = (client: RegistryReader, repository: string, digest: string): string => `${client.baseUrl}/v2/${repository}/blobs/${digest}`;

/** The state a delta describes, or undefined when the delta or the held state is unusable. */
function rebuildFromDelta(baseJson: string, deltaJson: string): string | undefined {
  try {
    const delta = JSON.parse(deltaJson) as StateDelta;
    if (validateDelta(delta).length) return undefined;
    return applyDelta(parseState(baseJson), delta).json;
  } catch {
    return undefined;
  }
}
