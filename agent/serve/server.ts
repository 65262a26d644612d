import express, { type Request, type Response } from 'express';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { isDigest } from '../../core/oci/digest.js';
import { writeOciError, type OciErrorCode } from '../../core/oci/errors.js';
import { isRepositoryName } from '../../core/oci/names.js';
import { MediaType } from '../../core/oci/media-types.js';
import { V2_PATHS } from '../../core/oci/v2-paths.js';
import { operationsAuthorized, operationsChallenges } from '../../core/operations-auth.js';
import type { Agent } from '../sync/agent.js';
import { StreamLimiter } from './stream-limits.js';

// The pull side of the OCI distribution API, read-only, from the agent's store: what the
// device's runtime (containerd, CRI-O, podman) reaches through its mirror configuration.
// GET/HEAD manifests by tag or digest, GET/HEAD blobs with a single byte Range, tags/list.
// Anything that writes answers 405 UNSUPPORTED. The bodies sent at once are bounded per
// client address and in total (stream-limits.ts); past the bound, 429 or 503 with
// Retry-After, in the spec's error format. A digest a verified state names that the store
// lacks yet is fetched for the peer that asks (pull-through.ts, `server.pullThrough`).

const API_VERSION = { 'Docker-Distribution-API-Version': 'registry/2.0' };

/** An error in the spec's envelope, from the one catalog (core/oci/errors.ts). */
function oci(res: Response, code: OciErrorCode, message: string, detail?: unknown): void {
  writeOciError(res, code, message, { detail, headers: API_VERSION });
}

const ROUTES: { pattern: RegExp; kind: 'manifest' | 'blob' | 'tags' }[] = [
  { pattern: V2_PATHS.manifest, kind: 'manifest' },
  { pattern: V2_PATHS.blob, kind: 'blob' },
  { pattern: V2_PATHS.tags, kind: 'tags' },
];

/** A single "bytes=a-b", "bytes=a-" or "bytes=-n" range within `size`; null when unsatisfiable. */
export function parseRange(header: string | undefined, size: number): { start: number; end: number } | null | undefined {
  if (!header) return undefined;
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m || (m[1] === '' && m[2] === '')) return null;
  let start: number;
  let end: number;
  if (m[1] === '') {
    const n = Number(m[2]);
    if (n === 0) return null;
    start = Math.max(0, size - n);
    end = size - 1;
  } else {
    start = Number(m[1]);
    end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
  }
  return start <= end && start < size ? { start, end } : null;
}

/** Seconds a client refused a stream is told to wait: bodies in flight end within seconds. */
const RETRY_AFTER_SECONDS = 1;

