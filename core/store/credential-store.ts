import { randomBytes, scrypt, timingSafeEqual } from 'node:crypto';
import { query, type Pool } from '../db/pool.js';
import * as sql from './credential-store.sql.js';

// Per-group endpoint credentials. Secrets are random and shown once; only an scrypt hash
// is stored, and checked in constant time.

const COST = { N: 16384, r: 8, p: 1 };

function derive(secret: string, salt: Buffer, N: number, r: number, p: number): Promise<Buffer> {
  return new Promise((resolve, reject) =>
    scrypt(secret, salt, 32, { N, r, p, maxmem: 256 * N * r + 1024 * 1024 }, (err, key) => (err ? reject(err) : resolve(key))));
}

export async function hashSecret(secret: string): Promise<string> {
  const salt = randomBytes(16);
  const key = await derive(secret, salt, COST.N, COST.r, COST.p);
  return `scrypt$${COST.N}$${COST.r}$${COST.p}$${salt.toString('base64')}$${key.toString('base64')}`;
}

export async function verifySecret(secret: string, stored: string): Promise<boolean> {
  const [scheme, N, r, p, salt, hash] = stored.split('$');
  if (scheme !== 'scrypt' || !hash) return false;
  const expected = Buffer.from(hash, 'base64');
  const actual = await derive(secret, Buffer.from(salt!, 'base64'), Number(N), Number(r), Number(p));
  return actual.length === expected.length && timingSafeEqual(actual, expected);
}

let dummy: Promise<string> | undefined;

/**
 * A hash of a random secret with the same cost as real ones: an unknown username is checked
 * against it, so it costs the same work (and time) as a known one with a wrong secret.
 */
export function dummySecretHash(): Promise<string> {
  dummy ??= hashSecret(randomBytes(24).toString('base64url'));
  return dummy;
}

export const groupUsername = (group: string) => `group-${group}`;

export class CredentialStore {
  constructor(private readonly pool: Pool) {}

  /** A new credential for `group` (replacing any earlier one); the secret is returned once. */
  async create(group: string): Promise<{ username: string; secret: string }> {
    const username = groupUsername(group);
    const secret = randomBytes(24).toString('base64url');
    await query(this.pool, sql.CREATE,
      [username, group, await hashSecret(secret)]);
    return { username, secret };
  }

  async revoke(group: string): Promise<boolean> {
    const { rowCount } = await query(this.pool, 'DELETE FROM group_credentials WHERE group_name = $1', [group]);
    return rowCount === 1;
  }

  /** The stored credential of `username`, if any (the caller verifies the secret). */
  async find(username: string): Promise<{ group: string; secretHash: string } | undefined> {
    const { rows } = await query<{ group_name: string; secret_hash: string }>(this.pool,
      'SELECT group_name, secret_hash FROM group_credentials WHERE username = $1', [username]);
    const row = rows[0];
    return row && { group: row.group_name, secretHash: row.secret_hash };
  }
}
