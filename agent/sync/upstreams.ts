import type { Logger } from 'pino';
import { BodyTooLargeError } from '../../core/http/bounded-body.js';
import { isDigest } from '../../core/oci/digest.js';
import { RegistryClient, RegistryRequestError, type FetchedManifest, type ManifestInfo, type RegistryReader } from '../../core/registry/registry-client.js';
import type { Descriptor } from '../../core/oci/manifest.js';
import type { AgentMetrics } from '../metrics.js';
import { CorruptContentError, StalledDownloadError, type ContentStore, type IngestResult } from '../store/content-store.js';
import { isStoreFull } from '../store/space.js';
import type { UpstreamRecord } from '../store/state-doc.js';

// Site upstreams (`upstreams:`): other agents' /v2 servers at the site, a gateway or peers,
// asked before the registry so that a site downloads each blob over its WAN link once.
// Nothing they send is trusted more than the registry's answer would be:
//   - the state's tag (`latest`, or a pinned `v<N>`) is resolved at the registry, which is
//     tiny; the upstreams are asked only when the registry cannot be reached, and what they
//     name then goes through the same signature and rollback checks (verify.ts);
//   - everything addressed by digest (the state manifest and its layers, manifests, blobs)
//     and the cosign signature manifest `sha256-<hex>.sig` (whose content the signature check
//     judges) comes from the first upstream that has it, checked against its digest as it
//     arrives, else from the registry;
//   - an upstream that fails (bytes not matching their digest, a refused state, 5xx, a
//     timeout, a refused connection, a body that stalls) is skipped for that object, reported
//     (one warn line per upstream and kind of failure until it serves again, a metric, the
//     status), and left alone for a short, growing while (a circuit breaker), so a gateway
//     gone away costs one short timeout, not one per blob.

/** Why an upstream was skipped. */
export type UpstreamFailure = 'refused' | 'cut' | 'timeout' | 'server-error' | 'corrupt' | 'stalled' | 'bad-state' | 'rollback' | 'error';

/** The first pause after a failure; doubled for each failure in a row, up to BACKOFF_MAX_MS. */
const BACKOFF_BASE_MS = 15_000;
const BACKOFF_MAX_MS = 5 * 60_000;

const NETWORK_REFUSED = /ECONNREFUSED|ECONNRESET|EHOSTUNREACH|ENETUNREACH|ENOTFOUND|EAI_AGAIN|EPIPE/;
/** undici's word for a body whose connection closed before its end. */
const NETWORK_CUT = /^terminated$|other side closed|UND_ERR_SOCKET/;
const NETWORK_TIMEOUT = /timeout|timed out|no answer within|TIMEOUT|aborted/i;

/** The kind of failure `err` is, from an upstream. */
export function failureKind(err: unknown): UpstreamFailure {
  if (err instanceof CorruptContentError || err instanceof BodyTooLargeError) return 'corrupt';
  if (err instanceof StalledDownloadError) return 'stalled';
  if (err instanceof RegistryRequestError) {
    if (err.code === 'DIGEST_INVALID') return 'corrupt';
    if (err.status >= 500) return 'server-error';
    if (err.status === 0 && NETWORK_TIMEOUT.test(err.message)) return 'timeout';
    if (err.status === 0 && NETWORK_REFUSED.test(err.message)) return 'refused';
    return 'error';
  }
  const message = (err as Error)?.message ?? String(err);
  if (NETWORK_CUT.test(message)) return 'cut';
  if (NETWORK_TIMEOUT.test(message) || (err as Error)?.name === 'TimeoutError') return 'timeout';
  if (NETWORK_REFUSED.test(message)) return 'refused';
  return 'error';
}

/** A registry answer that says the registry could not be reached (not: it answered no). */
export function isUnreachable(err: unknown): boolean {
  return err instanceof RegistryRequestError && (err.status === 0 || err.status >= 500 || err.status === 429);
}

/** An answer that only says the upstream does not hold the object: no failure, try the next. */
const notHeld = (err: unknown): boolean => err instanceof RegistryRequestError && err.status === 404;

