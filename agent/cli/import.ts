import { createReadStream } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ReadableStream as WebReadableStream } from 'node:stream/web';
import { pipeline } from 'node:stream/promises';
import tar from 'tar-stream';
import { isDigest } from '../../core/oci/digest.js';
import { blobPath, REF_NAME_ANNOTATION, ROLE_ANNOTATION, type LayoutEntry } from '../../core/oci/layout-archive.js';
import { RegistryClient } from '../../core/registry/registry-client.js';
import type { AgentConfig } from '../config/config.js';
import { agentLogger, startAgent } from '../run.js';
import { ContentStore, CorruptContentError } from '../store/content-store.js';
import { runningAgent, StoreLockedError } from '../store/lock.js';

// `satellite agent import site.tar`: an air-gapped site's archive (`satellite export`) applied
// as a sync would apply what it fetched. Every blob of the archive goes into the agent's
// content store through the same ingest as a download (hashed, kept only when it matches
// its digest; a blob the store holds already is skipped, so an interrupted import resumes
// where it stopped); then one sync pass runs with the archive, served on loopback by a
// read-only distribution API over the store, in the place of every registry: the state's
// signature by the group's key, the replay rule, the platform choice, every manifest and
// blob by digest, the served view and the mirror files are the sync's own code.

export class ImportError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ImportError';
  }
}

interface ArchiveIndex {
  entries: LayoutEntry[];
}

export interface ImportResult {
  group: string;
  version?: number;
  /** Blobs written into the store, and blobs the store held already (skipped). */
  ingested: number;
  skipped: number;
  /** Bytes of half-written blobs (an import cut short) not written again. */
  resumed: number;
  outcome: string;
  failed: { image: string; reason: string }[];
}