export function agentApp(agent: Agent): express.Express {
  const limiter = new StreamLimiter({ total: agent.config.server.maxStreams, perClient: agent.config.server.maxStreamsPerClient });
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });
  // What the agent runs and how it is doing: for the operator (and a Prometheus), who may be
  // asked for a credential; the runtime's /v2 and the liveness probe never are.
  app.use(['/metrics', '/status'], (req, res, next) => {
    if (operationsAuthorized(req.headers.authorization, agent.config.operations)) return next();
    res.status(401).set('WWW-Authenticate', operationsChallenges(agent.config.operations!)).json({ error: 'this route needs the operations credential' });
  });
  app.get('/metrics', async (_req, res) => {
    res.type(agent.metrics.registry.contentType).send(await agent.metrics.registry.metrics());
  });
  app.get('/status', (_req, res) => {
    res.json(agent.doc);
  });
  app.all('/v2/', (req, res) => { // also /v2: express routing is not strict about the slash
    if (req.method !== 'GET' && req.method !== 'HEAD') return oci(res, 'UNSUPPORTED', 'this registry is read-only');
    res.status(200).set(API_VERSION).json({});
  });
  app.use('/v2/', async (req, res, next) => {
    const path = req.originalUrl.split('?')[0]!;
    const route = ROUTES.map((r) => ({ r, m: r.pattern.exec(path) })).find((x) => x.m);
    if (!route) return next();
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.set('Allow', 'GET, HEAD');
      return oci(res, 'UNSUPPORTED', 'this registry is read-only');
    }
    let name: string;
    let ref: string;
    try {
      name = decodeURIComponent(route.m!.groups!.name!);
      ref = decodeURIComponent(route.m!.groups!.reference ?? route.m!.groups!.digest ?? '');
    } catch {
      return oci(res, 'NAME_INVALID', 'malformed path');
    }
    if (!isRepositoryName(name)) return oci(res, 'NAME_INVALID', `invalid repository name ${JSON.stringify(name)}`);
    if (req.method === 'GET' && route.r.kind !== 'tags') {
      const client = req.socket.remoteAddress ?? 'unknown';
      const slot = limiter.take(client);
      if ('refused' in slot) {
        agent.metrics.streamsRefused.inc({ reason: slot.refused });
        res.set('Retry-After', String(RETRY_AFTER_SECONDS));
        return slot.refused === 'client'
          ? oci(res, 'TOOMANYREQUESTS', `more than ${limiter.limits.perClient} downloads at once from ${client}; retry after ${RETRY_AFTER_SECONDS} s`)
          : oci(res, 'UNAVAILABLE', `more than ${limiter.limits.total} downloads at once; retry after ${RETRY_AFTER_SECONDS} s`);
      }
      // 'close' comes once the answer is sent or the connection is gone, whichever is first.
      res.once('close', slot.release);
    }
    try {
      if (route.r.kind === 'manifest') await manifest(agent, req, res, name, ref);
      else if (route.r.kind === 'blob') await blob(agent, req, res, name, ref);
      else tags(agent, req, res, name);
    } catch (err) {
      req.socket.destroy();
      agent.log.error({ err: (err as Error).message, path }, 'serving failed');
    }
  });
  app.use((req, res) => oci(res, 'NOT_FOUND', `no route for ${req.method} ${req.path}`));
  return app;
}

async function manifest(agent: Agent, req: Request, res: Response, name: string, ref: string): Promise<void> {
  const digest = agent.view.manifest(name, ref);
  let bytes: Buffer;
  if (!digest) {
    // Not served yet, but maybe named by a verified state: fetched for the peer (pull-through.ts).
    const named = isDigest(ref) ? await agent.pullThrough?.named(name, ref) : undefined;
    if (named?.kind !== 'manifest') return oci(res, 'MANIFEST_UNKNOWN', `manifest ${ref} is not served for ${name}`, { name, reference: ref });
    try {
      bytes = await agent.pullThrough!.manifest(name, ref, named);
    } catch (err) {
      return oci(res, 'UNAVAILABLE', `manifest ${ref} could not be fetched: ${(err as Error).message}`, { name, reference: ref });
    }
    return sendManifest(req, res, ref, bytes);
  }
  try {
    bytes = await agent.store.read(digest);
  } catch {
    agent.blobCorrupt(digest);
    return oci(res, 'MANIFEST_UNKNOWN', `manifest ${ref} is being fetched again`, { name, reference: ref });
  }
  sendManifest(req, res, digest, bytes);
}

function sendManifest(req: Request, res: Response, digest: string, bytes: Buffer): void {
  let mediaType: string = MediaType.OciManifest;
  try {
    const doc = JSON.parse(bytes.toString('utf8')) as { mediaType?: string; manifests?: unknown };
    mediaType = doc.mediaType ?? (Array.isArray(doc.manifests) ? MediaType.OciIndex : MediaType.OciManifest);
  } catch {
    // served as stored
  }
  res.status(200).set({ ...API_VERSION, 'Content-Type': mediaType, 'Docker-Content-Digest': digest, 'Content-Length': String(bytes.length), ETag: `"${digest}"` });
  if (req.method === 'HEAD') res.end();
  else res.end(bytes);
}

