import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

// Registration tokens, webhook secrets and robot secrets are random (≥ 128 bits), so a plain
// SHA-256 is enough to keep them out of the database (no guessing to slow down, unlike a
// password); it also lets a token be looked up by its hash.

/** A random secret, e.g. "sat_…", shown once. */
export function newSecret(prefix: string, bytes = 32): string {
  return `${prefix}_${randomBytes(bytes).toString('base64url')}`;
}

export function sha256(secret: string): Buffer {
  return createHash('sha256').update(secret, 'utf8').digest();
}

/** Constant-time comparison of a presented secret with a stored hash. */
export function matches(secret: string, storedHash: Buffer): boolean {
  const h = sha256(secret);
  return h.length === storedHash.length && timingSafeEqual(h, storedHash);
}