export class Upstream {
  readonly client: RegistryClient;
  /** Until when it is skipped (ms since the epoch; 0: not skipped). */
  skipUntil = 0;
  /** Failures in a row (the backoff's exponent). */
  strikes = 0;
  /** Kinds of failure already logged since it last served. */
  readonly logged = new Set<UpstreamFailure>();

  constructor(readonly url: string, timeoutMs: number, ca: string | undefined) {
    // Anonymous: the pull credential belongs to the registry, and an agent's server asks none.
    this.client = new RegistryClient(url, undefined, timeoutMs, 'pull', ca);
  }
}

/** The configured upstreams, their circuit breakers, and what they are reported as. */
export class Upstreams {
  readonly list: Upstream[];

  constructor(
    urls: readonly string[],
    /** How long an upstream may take to answer, or stay silent mid-body. */
    readonly timeoutMs: number,
    ca: string | undefined,
    private readonly log: Logger,
    private readonly metrics: AgentMetrics,
    /** Where the status (agent-state.json's `upstreams`, /status, `agent status`) is kept. */
    private readonly record: () => Record<string, UpstreamRecord>,
    private readonly clock: () => number = Date.now,
  ) {
    this.list = urls.map((u) => new Upstream(u, timeoutMs, ca));
  }

  /** The upstreams not backing off, in the configured order. */
  available(): Upstream[] {
    const now = this.clock();
    return this.list.filter((u) => u.skipUntil <= now);
  }

  /** `u` failed for an object: reported, and skipped for a while. */
  failed(u: Upstream, err: unknown, kind: UpstreamFailure = failureKind(err)): void {
    const message = (err as Error)?.message ?? String(err);
    u.strikes++;
    u.skipUntil = this.clock() + Math.min(BACKOFF_BASE_MS * 2 ** (u.strikes - 1), BACKOFF_MAX_MS);
    this.metrics.upstreamFailures.inc({ upstream: u.url, reason: kind });
    const rec = (this.record()[u.url] ??= { failures: {} });
    rec.failures[kind] = (rec.failures[kind] ?? 0) + 1;
    rec.last = { reason: kind, message: message.slice(0, 500), at: new Date(this.clock()).toISOString() };
    rec.skippedUntil = new Date(u.skipUntil).toISOString();
    if (u.logged.has(kind)) return;
    u.logged.add(kind);
    this.log.warn({ upstream: u.url, reason: kind, err: message, skippedForMs: u.skipUntil - this.clock() }, 'site upstream failed; skipped for a while, the registry serves instead');
  }

  /** `u` served an object (`bytes` of it). */
  served(u: Upstream, bytes: number): void {
    if (bytes > 0) this.metrics.upstreamBytes.inc({ upstream: u.url }, bytes);
    if (u.strikes === 0) return;
    u.strikes = 0;
    u.skipUntil = 0;
    u.logged.clear();
    const rec = this.record()[u.url];
    if (rec) delete rec.skippedUntil;
    this.log.info({ upstream: u.url }, 'site upstream serves again');
  }
}

/**
 * A registry reader that asks the site's upstreams first for what a digest (or a cosign
 * signature tag) names, and the registry first for any other tag (the upstreams only when it
 * cannot be reached). `served` names the upstreams that delivered something through it, so a
 * state read from them and refused can blame them, and be read again from the registry alone.
 * With `keep`, every manifest and blob read is kept in memory by digest (verify.ts stores the
 * state's, so that this agent serves them to its own peers).
 */
export class SiteClient implements RegistryReader {
  readonly served = new Set<Upstream>();
  /** The upstream whose tag named what headManifest answered (the registry being unreachable). */
  tagFrom: Upstream | undefined;
  /** Bytes the upstreams delivered through it. */
  fromUpstreams = 0;
  /** What the upstreams delivered (not the registry): not counted as bytes over the registry link. */
  readonly delivered = new WeakSet<object>();
  readonly kept = { manifests: new Map<string, Buffer>(), blobs: new Map<string, Buffer>(), tags: new Map<string, string>() };

  constructor(readonly registry: RegistryReader, readonly upstreams: Upstreams | undefined, private readonly keep = false) {}

  get baseUrl(): string {
    return this.registry.baseUrl;
  }

