import { InvalidDataError, RegistryError } from '../core/errors.js';
import { digestAlgorithm, isDigest } from '../core/oci/digest.js';
import { isStorableText, parseManifest, type ParsedManifest } from '../core/oci/manifest.js';
import { isRepositoryName, isTag, splitGroupPath, type GroupPath } from '../core/oci/names.js';
import type { ArtifactStore, ReferrerRow, StoredManifest } from '../core/store/artifact-store.js';

export type Reference = { tag: string } | { digest: string };

/** Validates a repository name from the URL (OCI distribution spec name grammar). */
export function checkName(name: string): void {
  if (!isRepositoryName(name)) {
    throw new RegistryError('NAME_INVALID', `invalid repository name ${JSON.stringify(name)}`, { name });
  }
}

/** A tag or a digest, else the error the spec names for what it looks like. */
export function parseReference(reference: string): Reference {
  if (isDigest(reference)) return { digest: reference };
  if (reference.includes(':')) throw new RegistryError('DIGEST_INVALID', `invalid digest ${JSON.stringify(reference)}`);
  if (isTag(reference)) return { tag: reference };
  throw new RegistryError('TAG_INVALID', `invalid tag ${JSON.stringify(reference)}`);
}

/**
 * Group and source repository of a destination name, for a write. A name that does not
 * carry the source project was flattened by the replication rule: refuse it with a message
 * an administrator can act on, because recording it would give satellites a repository
 * that does not exist in Harbor (the "<group>/alpine" bug of the first prototype).
 */
export function groupPathForWrite(name: string): GroupPath {
  checkName(name);
  const split = splitGroupPath(name);
  if (split === 'no-group') {
    throw new RegistryError(
      'NAME_INVALID',
      `repository ${JSON.stringify(name)} has no group: set the replication rule's destination namespace to the ` +
        'group name and choose Flattening "No Flattening" (dest_namespace_replace_count 0)',
      { name },
    );
  }
  if (split === 'no-project') {
    throw new RegistryError(
      'NAME_INVALID',
      `repository ${JSON.stringify(name)} lost its source project: the replication rule flattens the path. ` +
        'Edit the rule and choose Flattening "No Flattening" (dest_namespace_replace_count 0), so the group ' +
        'records <group>/<project>/<repository>',
      { name },
    );
  }
  return split;
}

/** For reads: a name that could never have been written is simply not there. */
function groupPathForRead(name: string): GroupPath | undefined {
  checkName(name);
  const split = splitGroupPath(name);
  return typeof split === 'string' ? undefined : split;
}

function unknownManifest(name: string, reference: string): RegistryError {
  return new RegistryError('MANIFEST_UNKNOWN', `manifest ${reference} is not known in ${name}`, { name, reference });
}

export class ManifestService {
  constructor(private readonly store: ArtifactStore) {}

  async put(name: string, reference: string, contentType: string | undefined, body: Buffer): Promise<ParsedManifest> {
    const path = groupPathForWrite(name);
    const ref = parseReference(reference);
    // Pushed by digest, the manifest is known by that digest, whatever its algorithm (sha512
    // included); pushed by tag, by its canonical sha256.
    const manifest = parseManifest(body, contentType, 'digest' in ref ? digestAlgorithm(ref.digest) : 'sha256');
    if ('digest' in ref && manifest.digest !== ref.digest) {
      throw new RegistryError('DIGEST_INVALID', 'the manifest does not match the digest in the URL', { expected: ref.digest, actual: manifest.digest });
    }
    try {
      await this.store.recordManifest(path, manifest, 'tag' in ref ? ref.tag : null);
    } catch (err) {
      // The validator above refuses what Postgres cannot store; this is the net behind it.
      if (err instanceof InvalidDataError) throw new RegistryError('MANIFEST_INVALID', 'the manifest holds a value that cannot be stored', { reason: err.message });
      throw err;
    }
    return manifest;
  }

  async get(name: string, reference: string): Promise<StoredManifest> {
    const ref = parseReference(reference);
    const path = groupPathForRead(name);
    const found = path && (await this.store.getManifest(path, ref));
    if (!found) throw unknownManifest(name, reference);
    return found;
  }

  async delete(name: string, reference: string): Promise<void> {
    const path = groupPathForWrite(name);
    const ref = parseReference(reference);
    const done = 'digest' in ref ? await this.store.deleteManifest(path, ref.digest) : await this.store.untag(path, ref.tag);
    if (!done) throw unknownManifest(name, reference);
  }

  async tags(name: string, limit: number, last: string | undefined): Promise<string[]> {
    // Any text is a position in the lexical order, but no tag holds a NUL (nor can Postgres).
    if (last !== undefined && !isStorableText(last)) {
      throw new RegistryError('TAG_INVALID', 'the last parameter holds a NUL character or a lone UTF-16 surrogate, which no tag can hold', { parameter: 'last' });
    }
    const path = groupPathForRead(name);
    const tags = path && (await this.store.listTags(path, limit, last));
    if (!tags) throw new RegistryError('NAME_UNKNOWN', `repository ${name} is not known`, { name });
    return tags;
  }

  async referrers(name: string, digest: string, artifactType: string | undefined): Promise<ReferrerRow[]> {
    if (!isDigest(digest)) throw new RegistryError('DIGEST_INVALID', `invalid digest ${JSON.stringify(digest)}`);
    if (artifactType !== undefined && !isStorableText(artifactType)) {
      throw new RegistryError('PARAMETER_INVALID', 'the artifactType parameter holds a NUL character or a lone UTF-16 surrogate, which no media type can hold', { parameter: 'artifactType' });
    }
    const path = groupPathForRead(name);
    return path ? this.store.referrers(path, digest, artifactType) : [];
  }
}
