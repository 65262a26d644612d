import { createHash } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import { Readable } from 'node:stream';
import { fetchTrusting, trustOptions } from '../http/trust.js';
import { BodyTooLargeError, MANIFEST_LIMIT, readCapped, SMALL_BODY_LIMIT } from '../http/bounded-body.js';

// A client of the OCI distribution API, for publishing states and reading them back.
// Auth as Harbor's registry does it: a 401 carries a challenge; Basic gets the credentials
// directly, Bearer sends them to the token service named in the challenge for a token
// scoped to the repository, then the request is retried once with that token.

export interface RegistryCredentials {
  username: string;
  password: string;
}

export class RegistryRequestError extends Error {
  constructor(
    message: string,
    readonly status: number,
    /** The OCI error code of the answer's body, when it had one. */
    readonly code: string | undefined,
    /** Whether the same request may succeed later (5xx, 429, timeouts, broken connections). */
    readonly retryable: boolean,
  ) {
    super(message);
    this.name = 'RegistryRequestError';
  }
}

export interface ManifestInfo {
  digest: string;
  mediaType: string;
  size: number;
}

export interface FetchedManifest extends ManifestInfo {
  bytes: Buffer;
}

/**
 * What reading from a registry needs of a client: a RegistryClient, or anything that reads
 * the same way from elsewhere (the agent's site upstreams before the registry).
 */
export type RegistryReader = Pick<RegistryClient, 'baseUrl' | 'headManifest' | 'getManifest' | 'getBlob' | 'openBlob'>;

const MANIFEST_ACCEPT = [
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.docker.distribution.manifest.v2+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
].join(', ');

const sha256 = (b: Uint8Array) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

function parseChallenge(header: string): { scheme: string; params: Record<string, string> } {
  const space = header.indexOf(' ');
  const scheme = (space < 0 ? header : header.slice(0, space)).toLowerCase();
  const params: Record<string, string> = {};
  const re = /([a-zA-Z_]+)="([^"]*)"/g;
  for (let m = re.exec(header); m; m = re.exec(header)) params[m[1]!.toLowerCase()] = m[2]!;
  return { scheme, params };
}

/** Timeouts, refused and reset connections: worth another try. */
function networkError(err: unknown, what: string): RegistryRequestError {
  const cause = (err as { cause?: { code?: string; message?: string } }).cause;
  const detail = cause?.code ?? cause?.message ?? (err as Error).message;
  return new RegistryRequestError(`${what}: ${detail}`, 0, undefined, true);
}

/**
 * What request() answers: a WHATWG Response (GETs, which may be redirected to the
 * registry's storage, and streamed answers), or the same surface over node:http for
 * everything else. Its body is read whole only through `read`, under a cap.
 */
export interface RegistryResponse {
  readonly status: number;
  readonly ok: boolean;
  readonly headers: { get(name: string): string | null };
  /** The body, whole, at most `limit` bytes (see readCapped); past it, BodyTooLargeError. */
  read(limit: number, what: string, opts?: { truncate?: boolean }): Promise<Buffer>;
  /** Drops the body unread. */
  discard(): Promise<void>;
}

/** An answer read whole by node:http (answers to HEAD, PUT, POST, DELETE are small). */
class PlainResponse implements RegistryResponse {
  readonly ok: boolean;
  constructor(readonly status: number, private readonly raw: http.IncomingHttpHeaders, private readonly bytes: Buffer, private readonly url: string) {
    this.ok = status >= 200 && status < 300;
  }

  readonly headers = {
    get: (name: string): string | null => {
      const v = this.raw[name.toLowerCase()];
      return v === undefined ? null : Array.isArray(v) ? v.join(', ') : v;
    },
  };

  async read(limit: number, what: string, opts: { truncate?: boolean } = {}): Promise<Buffer> {
    if (this.bytes.length <= limit) return this.bytes;
    if (opts.truncate) return this.bytes.subarray(0, limit);
    throw new BodyTooLargeError(this.url, limit, what, this.status);
  }

