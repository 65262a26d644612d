import { createHash, randomBytes, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { Readable, Transform } from 'node:stream';
import { setTimeout as delay } from 'node:timers/promises';
import { mkdir, open, type FileHandle, readdir, readFile, rename, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { isDigest } from '../../core/oci/digest.js';
import { isStoreFull, RESERVE_BYTES } from './space.js';

// The agent's content store: every manifest and blob by digest, under
// <root>/blobs/<algorithm>/<hex>, the layout of an OCI image layout's blobs. A file appears
// there only once its bytes were hashed and matched their digest (and size); downloads in
// progress live in <root>/ingest and are resumed from where they stopped.

export class CorruptContentError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CorruptContentError';
  }
}

/** A download that stopped making progress: retryable, and resumable from what arrived. */
export class StalledDownloadError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'StalledDownloadError';
  }
}

export interface IngestResult {
  /** Bytes that came over the network for this blob in this call. */
  downloaded: number;
  /** Bytes already on disk from an interrupted download, not fetched again. */
  resumedFrom: number;
}

/** Opens the blob's bytes from `offset` on: 206 when the range was honoured, 200 for the whole blob. */
export type BlobSource = (offset: number) => Promise<Response>;

/** How much of a followed download is read at once, and how often its file is looked at again. */
const FOLLOW_CHUNK = 1024 * 1024;
const FOLLOW_POLL_MS = 50;

function split(digest: string): { algorithm: string; hex: string } {
  if (!isDigest(digest)) throw new CorruptContentError(`${JSON.stringify(digest)} is not a digest`);
  const [algorithm, hex] = digest.split(':') as [string, string];
  return { algorithm, hex };
}

export class ContentStore {
  private readonly inFlight = new Map<string, Promise<IngestResult>>();
  private readonly onceInFlight = new Map<string, Promise<unknown>>();
  /** Blobs hashed whole and found intact, by digest: the file's inode, mtime and size then. */
  private readonly verified = new Map<string, string>();

  constructor(readonly root: string, private readonly idleTimeoutMs = 30_000) {}

  async init(): Promise<void> {
    await mkdir(join(this.root, 'blobs', 'sha256'), { recursive: true });
    await mkdir(join(this.root, 'blobs', 'sha512'), { recursive: true });
    await mkdir(join(this.root, 'ingest'), { recursive: true });
  }

  path(digest: string): string {
    const { algorithm, hex } = split(digest);
    return join(this.root, 'blobs', algorithm, hex);
  }

  private partialPath(digest: string): string {
    const { algorithm, hex } = split(digest);
    return join(this.root, 'ingest', `${algorithm}-${hex}.partial`);
  }

  /** The size of a stored blob, undefined when it is not stored. */
  async size(digest: string): Promise<number | undefined> {
    try {
      return (await stat(this.path(digest))).size;
    } catch {
      return undefined;
    }
  }

  /** The bytes an interrupted or running download of a blob holds so far (0: none). */
  async partialSize(digest: string): Promise<number> {
    return stat(this.partialPath(digest)).then((s) => s.size, () => 0);
  }

  async has(digest: string, size?: number): Promise<boolean> {
    const actual = await this.size(digest);
    return actual !== undefined && (size === undefined || actual === size);
  }

  /**
   * A small blob (a manifest, a config), checked against its digest as it is read: a file
   * that no longer matches is removed and reported, so the next sync fetches it again.
   */
  async read(digest: string): Promise<Buffer> {
    const bytes = await readFile(this.path(digest));
    const { algorithm } = split(digest);
    if (`${algorithm}:${createHash(algorithm).update(bytes).digest('hex')}` !== digest) {
      await this.remove(digest);
      throw new CorruptContentError(`stored ${digest} is corrupt; removed`);
    }
    return bytes;
  }

