import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import tar from 'tar-stream';
import { MediaType } from './media-types.js';

// An air-gapped site's archive (`satellite export`, `satellite agent export`, `satellite agent
// import`): one OCI image layout (image-spec image-layout.md: `oci-layout`, `index.json`, `blobs/<alg>/<hex>`) in a
// tar. Its index.json names every top-level manifest with org.opencontainers.image.ref.name
// (so skopeo, umoci and containerd can pick one) and says what each is for this project.

export const REF_NAME_ANNOTATION = 'org.opencontainers.image.ref.name';
/** What an index.json entry is: the signed state, its cosign signature, or an image the state lists. */
export const ROLE_ANNOTATION = 'vnd.satellite-for-harbor.export.role';
export type ArchiveRole = 'state' | 'signature' | 'image';

export const OCI_LAYOUT = JSON.stringify({ imageLayoutVersion: '1.0.0' });

/** The path of a blob in the layout. */
export function blobPath(digest: string): string {
  const [alg, hex] = digest.split(':');
  return `blobs/${alg}/${hex}`;
}

export interface LayoutEntry {
  mediaType: string;
  digest: string;
  size: number;
  annotations: Record<string, string>;
}

/** A blob of the archive: its bytes in memory (a manifest), or opened as a stream when its turn comes. */
export interface ArchiveBlob {
  digest: string;
  size: number;
  bytes?: Buffer;
  open?: () => Promise<Readable>;
  /** Where it comes from, for an error (`<repository>@<digest>`). */
  name: string;
}

/** Bytes that do not match the digest (or size) they were written as. */
export class ArchiveContentError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ArchiveContentError';
  }
}

/**
 * Writes the layout archive to `out`: `oci-layout` and `index.json` first (a reader knows
 * what the archive holds, and can check the state's signature, before a single layer goes
 * by), then every blob, each hashed as it goes (bytes that do not match their digest fail
 * the write). Written to `<out>.partial` and renamed only when whole, so a failed write
 * leaves no archive that looks complete. Resolves with the blob bytes written.
 */
export async function writeLayoutArchive(out: string, entries: LayoutEntry[], blobs: ArchiveBlob[]): Promise<number> {
  const partial = `${out}.partial`;
  const pack = tar.pack();
  const written = pipeline(pack, createWriteStream(partial));
  let bytes = 0;
  try {
    const entry = (name: string, content: Buffer) => new Promise<void>((resolve, reject) => pack.entry({ name, size: content.length, mtime: new Date(0) }, content, (e) => (e ? reject(e) : resolve())));
    await entry('oci-layout', Buffer.from(OCI_LAYOUT));
    await entry('index.json', Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MediaType.OciIndex, manifests: entries })));
    for (const b of blobs) {
      if (b.bytes) await entry(blobPath(b.digest), b.bytes);
      else await streamBlob(pack, b);
      bytes += b.size;
    }
    pack.finalize();
    await written;
  } catch (err) {
    pack.destroy(err as Error);
    await written.catch(() => undefined);
    await rm(partial, { force: true });
    throw err;
  }
  await rename(partial, out);
  return bytes;
}

async function streamBlob(pack: tar.Pack, b: ArchiveBlob): Promise<void> {
  const source = await b.open!();
  const algorithm = b.digest.split(':')[0]!;
  const hash = createHash(algorithm);
  let seen = 0;
  const check = new Transform({
    transform(chunk: Buffer, _enc, done) {
      seen += chunk.length;
      if (seen > b.size) return done(new ArchiveContentError(`${b.name}: more bytes than its ${b.size}`));
      hash.update(chunk);
      done(null, chunk);
    },
    flush(done) {
      const got = `${algorithm}:${hash.digest('hex')}`;
      if (seen !== b.size || got !== b.digest) return done(new ArchiveContentError(`${b.name} arrived as ${got} (${seen} of ${b.size} bytes)`));
      done();
    },
  });
  await new Promise<void>((resolve, reject) => {
    const sink = pack.entry({ name: blobPath(b.digest), size: b.size, mtime: new Date(0) }, (e) => (e ? reject(e) : resolve()));
    pipeline(source, check, sink).catch(reject);
  });
}