  async discard(): Promise<void> {
    // read already, under SMALL_BODY_LIMIT
  }
}

/** A fetch answer, its body still on the wire. */
class FetchedResponse implements RegistryResponse {
  constructor(readonly response: Response, private readonly url: string) {}

  get status(): number {
    return this.response.status;
  }

  get ok(): boolean {
    return this.response.ok;
  }

  get headers(): { get(name: string): string | null } {
    return this.response.headers;
  }

  read(limit: number, what: string, opts: { truncate?: boolean } = {}): Promise<Buffer> {
    return readCapped(this.response, { url: this.url, limit, what, ...opts });
  }

  async discard(): Promise<void> {
    await this.response.body?.cancel().catch(() => undefined);
  }
}

const REDIRECTS = new Set([301, 302, 303, 307, 308]);

/** Docker's token spec: a token without expires_in is good for 60 seconds. */
const DEFAULT_TOKEN_SECONDS = 60;
/** A token is renewed this long before it expires, so a request never carries a stale one. */
const TOKEN_MARGIN_MS = 5_000;

interface Authorization {
  header: string;
  /** When a Bearer token stops being good; undefined for Basic. */
  expiresAt?: number;
}

export class RegistryClient {
  /** Authorization per scope, reused until it expires or a 401 says otherwise. */
  private readonly authorizations = new Map<string, Authorization>();
  /** The last Bearer challenge seen: lets an expired token be renewed without a 401 first. */
  private bearer: Record<string, string> | undefined;
  /** Kept-alive connections for the requests made with node:http. */
  private readonly agent: http.Agent;
  /** PEM CA certificates trusted besides the system's: fetch's options for them are made on first use (core/http/trust.ts). */
  private readonly ca: string | undefined;

  constructor(
    readonly baseUrl: string,
    private readonly credentials?: RegistryCredentials,
    private readonly timeoutMs = 30_000,
    /** What tokens are asked for: "pull,push" to publish, "pull" for a pull-only robot. */
    private readonly actions: 'pull' | 'pull,push' = 'pull,push',
    /** PEM CA certificates trusted for HTTPS besides the system's (the agent's caFile), for every request, token service included. */
    ca?: string,
  ) {
    this.agent = baseUrl.startsWith('https:') ? new https.Agent({ keepAlive: true, ...trustOptions(ca) }) : new http.Agent({ keepAlive: true });
    this.ca = ca;
  }

