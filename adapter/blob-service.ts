import { randomUUID } from 'node:crypto';
import { RegistryError } from '../core/errors.js';
import { isDigest } from '../core/oci/digest.js';
import { ResumableSha256 } from '../core/oci/resumable-sha256.js';
import type { UploadSession, UploadStore } from '../core/store/upload-store.js';
import { checkName } from './manifest-service.js';

// Blobs are never stored: Harbor is told every blob is present, so it sends none. A client
// that uploads anyway gets the full protocol, its bytes hashed as they stream in and
// checked against the digest it claims, then dropped.

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export type Chunks = AsyncIterable<Buffer>;

export interface ContentRange {
  start: number;
  end: number;
}

export function checkDigest(digest: string | undefined, what = 'digest'): string {
  if (digest === undefined || !isDigest(digest)) {
    throw new RegistryError('DIGEST_INVALID', `${what} ${JSON.stringify(digest ?? '')} is not a valid digest`);
  }
  if (!digest.startsWith('sha256:')) throw new RegistryError('UNSUPPORTED', 'blob uploads support sha256 digests only');
  return digest;
}

/** Feeds a stream into the hasher; returns the number of bytes read. */
async function consume(hasher: ResumableSha256, body: Chunks): Promise<number> {
  let n = 0;
  for await (const chunk of body) {
    hasher.update(chunk);
    n += chunk.length;
  }
  return n;
}

function verify(hasher: ResumableSha256, digest: string): void {
  const actual = `sha256:${hasher.hex()}`;
  if (actual !== digest) {
    throw new RegistryError('DIGEST_INVALID', 'the uploaded content does not match the digest given', { expected: digest, actual });
  }
}

export class BlobService {
  constructor(private readonly uploads: UploadStore) {}

  /** POST with ?digest=: the whole blob in one request; nothing is kept. */
  async monolithic(name: string, digest: string, body: Chunks): Promise<void> {
    checkName(name);
    checkDigest(digest);
    const hasher = new ResumableSha256();
    await consume(hasher, body);
    verify(hasher, digest);
  }

  async start(name: string): Promise<string> {
    checkName(name);
    const id = randomUUID();
    await this.uploads.create(id, name, new ResumableSha256().save());
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
    if (range && range.start !== session.size) {
      throw new RegistryError('RANGE_INVALID', `chunk starts at ${range.start}, the upload is at ${session.size}`, { size: session.size });
    }
    const hasher = ResumableSha256.restore(session.hashState);
    const received = await consume(hasher, body);
    if (range && range.end - range.start + 1 !== received) {
      throw new RegistryError('RANGE_INVALID', `Content-Range announces ${range.end - range.start + 1} bytes, ${received} arrived`, { size: session.size });
    }
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
    // Harbor sends its last chunk with this PUT, with a Content-Range like a PATCH.
    if (range && range.start !== session.size) {
      throw new RegistryError('RANGE_INVALID', `chunk starts at ${range.start}, the upload is at ${session.size}`, { size: session.size });
    }
    const hasher = ResumableSha256.restore(session.hashState);
    await consume(hasher, body);
    await this.uploads.remove(id);
    verify(hasher, claimed);
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