/** Reads the archive into the store: index.json kept, every blob ingested (checked against its digest). */
async function ingestArchive(path: string, store: ContentStore): Promise<{ index: ArchiveIndex; ingested: number; skipped: number; resumed: number }> {
  let index: ArchiveIndex | undefined;
  let ingested = 0;
  let skipped = 0;
  let resumed = 0;
  /** The first error of a blob, and the blob being ingested: a cancelled entry also fails the tar ("premature close"), which must not hide why. */
  let failure: unknown;
  let current: Promise<unknown> | undefined;
  const extract = tar.extract();
  extract.on('entry', (header, stream, next) => {
    const name = header.name.replace(/^\.\//, '');
    const blob = /^blobs\/(sha256|sha512)\/([a-f0-9]+)$/.exec(name);
    const done = (err?: unknown) => {
      if (!err) return next();
      failure ??= err;
      extract.destroy(err as Error);
    };
    if (name === 'index.json') {
      const chunks: Buffer[] = [];
      stream.on('data', (c: unknown) => {
        chunks.push(c as Buffer);
      });
      stream.on('end', () => {
        try {
          const doc = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { manifests?: LayoutEntry[] };
          if (!Array.isArray(doc.manifests)) throw new Error('it has no manifests array');
          index = { entries: doc.manifests };
          done();
        } catch (err) {
          done(new ImportError(`${path}: index.json is not an OCI image index: ${(err as Error).message}`));
        }
      });
      return;
    }
    if (!blob || header.type !== 'file') {
      stream.on('end', () => done());
      stream.resume();
      return;
    }
    const digest = `${blob[1]}:${blob[2]}`;
    const size = header.size ?? 0;
    if (!isDigest(digest)) {
      stream.resume();
      done(new ImportError(`${path}: ${name} is not named by a digest`));
      return;
    }
    let read = false;
    // A blob an import cut short left half written (the store's ingest/<alg>-<hex>.partial)
    // goes on from where it stopped, as a download resumes with a Range request: the bytes
    // before it are read past, and the whole is still checked against the digest.
    current = store.ingest(digest, size, async (offset) => {
      read = true;
      // Pulled chunk by chunk (not Readable.toWeb, which goes on pushing into a stream the
      // ingest cancelled, and throws out of the process).
      const body = WebReadableStream.from(skipBytes(stream as AsyncIterable<Buffer>, offset)) as ReadableStream;
      return offset > 0
        ? new Response(body, { status: 206, headers: { 'Content-Range': `bytes ${offset}-${size - 1}/${size}` } })
        : new Response(body, { status: 200 });
    }).then(
      (r) => {
        resumed += r.resumedFrom;
        if (read) {
          ingested++;
          done();
        } else {
          skipped++;
          stream.on('end', () => done());
          stream.resume();
        }
      },
      (err: unknown) => done(err instanceof CorruptContentError ? new ImportError(`${path}: ${name} is corrupt: ${err.message}; nothing applied`) : err),
    );
  });
  try {
    await pipeline(createReadStream(path), extract);
  } catch (err) {
    await current?.catch(() => undefined); // settled with its handler: `failure` is set
    throw failure ?? err;
  }
  if (!index) throw new ImportError(`${path}: no index.json: not an OCI image layout archive`);
  return { index, ingested, skipped, resumed };
}

/** The bytes of `source` past the first `skip`. */
async function* skipBytes(source: AsyncIterable<Buffer>, skip: number): AsyncGenerator<Buffer> {
  for await (const chunk of source) {
    if (skip >= chunk.length) {
      skip -= chunk.length;
      continue;
    }
    yield skip > 0 ? chunk.subarray(skip) : chunk;
    skip = 0;
  }
}

/**
 * The pull side of the distribution API over the store, for the archive's names: manifests
 * by digest and by the ref names of its index.json (`<repository>:<tag>`; the state's
 * repository also answers `latest`), blobs by digest. Loopback only, for this process.
 */
async function serveArchive(store: ContentStore, index: ArchiveIndex, missing: string[]): Promise<{ server: Server; url: string }> {
  const refs = new Map<string, LayoutEntry>();
  for (const e of index.entries) {
    const ref = e.annotations?.[REF_NAME_ANNOTATION];
    if (ref) refs.set(ref, e);
    if (e.annotations?.[ROLE_ANNOTATION] === 'state' && ref?.includes(':')) refs.set(`${ref.slice(0, ref.lastIndexOf(':'))}:latest`, e);
  }
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://archive');
    const m = /^\/v2\/(.+)\/(manifests|blobs)\/([^/]+)$/.exec(url.pathname);
    const answer = (status: number, code?: string, message?: string) => {
      res.writeHead(status, { 'Content-Type': 'application/json' });
      res.end(code ? JSON.stringify({ errors: [{ code, message }] }) : '{}');
    };
    if (url.pathname === '/v2/' || url.pathname === '/v2') return answer(200);
    if (!m || (req.method !== 'GET' && req.method !== 'HEAD')) return answer(404, 'NAME_UNKNOWN', 'not in the archive');
    const [, repository, kind, reference] = m as unknown as [string, string, string, string];
    const digest = isDigest(reference) ? reference : refs.get(`${repository}:${reference}`)?.digest;
    void (async () => {
      if (!digest || !(await store.has(digest))) {
        if (digest && kind === 'blobs') missing.push(digest);
        if (digest && kind === 'manifests') missing.push(digest);
        return answer(404, kind === 'blobs' ? 'BLOB_UNKNOWN' : 'MANIFEST_UNKNOWN', `${repository}:${reference} is not in the archive`);
      }
      const size = (await store.size(digest))!;
      const headers: Record<string, string> = { 'Content-Length': String(size), 'Docker-Content-Digest': digest };
      if (kind === 'manifests') {
        const bytes = await store.read(digest);
        const mediaType = (JSON.parse(bytes.toString('utf8')) as { mediaType?: string }).mediaType ?? 'application/vnd.oci.image.manifest.v1+json';
        res.writeHead(200, { ...headers, 'Content-Type': mediaType });
        res.end(req.method === 'HEAD' ? undefined : bytes);
        return;
      }
      res.writeHead(200, { ...headers, 'Content-Type': 'application/octet-stream' });
      if (req.method === 'HEAD') return res.end();
      createReadStream(store.path(digest)).pipe(res);
    })().catch((err: Error) => {
      if (!res.headersSent) answer(500, 'UNKNOWN', err.message);
      else res.destroy(err);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

/** Imports `path` into the store of `config`'s agent (which must not be running: the store's lock). */
export async function importArchive(config: AgentConfig, path: string): Promise<ImportResult> {
  // The running agent owns the store; its ingest and this one must not race on a blob.
  const pid = await runningAgent(config.store);
  if (pid !== undefined) throw new StoreLockedError(config.store, pid);
  const store = new ContentStore(config.store, config.timeoutMs);
  await store.init();
  const { index, ingested, skipped, resumed } = await ingestArchive(path, store);
  const state = index.entries.find((e) => e.annotations?.[ROLE_ANNOTATION] === 'state');
  const stateRef = state?.annotations?.[REF_NAME_ANNOTATION];
  if (!state || !stateRef) throw new ImportError(`${path}: holds no state (no index.json entry with ${ROLE_ANNOTATION}=state): not made by satellite export`);
  const repository = stateRef.slice(0, stateRef.lastIndexOf(':'));
  const group = config.groups.find((g) => g.state === repository);
  if (!group) throw new ImportError(`${path}: its state ${repository} is no group of this agent (${config.groups.map((g) => g.state).join(', ')})`);

  const missing: string[] = [];
  const { server, url } = await serveArchive(store, index, missing);
  try {
    const source = new RegistryClient(url, undefined, config.timeoutMs, 'pull');
    const agent = await startAgent(config, agentLogger(config), { once: true, only: group.name, source });
    try {
      const summary = await agent.firstSync;
      const rec = agent.agent.doc.groups[group.name];
      const failed = Object.values(rec?.images ?? {})
        .filter((i) => i.status === 'failed' || i.status === 'pending')
        .map((i) => ({ image: `${i.repository}@${i.digest}`, reason: i.reason ?? i.status }));
      const outcome = summary.groups[group.name] ?? 'missing';
      if (outcome === 'refused' || outcome === 'missing' || outcome === 'unreachable') {
        throw new ImportError(`${path}: ${rec?.error ?? `state ${outcome}`}; nothing applied`);
      }
      if (missing.length) {
        throw new ImportError(`${path}: the archive lacks ${missing[0]} (${failed[0]?.image ?? 'of the state'}${missing.length > 1 ? `, and ${missing.length - 1} more` : ''}); the images it holds are applied`);
      }
      return { group: group.name, ...(rec?.applied ? { version: rec.applied.version } : {}), ingested, skipped, resumed, outcome, failed };
    } finally {
      await agent.stop();
    }
  } finally {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  }
}
