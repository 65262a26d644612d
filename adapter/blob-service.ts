import { randomUUID } from 'node:crypto';
import { RegistryError } from '../core/errors.js';
import { digestAlgorithm, isDigest, type DigestAlgorithm } from '../core/oci/digest.js';
import { splitGroupPath } from '../core/oci/names.js';
import { resumableDigester, type ResumableDigester } from '../core/oci/resumable-digest.js';
import type { ArtifactStore } from '../core/store/artifact-store.js';
import type { UploadSession, UploadStore } from '../core/store/upload-store.js';
import { checkName } from './manifest-service.js';

// Blobs are never stored: Harbor is told every blob is present, so it sends none. A client
// that uploads anyway gets the full protocol, its bytes hashed as they stream in and
// checked against the digest it claims, then dropped; only the size is remembered.

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export type Chunks = AsyncIterable<Buffer>;

export interface ContentRange {
  start: number;
  end: number;
}

/** A digest of a registered algorithm (sha256, sha512); anything else is DIGEST_INVALID. */
export function checkDigest(digest: string | undefined, what = 'digest'): string {
  if (digest === undefined || !isDigest(digest)) {
    throw new RegistryError('DIGEST_INVALID', `${what} ${JSON.stringify(digest ?? '')} is not a valid sha256 or sha512 digest`);
  }
  return digest;
}

/** Spec end-4c: POST ?digest-algorithm= picks the algorithm of a chunked upload (sha256 by default). */
export function checkAlgorithm(value: string | undefined): DigestAlgorithm {
  if (value === undefined || value === 'sha256') return 'sha256';
  if (value === 'sha512') return 'sha512';
  throw new RegistryError('DIGEST_INVALID', `digest algorithm ${JSON.stringify(value)} is not supported; use sha256 or sha512`);
}

/** Feeds a stream into the digester; returns the number of bytes read. */
async function consume(hasher: ResumableDigester, body: Chunks): Promise<number> {
  let n = 0;
  for await (const chunk of body) {
    hasher.update(chunk);
    n += chunk.length;
  }
  return n;
}

function verify(hasher: ResumableDigester, digest: string): void {
  const actual = hasher.digest();
  if (actual !== digest) {
    throw new RegistryError('DIGEST_INVALID', 'the uploaded content does not match the digest given', { expected: digest, actual });
  }
}

function checkRange(range: ContentRange | undefined, size: number): void {
  if (range && range.start !== size) {
    throw new RegistryError('RANGE_INVALID', `chunk starts at ${range.start}, the upload is at ${size}`, { size });
  }
}

function checkLength(range: ContentRange | undefined, received: number, size: number): void {
  if (range && range.end - range.start + 1 !== received) {
    throw new RegistryError('RANGE_INVALID', `Content-Range announces ${range.end - range.start + 1} bytes, ${received} arrived`, { size });
  }
}

export class BlobService {
  constructor(private readonly uploads: UploadStore, private readonly artifacts: ArtifactStore) {}

  /** The blob's size when a recorded manifest or a finished upload named it. */
  async size(name: string, digest: string): Promise<number | undefined> {
    checkName(name);
    checkDigest(digest);
    const path = splitGroupPath(name);
    return typeof path === 'string' ? undefined : this.artifacts.blobSize(path, digest);
  }

  private async remember(name: string, digest: string, size: number): Promise<void> {
    const path = splitGroupPath(name);
    if (typeof path !== 'string') await this.artifacts.recordBlobSize(path, digest, size);
  }

  /** POST with ?digest=: the whole blob in one request; nothing is kept but its size. */
  async monolithic(name: string, digest: string, body: Chunks): Promise<void> {
    checkName(name);
    checkDigest(digest);
    const hasher = await resumableDigester(digestAlgorithm(digest));
    const size = await consume(hasher, body);
    verify(hasher, digest);
    await this.remember(name, digest, size);
  }

  /** Opens a session for `owner` (the credential), or 429 when it holds too many already. */
  async start(name: string, owner: string, algorithm: DigestAlgorithm): Promise<string> {
    checkName(name);
    const id = randomUUID();
    const initial = (await resumableDigester(algorithm)).save();
    if (!(await this.uploads.create(id, name, owner, algorithm, initial))) {
      throw new RegistryError('TOOMANYREQUESTS', 'too many blob uploads open for this credential; finish or cancel some, or wait for idle ones to expire', undefined, 60);
    }
    return id;
  }

  async status(name: string, id: string): Promise<UploadSession> {
    checkName(name);
    const session = UUID.test(id) ? await this.uploads.get(id, name) : undefined;
    if (!session) throw new RegistryError('BLOB_UPLOAD_UNKNOWN', `upload ${id} is not known in ${name}`, { id });
    return session;
  }

  /** PATCH: one chunk, which must start where the session stands (spec: else 416). */
  async append(name: string, id: string, range: ContentRange | undefined, body: Chunks): Promise<number> {
    const session = await this.status(name, id);
    checkRange(range, session.size);
    const hasher = await resumableDigester(session.algorithm, session.hashState);
    const received = await consume(hasher, body);
    checkLength(range, received, session.size);
    const size = session.size + received;
    if (!(await this.uploads.advance(id, session.size, size, hasher.save()))) {
      throw new RegistryError('RANGE_INVALID', 'another chunk of this upload arrived at the same time', { size: session.size });
    }
    return size;
  }

  /** PUT ?digest=: the optional last chunk, then the digest check; the session ends either way. */
  async complete(name: string, id: string, digest: string | undefined, range: ContentRange | undefined, body: Chunks): Promise<void> {
    const claimed = checkDigest(digest);
    const session = await this.status(name, id);
    if (digestAlgorithm(claimed) !== session.algorithm) {
      throw new RegistryError('DIGEST_INVALID',
        `this upload is hashed with ${session.algorithm}; start it with ?digest-algorithm=${digestAlgorithm(claimed)} to finish it with a ${digestAlgorithm(claimed)} digest`);
    }
    // Harbor sends its last chunk with this PUT, with a Content-Range like a PATCH.
    checkRange(range, session.size);
    const hasher = await resumableDigester(session.algorithm, session.hashState);
    const received = await consume(hasher, body);
    await this.uploads.remove(id);
    checkLength(range, received, session.size);
    verify(hasher, claimed);
    await this.remember(name, claimed, session.size + received);
  }

  async cancel(name: string, id: string): Promise<void> {
    await this.status(name, id);
    await this.uploads.remove(id);
  }
}

/** "start-end" (the spec's form) or "bytes start-end/total"; undefined when absent. */
export function parseContentRange(header: string | undefined): ContentRange | undefined {
  if (header === undefined || header === '') return undefined;
  const m = /^(?:bytes[ =])?(\d+)-(\d+)(?:\/(\d+|\*))?$/.exec(header.trim());
  if (!m) throw new RegistryError('RANGE_INVALID', `malformed Content-Range ${JSON.stringify(header)}`);
  const start = Number(m[1]);
  const end = Number(m[2]);
  if (end < start) throw new RegistryError('RANGE_INVALID', `malformed Content-Range ${JSON.stringify(header)}`);
  return { start, end };
}