async function blob(agent: Agent, req: Request, res: Response, name: string, digest: string): Promise<void> {
  if (!isDigest(digest)) return oci(res, 'DIGEST_INVALID', `invalid digest ${JSON.stringify(digest)}`);
  let size = agent.view.hasBlob(name, digest) ? await agent.store.size(digest) : undefined;
  if (size === undefined) {
    // Not served yet, but maybe named by a verified state: fetched for the peer (pull-through.ts).
    const named = await agent.pullThrough?.named(name, digest);
    if (named?.kind !== 'blob' || named.size === undefined) return oci(res, 'BLOB_UNKNOWN', `blob ${digest} is not served for ${name}`, { digest });
    if (!(await agent.store.has(digest, named.size))) {
      // Sent whole as it arrives (a Range is not honoured: the peer starts over from a 200).
      res.status(200).set({ ...API_VERSION, 'Docker-Content-Digest': digest, 'Content-Type': 'application/octet-stream', 'Content-Length': String(named.size), ETag: `"${digest}"` });
      if (req.method === 'HEAD') return void res.end();
      const stream = agent.pullThrough!.blob(name, digest, named.size, named);
      stream.on('error', () => res.destroy());
      stream.pipe(res);
      return;
    }
    size = named.size;
  }
  const range = parseRange(req.headers.range, size);
  const headers = { ...API_VERSION, 'Docker-Content-Digest': digest, 'Content-Type': 'application/octet-stream', 'Accept-Ranges': 'bytes', ETag: `"${digest}"` };
  if (range === null) {
    res.status(416).set({ ...headers, 'Content-Range': `bytes */${size}` });
    return oci(res, 'RANGE_NOT_SATISFIABLE', `range ${req.headers.range} is not satisfiable for ${size} bytes`);
  }
  if (range && req.method === 'GET' && !(await agent.store.verify(digest))) {
    // A range is served unchecked: the whole blob is checked first (once per version of the file).
    agent.blobCorrupt(digest);
    return oci(res, 'BLOB_UNKNOWN', `blob ${digest} is being fetched again`, { digest });
  }
  if (range) {
    res.status(206).set({ ...headers, 'Content-Range': `bytes ${range.start}-${range.end}/${size}`, 'Content-Length': String(range.end - range.start + 1) });
  } else {
    res.status(200).set({ ...headers, 'Content-Length': String(size) });
  }
  if (req.method === 'HEAD') return void res.end();
  const stream = agent.store.stream(digest, range ?? undefined, () => agent.blobCorrupt(digest));
  // The headers are sent: cutting the connection short of Content-Length is how the client
  // learns the transfer failed.
  stream.on('error', () => res.destroy());
  stream.pipe(res);
}

function tags(agent: Agent, req: Request, res: Response, name: string): void {
  const all = agent.view.tagList(name);
  if (!all) return oci(res, 'NAME_UNKNOWN', `repository ${name} is not served`, { name });
  const n = typeof req.query.n === 'string' && /^\d+$/.test(req.query.n) ? Number(req.query.n) : all.length;
  const last = typeof req.query.last === 'string' ? req.query.last : undefined;
  const after = last === undefined ? all : all.filter((t) => t > last);
  const page = after.slice(0, n);
  if (after.length > page.length && page.length > 0) {
    res.set('Link', `</v2/${name}/tags/list?n=${n}&last=${encodeURIComponent(page[page.length - 1]!)}>; rel="next"`);
  }
  res.status(200).set(API_VERSION).json({ name, tags: page });
}

/**
 * Listens on host:port. The runtime's requests are bodiless GETs and HEADs, so a request
 * whose headers take more than 10 s (or the whole request 30 s) is a slow sender holding a
 * connection: it is cut (checked every 5 s). A connection on which nothing moves for
 * `idleTimeoutMs`, say a client that stopped reading a blob, is closed, so it gives its
 * stream back. There is no cap on connections as such: one refused a stream costs little,
 * and a cap in total would shut out the runtime with the flood.
 */
export async function listen(app: express.Express, host: string, port: number, idleTimeoutMs = 60_000): Promise<{ server: Server; url: string }> {
  const server = createServer({ headersTimeout: 10_000, requestTimeout: 30_000, connectionsCheckingInterval: 5_000 }, app);
  server.timeout = idleTimeoutMs;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  return { server, url: localUrl(host, address.port) };
}

/** The URL a client on this device reaches the local server at, listening on host:port. */
export function localUrl(host: string, port: number): string {
  const h = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host.includes(':') ? `[${host}]` : host;
  return `http://${h}:${port}`;
}