  async headManifest(repository: string, reference: string): Promise<ManifestInfo | undefined> {
    if (isDigest(reference)) return this.upstreamFirst((c) => c.headManifest(repository, reference), (r) => r === undefined);
    try {
      return await this.registry.headManifest(repository, reference);
    } catch (err) {
      if (!isUnreachable(err) || !this.upstreams) throw err;
      for (const u of this.upstreams.available()) {
        try {
          const head = await u.client.headManifest(repository, reference);
          this.upstreams.served(u, 0);
          if (!head) continue;
          this.served.add(u);
          this.tagFrom = u;
          return head;
        } catch (uerr) {
          this.upstreams.failed(u, uerr);
        }
      }
      throw err;
    }
  }

  async getManifest(repository: string, reference: string): Promise<FetchedManifest | undefined> {
    const viaUpstream = isDigest(reference) || /^sha(256|512)-[a-f0-9]+\.sig$/.test(reference);
    const m = viaUpstream
      ? await this.upstreamFirst((c) => c.getManifest(repository, reference), (r) => r === undefined)
      : await this.registry.getManifest(repository, reference);
    if (m && this.keep) {
      this.kept.manifests.set(m.digest, m.bytes);
      if (!isDigest(reference)) this.kept.tags.set(reference, m.digest);
    }
    return m;
  }

  async getBlob(repository: string, digest: string, limit?: number, what?: string): Promise<Buffer> {
    const bytes = await this.upstreamFirst((c) => c.getBlob(repository, digest, limit, what), () => false);
    if (this.keep) this.kept.blobs.set(digest, bytes);
    return bytes;
  }

  openBlob(repository: string, digest: string, offset?: number): Promise<Response> {
    return this.registry.openBlob(repository, digest, offset);
  }

  /** Asks each upstream not backing off in turn, then the registry; `absent` says an answer means "not held". */
  private async upstreamFirst<T>(ask: (c: RegistryReader) => Promise<T>, absent: (r: T) => boolean): Promise<T> {
    for (const u of this.upstreams?.available() ?? []) {
      try {
        const r = await ask(u.client);
        if (absent(r)) continue;
        this.served.add(u);
        if (typeof r === 'object' && r !== null) this.delivered.add(r);
        const bytes = Buffer.isBuffer(r) ? r.length : Buffer.isBuffer((r as { bytes?: unknown })?.bytes) ? (r as { bytes: Buffer }).bytes.length : 0;
        this.fromUpstreams += bytes;
        this.upstreams!.served(u, bytes);
        return r;
      } catch (err) {
        if (notHeld(err)) continue;
        this.upstreams!.failed(u, err);
      }
    }
    return ask(this.registry);
  }

  /**
   * A blob into the store: from the first upstream that has it (the body's silence bounded
   * by the upstream timeout), else from the registry. A download an upstream left half done
   * is resumed from the registry and the whole checked against the digest; should that fail,
   * the blob is fetched again whole from the registry: bytes from an upstream count only
   * when the digest verifies. Resolves with the bytes that came from the registry.
   */
  async ingest(store: ContentStore, repository: string, d: Pick<Descriptor, 'digest' | 'size'>): Promise<IngestResult & { fromUpstream: number }> {
    let touched = false;
    for (const u of this.upstreams?.available() ?? []) {
      try {
        const r = await store.ingest(d.digest, d.size, (offset) => u.client.openBlob(repository, d.digest, offset), this.upstreams!.timeoutMs);
        this.upstreams!.served(u, r.downloaded);
        return { downloaded: 0, resumedFrom: r.resumedFrom, fromUpstream: r.downloaded };
      } catch (err) {
        if (isStoreFull(err)) throw err;
        if (notHeld(err)) continue;
        touched = true;
        this.upstreams!.failed(u, err);
      }
    }
    const fromRegistry = (offset: number) => this.registry.openBlob(repository, d.digest, offset);
    try {
      return { ...(await store.ingest(d.digest, d.size, fromRegistry)), fromUpstream: 0 };
    } catch (err) {
      // The partial file the upstream left was removed by the failed check: start over.
      if (!touched || !(err instanceof CorruptContentError)) throw err;
      return { ...(await store.ingest(d.digest, d.size, fromRegistry)), fromUpstream: 0 };
    }
  }
}