  /** Stores bytes already in memory after checking their digest. */
  async write(digest: string, bytes: Buffer): Promise<void> {
    const { algorithm } = split(digest);
    if (`${algorithm}:${createHash(algorithm).update(bytes).digest('hex')}` !== digest) {
      throw new CorruptContentError(`content does not match ${digest}`);
    }
    if (await this.has(digest, bytes.length)) return;
    const tmp = join(this.root, 'ingest', `${split(digest).hex}.${randomBytes(4).toString('hex')}.tmp`);
    try {
      await writeFile(tmp, bytes, { flush: true });
      await rename(tmp, this.path(digest));
    } catch (err) {
      await rm(tmp, { force: true }); // half a file on a full disk keeps it full
      throw err;
    }
  }

  /**
   * Downloads a blob unless stored; concurrent calls for one digest share one download.
   * `idleTimeoutMs`: how long the body may stay silent (shorter for a site upstream, which
   * the registry backs up).
   */
  ingest(digest: string, size: number, source: BlobSource, idleTimeoutMs = this.idleTimeoutMs): Promise<IngestResult> {
    const running = this.inFlight.get(digest);
    if (running) return running.then(() => ({ downloaded: 0, resumedFrom: 0 }));
    const p = this.download(digest, size, source, idleTimeoutMs).finally(() => this.inFlight.delete(digest));
    this.inFlight.set(digest, p);
    return p;
  }

  /** Digests being downloaded right now (the collector must leave them). */
  downloading(): string[] {
    return [...this.inFlight.keys()];
  }

  private async download(digest: string, size: number, source: BlobSource, idleTimeoutMs: number): Promise<IngestResult> {
    if (await this.has(digest, size)) return { downloaded: 0, resumedFrom: 0 };
    const { algorithm } = split(digest);
    const partial = this.partialPath(digest);
    let offset = await stat(partial).then((s) => s.size, () => 0);
    if (offset > size) {
      await rm(partial, { force: true });
      offset = 0;
    }
    const hash = createHash(algorithm);
    if (offset > 0) await hashFile(partial, hash);
    if (offset === size && size > 0) {
      // Every byte arrived before the agent stopped (killed before the rename): no request
      // (a registry answers a range from the end 416); kept if it is the blob, else fetched again.
      const copy = hash.copy();
      if (`${algorithm}:${copy.digest('hex')}` === digest) {
        await this.finish(digest, partial, hash, size);
        return { downloaded: 0, resumedFrom: offset };
      }
      await rm(partial, { force: true });
      return this.download(digest, size, source, idleTimeoutMs);
    }
    const res = await source(offset);
    const range = res.status === 206 ? /^bytes (\d+)-/.exec(res.headers.get('content-range') ?? '') : null;
    let resumedFrom = offset;
    if (offset > 0 && (res.status !== 206 || Number(range?.[1]) !== offset)) {
      // The registry sent the whole blob (or another range): start over.
      return this.restart(digest, size, partial, res, algorithm, idleTimeoutMs);
    }
    if (offset === 0) resumedFrom = 0;
    const downloaded = await this.append(partial, res, hash, offset, size, idleTimeoutMs);
    await this.finish(digest, partial, hash, size);
    return { downloaded, resumedFrom };
  }

  private async restart(digest: string, size: number, partial: string, res: Response, algorithm: string, idleTimeoutMs: number): Promise<IngestResult> {
    await rm(partial, { force: true });
    const hash = createHash(algorithm);
    const downloaded = await this.append(partial, res, hash, 0, size, idleTimeoutMs);
    await this.finish(digest, partial, hash, size);
    return { downloaded, resumedFrom: 0 };
  }

