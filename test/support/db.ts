import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { migrate } from '../../core/db/migrate.js';
import { createPool, type Pool } from '../../core/db/pool.js';

/** The server the tests use; each test file gets a database of its own on it. */
export const ADMIN_URL = process.env.TEST_DATABASE_ADMIN_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

/**
 * What every test (and benchmark) database's name starts with, a random suffix after it:
 * TEST_DATABASE_PREFIX when set (so work beside it can tell its databases apart).
 */
export function databasePrefix(env: NodeJS.ProcessEnv = process.env): string {
  const p = env.TEST_DATABASE_PREFIX ?? 'satellite_test_';
  if (!/^[a-z_][a-z0-9_]{0,40}$/.test(p)) throw new Error(`TEST_DATABASE_PREFIX=${JSON.stringify(p)}: lower-case letters, digits and _ only (at most 41), not starting with a digit`);
  return p;
}

export interface TestDatabase {
  url: string;
  pool: Pool;
  /** Every row of every table, in a stable order: compare two to prove nothing changed. */
  dump(): Promise<string>;
  drop(): Promise<void>;
}

export async function createTestDatabase(): Promise<TestDatabase> {
  const name = `${databasePrefix()}${randomBytes(6).toString('hex')}`;
  const url = new URL(ADMIN_URL);
  url.pathname = `/${name}`;
  await migrate(url.toString()); // creates the database too
  const pool = createPool(url.toString(), 5);
  return {
    url: url.toString(),
    pool,
    async dump() {
      const { rows: tables } = await pool.query<{ table_name: string }>(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY table_name",
      );
      const parts: string[] = [];
      for (const { table_name } of tables) {
        const { rows } = await pool.query(`SELECT * FROM "${table_name}"`);
        const lines = rows.map((r) => JSON.stringify(r)).sort();
        parts.push(`== ${table_name}\n${lines.join('\n')}`);
      }
      return parts.join('\n');
    },
    async drop() {
      await pool.end();
      const admin = new pg.Client({ connectionString: ADMIN_URL });
      await admin.connect();
      try {
        await admin.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
      } finally {
        await admin.end();
      }
    },
  };
}
