import type { Request } from 'express';
import { RegistryError } from '../../core/errors.js';

/**
 * Reads a request body of at most `limit` bytes into memory. A declared Content-Length over
 * the limit is refused before a byte is read; an undeclared one is cut off at the limit.
 */
export async function readBody(req: Request, limit: number): Promise<Buffer> {
  const tooLarge = () => new RegistryError('PAYLOAD_TOO_LARGE', `body exceeds the limit of ${limit} bytes`);
  const declared = Number(req.headers['content-length'] ?? NaN);
  if (declared > limit) throw tooLarge();
  const parts: Buffer[] = [];
  let total = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    total += chunk.length;
    if (total > limit) throw tooLarge();
    parts.push(chunk);
  }
  return Buffer.concat(parts, total);
}
