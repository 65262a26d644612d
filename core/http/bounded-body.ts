import type { IncomingMessage } from 'node:http';
import { gunzipSync } from 'node:zlib';

// Reading an answer's body whole, with a cap. Whoever answers a request (a registry, its
// token service, Harbor's API, a proxy in between) decides how many bytes it sends; a body
// read whole into memory without a cap lets any of them take all of it. Every such read
// goes through readCapped: past the cap the stream is torn down (the connection closed,
// nothing more is buffered) and BodyTooLargeError names the URL and the cap. Bodies that
// are streamed to disk instead (image blobs) are bounded by the size their descriptor
// names, in the agent's content store.

const KiB = 1024;
const MiB = 1024 * KiB;

/**
 * A manifest: the distribution spec's limit on what a registry must accept ("Pushing
 * Manifests": 4 MiB), so the most a client ever needs to read.
 */
export const MANIFEST_LIMIT = 4 * MiB;
/**
 * Token answers, error bodies and answers to HEAD, PUT, POST and DELETE: a few hundred
 * bytes in practice. Of an error body only the start is kept (see `truncate`).
 */
export const SMALL_BODY_LIMIT = 64 * KiB;
/** One answer of Harbor's API: a page of at most 100 entries, a few KiB each. */
export const HARBOR_API_LIMIT = 16 * MiB;

/** "4 MiB", "64 KiB", "130.2 MiB", "1000 bytes": how sizes and caps are named in errors. */
export function formatBytes(n: number): string {
  if (n >= MiB) return `${Number((n / MiB).toFixed(1))} MiB`;
  if (n >= KiB) return `${Number((n / KiB).toFixed(1))} KiB`;
  return `${n} bytes`;
}

/** An answer whose body went past the cap for what it should hold: abandoned unread. */
export class BodyTooLargeError extends Error {
  constructor(
    /** The URL the request was made to (never a redirect's target, which may carry a signed query). */
    readonly url: string,
    readonly limit: number,
    /** What the body was to be, e.g. "a manifest". */
    readonly what: string,
    /** The answer's HTTP status (0 when the bytes were not an HTTP body, e.g. decompressed). */
    readonly status: number,
    /** How the cap was passed: "sent" (on the wire), "announced" (Content-Length), "decompresses to". */
    how: 'sent' | 'announced' | 'decompresses to' = 'sent',
  ) {
    super(`${url} ${how === 'announced' ? 'announced a body of' : how} more than ${formatBytes(limit)}, the cap for ${what}; the rest was not read`);
    this.name = 'BodyTooLargeError';
  }
}

export interface CapOptions {
  /** Named in the error. */
  url: string;
  limit: number;
  /** What the body should be, named in the error: "a manifest", "a token answer". */
  what: string;
  /**
   * Keep the first `limit` bytes and drop the rest, instead of failing: for an error body,
   * whose status already says what happened and whose start is enough for a message.
   */
  truncate?: boolean;
}

type Source = Response | IncomingMessage;

function isIncoming(source: Source): source is IncomingMessage {
  return typeof (source as IncomingMessage).statusCode === 'number';
}

/**
 * The body of a fetch Response or a node:http answer, whole, at most `opts.limit` bytes.
 * Past the cap (or when Content-Length announces more) the body is cancelled, which closes
 * its connection, and BodyTooLargeError is thrown; with `truncate`, the first `limit`
 * bytes are returned instead.
 */
export async function readCapped(source: Source, opts: CapOptions): Promise<Buffer> {
  const incoming = isIncoming(source);
  const status = incoming ? source.statusCode ?? 0 : source.status;
  const stream: AsyncIterable<Uint8Array> | null = incoming ? source : source.body;
  if (!stream) return Buffer.alloc(0);
  const drop = async () => {
    if (incoming) source.destroy();
    else await source.body?.cancel().catch(() => undefined);
  };
  const announced = Number((incoming ? source.headers['content-length'] : source.headers.get('content-length')) ?? NaN);
  if (!opts.truncate && announced > opts.limit) {
    await drop();
    throw new BodyTooLargeError(opts.url, opts.limit, opts.what, status, 'announced');
  }
  const chunks: Uint8Array[] = [];
  let size = 0;
  // Leaving the loop early (break, throw) ends the iteration, which destroys a node stream
  // and cancels a WHATWG one: either way the socket is closed, not drained.
  for await (const chunk of stream) {
    if (size + chunk.length > opts.limit) {
      if (!opts.truncate) throw new BodyTooLargeError(opts.url, opts.limit, opts.what, status);
      chunks.push(chunk.subarray(0, opts.limit - size));
      size = opts.limit;
      break;
    }
    chunks.push(chunk);
    size += chunk.length;
  }
  return Buffer.concat(chunks, size);
}

/**
 * A fetch for clients that read bodies themselves (openapi-fetch): every answer's body is
 * read here under `limit` (an error body: its first SMALL_BODY_LIMIT bytes) and handed on
 * whole, so the client never reads more than that.
 */
export function cappedFetch(limit: number, what: string, base: (request: Request) => Promise<Response> = fetch): (request: Request) => Promise<Response> {
  return async (request: Request): Promise<Response> => {
    const res = await base(request);
    if (!res.body) return res;
    const bytes = await readCapped(res, res.ok ? { url: request.url, limit, what } : { url: request.url, limit: SMALL_BODY_LIMIT, what: 'an error answer', truncate: true });
    return new Response(bytes, { status: res.status, statusText: res.statusText, headers: res.headers });
  };
}

/**
 * gzip'd bytes, decompressed to at most `opts.limit` bytes: a small body can decompress to
 * gigabytes (a gzip bomb), so the cap holds for what it decompresses to as well. zlib stops
 * at the cap itself (maxOutputLength), holding no more than that.
 */
export function gunzipCapped(bytes: Uint8Array, opts: CapOptions): Buffer {
  try {
    return gunzipSync(bytes, { maxOutputLength: opts.limit });
  } catch (err) {
    if ((err as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE') throw new BodyTooLargeError(opts.url, opts.limit, opts.what, 0, 'decompresses to');
    throw err;
  }
}