  /**
   * A request that is not a GET, over node:http: several times cheaper in CPU than fetch,
   * and a publish makes a dozen of them. A redirect is not followed here (registries do not
   * redirect these), it comes back as an answer like any other.
   */
  private plainRequest(method: string, url: string, headers: Record<string, string>, body: Buffer | (() => Readable) | undefined): Promise<RegistryResponse> {
    return new Promise((resolve, reject) => {
      const target = new URL(url);
      const req = (target.protocol === 'https:' ? https : http).request(target, {
        method, agent: this.agent,
        headers: { ...headers, ...(Buffer.isBuffer(body) ? { 'Content-Length': String(body.length) } : {}) },
      }, (res) => {
        const status = res.statusCode ?? 0;
        // Answers to these requests are small; an error body is kept only for its message.
        const ok = status >= 200 && status < 300;
        readCapped(res, { url, limit: SMALL_BODY_LIMIT, what: `an answer to ${method}`, truncate: !ok }).then(
          (bytes) => resolve(new PlainResponse(status, res.headers, bytes, url)),
          reject,
        ).finally(() => clearTimeout(timer));
      });
      const timer = setTimeout(() => req.destroy(new Error(`no answer within ${this.timeoutMs} ms`)), this.timeoutMs);
      req.on('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
      if (typeof body === 'function') {
        const source = body();
        source.on('error', (err) => req.destroy(err));
        source.pipe(req);
      } else {
        req.end(body);
      }
    });
  }

  /** "host:port" as it appears in image references. */
  get host(): string {
    return new URL(this.baseUrl).host;
  }

  private basic(): string | undefined {
    if (!this.credentials) return undefined;
    return `Basic ${Buffer.from(`${this.credentials.username}:${this.credentials.password}`).toString('base64')}`;
  }

  private async token(params: Record<string, string>, scope: string): Promise<Authorization> {
    const url = new URL(params.realm!);
    if (params.service) url.searchParams.set('service', params.service);
    url.searchParams.set('scope', scope); // what this client needs, not what the challenge suggests
    const basic = this.basic();
    let res: Response;
    try {
      res = await fetch(url, { headers: basic ? { Authorization: basic } : {}, signal: AbortSignal.timeout(this.timeoutMs), ...(await fetchTrusting(this.ca)) });
    } catch (err) {
      throw networkError(err, `token service ${url.origin}`);
    }
    if (!res.ok) {
      await res.body?.cancel().catch(() => undefined);
      throw new RegistryRequestError(`token service answered ${res.status}`, res.status, undefined, res.status >= 500 || res.status === 429);
    }
    const text = (await readCapped(res, { url: `${url.origin}${url.pathname}`, limit: SMALL_BODY_LIMIT, what: 'a token answer' })).toString('utf8');
    let body: { token?: string; access_token?: string; expires_in?: number; issued_at?: string };
    try {
      body = JSON.parse(text) as typeof body;
    } catch {
      // A proxy's error page with a 200, say: worth another try, as any failed token request.
      throw new RegistryRequestError('token service answered with a body that is not JSON', res.status, undefined, true);
    }
    const token = body.token ?? body.access_token;
    if (!token) throw new RegistryRequestError('token service answered without a token', res.status, undefined, false);
    const seconds = typeof body.expires_in === 'number' && body.expires_in > 0 ? body.expires_in : DEFAULT_TOKEN_SECONDS;
    const issued = body.issued_at ? Date.parse(body.issued_at) : NaN;
    // The issuer's clock may differ from ours: count from now when issued_at is in the future or absent.
    const from = Number.isFinite(issued) && issued <= Date.now() ? issued : Date.now();
    return { header: `Bearer ${token}`, expiresAt: from + seconds * 1000 - TOKEN_MARGIN_MS };
  }

  /** The authorization to send for a scope: cached while good, renewed ahead of a 401 when it expired. */
  private async authorizationFor(scope: string): Promise<string | undefined> {
    const cached = this.authorizations.get(scope);
    if (cached && (cached.expiresAt === undefined || cached.expiresAt > Date.now())) return cached.header;
    this.authorizations.delete(scope);
    if (cached && this.bearer && this.credentials) {
      const renewed = await this.token(this.bearer, scope);
      this.authorizations.set(scope, renewed);
      return renewed.header;
    }
    return undefined;
  }

  /** One request with auth; `repository` scopes a Bearer token. Throws on a non-2xx answer unless `allow` lists it. */
  async request(method: string, path: string, opts: {
    repository: string;
    headers?: Record<string, string>;
    /** Bytes, or a function opening a stream of them (called again if the request is re-sent after a 401). */
    body?: Buffer | (() => Readable);
    allow?: number[];
    stream?: boolean;
  }): Promise<RegistryResponse> {
    const scope = `repository:${opts.repository}:${this.actions}`;
    const url = path.startsWith('http') ? path : `${this.baseUrl}${path}`;
    const send = async (authorization: string | undefined): Promise<RegistryResponse> => {
      if (method !== 'GET' && !opts.stream) {
        let plain: RegistryResponse;
        try {
          plain = await this.plainRequest(method, url, { ...(authorization ? { Authorization: authorization } : {}), ...(opts.headers ?? {}) }, opts.body);
        } catch (err) {
          if (err instanceof BodyTooLargeError) throw err;
          throw networkError(err, `${method} ${path}`);
        }
        // A registry that sends even these to its storage (a blob HEAD): fetch follows.
        if (!REDIRECTS.has(plain.status)) return plain;
      }
      // A streamed answer is timed until its headers arrive; its body may take as long as it
      // needs (the reader decides when it is stuck). Anything else is timed whole.
      const headersDue = opts.stream ? new AbortController() : undefined;
      const timer = headersDue && setTimeout(() => headersDue.abort(new Error(`no answer within ${this.timeoutMs} ms`)), this.timeoutMs);
      try {
        return new FetchedResponse(await fetch(url, {
          ...(await fetchTrusting(this.ca)),
          method,
          headers: { ...(authorization ? { Authorization: authorization } : {}), ...(opts.headers ?? {}) },
          ...(typeof opts.body === 'function'
            ? { body: Readable.toWeb(opts.body()) as ReadableStream, duplex: 'half' as const }
            : { body: opts.body }),
          redirect: 'follow',
          signal: headersDue ? headersDue.signal : AbortSignal.timeout(this.timeoutMs),
        }), url);
      } catch (err) {
        throw networkError(err, `${method} ${path}`);
      } finally {
        clearTimeout(timer);
      }
    };
    let res = await send(await this.authorizationFor(scope));
    if (res.status === 401) {
      const challenge = res.headers.get('www-authenticate');
      await res.discard();
      if (challenge && this.credentials) {
        const { scheme, params } = parseChallenge(challenge);
        if (scheme === 'bearer' && params.realm) this.bearer = { realm: params.realm, ...(params.service ? { service: params.service } : {}) };
        const authorization = scheme === 'bearer' && params.realm ? await this.token(params, scope) : { header: this.basic()! };
        this.authorizations.set(scope, authorization);
        res = await send(authorization.header);
      }
    }
    if (res.ok || opts.allow?.includes(res.status)) return res;
    const text = (await res.read(SMALL_BODY_LIMIT, 'an error answer', { truncate: true }).catch(() => Buffer.alloc(0))).toString('utf8');
    let code: string | undefined;
    let message = text.slice(0, 300);
    try {
      const first = (JSON.parse(text) as { errors?: { code?: string; message?: string }[] }).errors?.[0];
      code = first?.code;
      message = first?.message ?? message;
    } catch {
      // not an OCI error body
    }
    const retryable = res.status >= 500 || res.status === 429 || res.status === 408;
    throw new RegistryRequestError(`${method} ${path} answered ${res.status}${code ? ` ${code}` : ''}: ${message}`, res.status, code, retryable);
  }

  async headManifest(repository: string, reference: string): Promise<ManifestInfo | undefined> {
    const res = await this.request('HEAD', `/v2/${repository}/manifests/${reference}`, { repository, headers: { Accept: MANIFEST_ACCEPT }, allow: [404] });
    if (res.status === 404) return undefined;
    return {
      digest: res.headers.get('docker-content-digest') ?? '',
      mediaType: res.headers.get('content-type') ?? '',
      size: Number(res.headers.get('content-length') ?? 0),
    };
  }

  /** The manifest's exact bytes; its digest is computed, not trusted from a header. */
  async getManifest(repository: string, reference: string): Promise<FetchedManifest | undefined> {
    const res = await this.request('GET', `/v2/${repository}/manifests/${reference}`, { repository, headers: { Accept: MANIFEST_ACCEPT }, allow: [404] });
    if (res.status === 404) {
      await res.discard();
      return undefined;
    }
    const bytes = await res.read(MANIFEST_LIMIT, 'a manifest');
    const digest = sha256(bytes);
    if (reference.startsWith('sha256:') && digest !== reference) {
      throw new RegistryRequestError(`manifest ${reference} arrived with digest ${digest}`, res.status, 'DIGEST_INVALID', true);
    }
    return { bytes, digest, mediaType: res.headers.get('content-type') ?? '', size: bytes.length };
  }

  async putManifest(repository: string, reference: string, bytes: Buffer, mediaType: string): Promise<string> {
    const res = await this.request('PUT', `/v2/${repository}/manifests/${reference}`, { repository, headers: { 'Content-Type': mediaType }, body: bytes });
    await res.discard();
    const digest = sha256(bytes);
    const echoed = res.headers.get('docker-content-digest');
    if (echoed && echoed !== digest) {
      throw new RegistryRequestError(`registry stored ${echoed} for a manifest whose digest is ${digest}`, res.status, 'DIGEST_INVALID', false);
    }
    return digest;
  }

  async deleteManifest(repository: string, digest: string): Promise<boolean> {
    const res = await this.request('DELETE', `/v2/${repository}/manifests/${digest}`, { repository, allow: [404] });
    await res.discard();
    return res.status !== 404;
  }

  async blobExists(repository: string, digest: string): Promise<boolean> {
    const res = await this.request('HEAD', `/v2/${repository}/blobs/${digest}`, { repository, allow: [404] });
    return res.status !== 404;
  }

  /**
   * Pushes a blob unless the registry has it (HEAD first): POST for a session, PUT ?digest=.
   * `isNew`: the caller made these bytes for this push (a new version's layer), so the HEAD
   * is skipped; were it wrong, the blob is only uploaded again. `digest`: already known.
   */
  async pushBlob(repository: string, bytes: Buffer, opts: { isNew?: boolean; digest?: string } = {}): Promise<string> {
    const digest = opts.digest ?? sha256(bytes);
    if (!opts.isNew && (await this.blobExists(repository, digest))) return digest;
    await this.upload(repository, digest, { 'Content-Type': 'application/octet-stream' }, bytes);
    return digest;
  }

  /** Pushes a blob streamed from `open` (a file, say) unless the registry has it: POST, then PUT ?digest= with the bytes. */
  async pushBlobFrom(repository: string, digest: string, size: number, open: () => Readable): Promise<void> {
    if (await this.blobExists(repository, digest)) return;
    await this.upload(repository, digest, { 'Content-Type': 'application/octet-stream', 'Content-Length': String(size) }, open);
  }

  /** A monolithic upload: POST for a session, then PUT ?digest= with the bytes. */
  private async upload(repository: string, digest: string, headers: Record<string, string>, body: Buffer | (() => Readable)): Promise<void> {
    const start = await this.request('POST', `/v2/${repository}/blobs/uploads/`, { repository, headers: { 'Content-Length': '0' } });
    await start.discard();
    const location = start.headers.get('location');
    if (!location) throw new RegistryRequestError('upload session has no Location', start.status, undefined, true);
    const url = new URL(location, this.baseUrl);
    url.searchParams.set('digest', digest);
    const put = await this.request('PUT', url.toString(), { repository, headers, body });
    await put.discard();
  }

  /**
   * A blob's bytes as a stream, from byte `offset` on (an HTTP Range request when > 0). The
   * answer is 206 when the registry honoured the range, 200 when it sends the whole blob.
   */
  async openBlob(repository: string, digest: string, offset = 0): Promise<Response> {
    const res = await this.request('GET', `/v2/${repository}/blobs/${digest}`, {
      repository,
      headers: offset > 0 ? { Range: `bytes=${offset}-` } : {},
      stream: true,
    });
    // A GET goes through fetch: its Response, whose body streams (to the caller's file,
    // bounded by the size the blob's descriptor names).
    return (res as FetchedResponse).response;
  }

  /**
   * A blob read whole into memory, at most `limit` bytes (`what` it is names the cap in the
   * error): by default a manifest's cap, which configs and signature payloads are far under.
   */
  async getBlob(repository: string, digest: string, limit = MANIFEST_LIMIT, what = 'a blob'): Promise<Buffer> {
    const res = await this.request('GET', `/v2/${repository}/blobs/${digest}`, { repository });
    const bytes = await res.read(limit, what);
    if (sha256(bytes) !== digest) throw new RegistryRequestError(`blob ${digest} arrived corrupted`, res.status, 'DIGEST_INVALID', true);
    return bytes;
  }

  async listTags(repository: string): Promise<string[]> {
    const res = await this.request('GET', `/v2/${repository}/tags/list`, { repository, allow: [404] });
    if (res.status === 404) {
      await res.discard();
      return [];
    }
    const body = JSON.parse((await res.read(MANIFEST_LIMIT, 'a tag list')).toString('utf8')) as { tags?: string[] | null };
    return body.tags ?? [];
  }
}