  /** Streams the body onto the partial file, hashing as it goes; gives up when the stream idles. */
  private async append(partial: string, res: Response, hash: Hash, offset: number, size: number, idleTimeoutMs: number): Promise<number> {
    if (!res.body) throw new StalledDownloadError('the registry sent no body');
    const file = await open(partial, offset > 0 ? 'a' : 'w');
    const reader = res.body.getReader();
    let received = 0;
    try {
      for (;;) {
        let timer: NodeJS.Timeout | undefined;
        const idle = new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new StalledDownloadError(`no bytes for ${idleTimeoutMs} ms`)), idleTimeoutMs);
        });
        const { done, value } = await Promise.race([reader.read(), idle]).finally(() => clearTimeout(timer));
        if (done) break;
        if (offset + received + value.length > size) throw new CorruptContentError(`the registry sent more than the ${size} bytes the manifest names`);
        hash.update(value);
        // A write may take part of the chunk (a disk filling up): the rest is written after
        // it, so the file stays a prefix of the blob, whatever fails next.
        for (let done = 0; done < value.length;) done += (await file.write(value, done, value.length - done)).bytesWritten;
        received += value.length;
      }
      await file.sync();
    } catch (err) {
      await reader.cancel().catch(() => undefined);
      await file.close().catch(() => undefined);
      // A full disk: what arrived is kept for a Range resume once there is room (it is
      // hashed again from the file then, and the whole checked against the digest), less
      // its last RESERVE_BYTES, given back so that the agent's own records still fit.
      if (isStoreFull(err)) await giveBack(partial, RESERVE_BYTES);
      throw err;
    }
    await file.close();
    return received;
  }

  private async finish(digest: string, partial: string, hash: Hash, size: number): Promise<void> {
    const actualSize = (await stat(partial)).size;
    const { algorithm } = split(digest);
    const actual = `${algorithm}:${hash.digest('hex')}`;
    if (actualSize !== size || actual !== digest) {
      await rm(partial, { force: true });
      throw new CorruptContentError(actualSize !== size
        ? `blob ${digest} arrived with ${actualSize} bytes, not ${size}`
        : `blob ${digest} arrived with digest ${actual}`);
    }
    await rename(partial, this.path(digest));
  }

  /**
   * Streams a stored blob (bytes start..end inclusive). A whole-blob read is hashed as it
   * goes and its last chunk held back until the digest matches: a blob that no longer
   * matches is never delivered whole; the stream errors, the file is removed and `onCorrupt`
   * called, so the next sync fetches it again.
   */
  stream(digest: string, range: { start: number; end: number } | undefined, onCorrupt: () => void): Readable {
    const file = createReadStream(this.path(digest), range ? { start: range.start, end: range.end } : {});
    if (range) return file;
    const { algorithm } = split(digest);
    const hash = createHash(algorithm);
    let held: Buffer | undefined;
    const check = new Transform({
      transform(chunk: Buffer, _enc, done) {
        hash.update(chunk);
        const out = held;
        held = chunk;
        done(null, out);
      },
      flush: (done) => {
        if (`${algorithm}:${hash.digest('hex')}` === digest) return done(null, held);
        void this.remove(digest).then(onCorrupt);
        done(new CorruptContentError(`stored ${digest} is corrupt`));
      },
    });
    file.on('error', (err) => check.destroy(err));
    return file.pipe(check);
  }

  /**
   * Whether a stored blob still matches its digest, hashed whole (once per version of the
   * file: the result is kept while its inode, mtime and size stay the same). One that does
   * not is removed. A range read cannot check what it serves, so it is checked here first.
   */
  async verify(digest: string): Promise<boolean> {
    const path = this.path(digest);
    const s = await stat(path).catch(() => undefined);
    if (!s) return false;
    const version = `${s.ino}:${s.mtimeMs}:${s.size}`;
    if (this.verified.get(digest) === version) return true;
    const { algorithm } = split(digest);
    const hash = createHash(algorithm);
    try {
      await hashFile(path, hash);
    } catch {
      return false;
    }
    if (`${algorithm}:${hash.digest('hex')}` === digest) {
      this.verified.set(digest, version);
      return true;
    }
    await this.remove(digest);
    return false;
  }

  async remove(digest: string): Promise<void> {
    this.verified.delete(digest);
    await rm(this.path(digest), { force: true });
  }

  /**
   * Runs `fetch` for a digest unless a call for the same digest is running; concurrent calls
   * share its result (a manifest asked by a peer and by this agent's own sync is fetched once).
   */
  once<T>(digest: string, fetch: () => Promise<T>): Promise<T> {
    const running = this.onceInFlight.get(digest) as Promise<T> | undefined;
    if (running) return running;
    const p = fetch().finally(() => this.onceInFlight.delete(digest));
    this.onceInFlight.set(digest, p);
    return p;
  }

  /**
   * The bytes of a blob `download` is putting into the store, from the first on, as they
   * arrive (the partial file read as it grows, then the stored file): a peer gets a body
   * that makes progress while the blob is fetched for it. They are not checked here (the
   * download checks the whole at its end, the peer checks what it got); should the
   * download fail, or the file be started over, the stream errors.
   */
  follow(digest: string, size: number, download: Promise<unknown>): Readable {
    const partial = this.partialPath(digest);
    const stored = this.path(digest);
    let settled: { error?: unknown } | undefined;
    download.then(() => (settled = {}), (error: unknown) => (settled = { error }));
    async function* bytes(): AsyncGenerator<Buffer> {
      let file: FileHandle | undefined;
      let at = 0;
      try {
        while (at < size) {
          const before = settled;
          if (before?.error) throw before.error;
          file ??= await open(partial, 'r').catch(() => (before ? open(stored, 'r') : undefined));
          if (file) {
            const buf = Buffer.alloc(Math.min(FOLLOW_CHUNK, size - at));
            const { bytesRead } = await file.read(buf, 0, buf.length, at);
            if (bytesRead > 0) {
              at += bytesRead;
              yield buf.subarray(0, bytesRead);
              continue;
            }
            // Done before this read and still short: the file followed was replaced.
            if (before) throw new CorruptContentError(`blob ${digest} was started over while it was sent`);
          }
          await delay(FOLLOW_POLL_MS);
        }
      } finally {
        await file?.close();
      }
    }
    return Readable.from(bytes());
  }

  /** Every stored digest. */
  async list(): Promise<string[]> {
    const out: string[] = [];
    for (const algorithm of ['sha256', 'sha512']) {
      const names = await readdir(join(this.root, 'blobs', algorithm)).catch(() => [] as string[]);
      for (const n of names) if (isDigest(`${algorithm}:${n}`)) out.push(`${algorithm}:${n}`);
    }
    return out;
  }

  /** Interrupted downloads whose digest is no longer wanted. */
  async dropPartials(keep: ReadonlySet<string>): Promise<number> {
    let n = 0;
    const names = await readdir(join(this.root, 'ingest')).catch(() => [] as string[]);
    for (const name of names) {
      if (name.endsWith('.tmp')) {
        // A write() that a crash interrupted; one under way is seconds old at most.
        const age = await stat(join(this.root, 'ingest', name)).then((s) => Date.now() - s.mtimeMs, () => 0);
        if (age > 60_000) await rm(join(this.root, 'ingest', name), { force: true });
        continue;
      }
      const m = /^(sha256|sha512)-([a-f0-9]+)\.partial$/.exec(name);
      const digest = m ? `${m[1]}:${m[2]}` : undefined;
      if (digest && (keep.has(digest) || this.inFlight.has(digest))) continue;
      await rm(join(this.root, 'ingest', name), { force: true });
      n++;
    }
    return n;
  }
}

/** Shortens a file by `bytes` (removes it when that is all of it). */
async function giveBack(path: string, bytes: number): Promise<void> {
  const size = await stat(path).then((s) => s.size, () => 0);
  if (size <= bytes) await rm(path, { force: true });
  else await truncate(path, size - bytes);
}

async function hashFile(path: string, hash: Hash): Promise<void> {
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
}
