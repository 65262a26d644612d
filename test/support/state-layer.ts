import { createHash } from 'node:crypto';
import { gunzipSync, gzipSync } from 'node:zlib';

// A state's full layer remade from its text, as the worker lays it out (worker/state-content.ts):
// a gzip member for the head, one per chunk of entries (a chunk ends after an entry whose
// digest ends in "00"), one for the tail. Written from the format, not from the worker's
// code, so a test can check the worker's bytes against it and make layers it would not write.

interface Laid {
  head: string;
  chunks: string[][];
}

function layOut(layer: Buffer): Laid {
  const text = gunzipSync(layer).toString('utf8');
  const at = text.indexOf('"artifacts":[') + '"artifacts":['.length;
  const entries = (JSON.parse(text) as { artifacts: { digest: string }[] }).artifacts;
  const chunks: string[][] = [];
  let chunk: string[] = [];
  for (const e of entries) {
    chunk.push(JSON.stringify(e));
    if (e.digest.endsWith('00')) {
      chunks.push(chunk);
      chunk = [];
    }
  }
  if (chunk.length > 0) chunks.push(chunk);
  return { head: text.slice(0, at), chunks };
}

function gzipLaid({ head, chunks }: Laid): { gzip: Buffer; digest: string } {
  const texts = [head, ...chunks.map((c, i) => `${i > 0 ? ',' : ''}${c.join(',')}`), ']}'];
  return {
    gzip: Buffer.concat(texts.map((t) => gzipSync(Buffer.from(t), { level: 6 }))),
    digest: `sha256:${createHash('sha256').update(texts.join('')).digest('hex')}`,
  };
}

/** How many gzip members the layer has as the worker lays it out (head and tail included). */
export function gzipMembersOf(layer: Buffer): number {
  const laid = layOut(layer);
  if (!gzipLaid(laid).gzip.equals(layer)) throw new Error('the layer is not laid out as a worker lays it out');
  return laid.chunks.length + 2;
}

/**
 * The layer with two entries in the middle of chunk `n` swapped (its first and last
 * entries left in place): out of order where only reading the whole chunk tells.
 */
export function swapInChunk(layer: Buffer, n: number): { gzip: Buffer; digest: string } {
  const laid = layOut(layer);
  const chunk = laid.chunks[n];
  if (!chunk || chunk.length < 4) throw new Error(`chunk ${n} has fewer than 4 entries`);
  [chunk[1], chunk[2]] = [chunk[2]!, chunk[1]!];
  return gzipLaid(laid);
}
