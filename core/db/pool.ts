import { createHash } from 'node:crypto';
import pg from 'pg';
import { InvalidDataError, StoreUnavailableError } from '../errors.js';

export type Pool = pg.Pool;
export type Client = pg.PoolClient;

export function createPool(databaseUrl: string, max = 10): Pool {
  // JIT off: every query here is short, except a large group's listing, which JIT makes
  // slower (about a second of LLVM compilation for a 100,000-row listing that runs in half
  // that without it). An `options` parameter in DATABASE_URL takes precedence.
  const pool = new pg.Pool({ connectionString: databaseUrl, max, connectionTimeoutMillis: 5_000, options: '-c jit=off' });
  // An idle client losing its connection must not crash the process; the next query
  // reconnects. The error reaches callers through their own queries.
  pool.on('error', () => {});
  // pg-pool listens for a client's errors only while it is idle. A client checked out (in a
  // transaction, between two of its queries) whose connection breaks (a failover, a
  // restart) would emit an unhandled 'error' and end the process; the error reaches the
  // caller through its query all the same, and the pool drops the broken client on release.
  pool.on('connect', (client) => client.on('error', () => {}));
  return pool;
}

// SQLSTATE classes that mean "the database is not there right now", not "your data is wrong":
// 08 connection exception, 57P0x operator intervention/shutdown, 53 insufficient resources.
const UNAVAILABLE_STATES = /^(08|57P0|53)/;
const UNAVAILABLE_ERRNO = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EAI_AGAIN']);

/** Translates driver errors at the data layer, so that callers never see SQL states. */
export function translate(err: unknown): unknown {
  const e = err as { code?: string; message?: string };
  if (typeof e?.code === 'string' && (UNAVAILABLE_STATES.test(e.code) || UNAVAILABLE_ERRNO.has(e.code))) {
    return new StoreUnavailableError(`database unavailable: ${e.message ?? e.code}`, { cause: err });
  }
  // Class 22, data exception: a value the database cannot hold (e.g. 22P05 untranslatable
  // character for U+0000 in jsonb, 22021 bad encoding). The caller's input, not an outage.
  if (typeof e?.code === 'string' && e.code.startsWith('22')) {
    return new InvalidDataError(`value refused by the database: ${e.message ?? e.code}`, { cause: err });
  }
  if (err instanceof Error && /timeout exceeded when trying to connect|Connection terminated|connection error and is not queryable/i.test(err.message)) {
    return new StoreUnavailableError(`database unavailable: ${err.message}`, { cause: err });
  }
  return err;
}

/** Runs `fn` in one transaction: committed when it resolves, rolled back when it throws. */
export async function inTransaction<T>(pool: Pool, fn: (client: Client) => Promise<T>,
  /** Transaction modes, e.g. "ISOLATION LEVEL REPEATABLE READ READ ONLY": one snapshot for every query of fn. */
  mode = ''): Promise<T> {
  let client: Client;
  try {
    client = await pool.connect();
  } catch (err) {
    throw translate(err);
  }
  try {
    await client.query(mode ? `BEGIN ${mode}` : 'BEGIN');
    const result = await fn(client);
    await client.query('COMMIT');
    return result;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    throw translate(err);
  } finally {
    client.release();
  }
}

/**
 * A statement run often, in the same text, on the hot paths (a manifest PUT, a blob HEAD, a
 * state build): each connection has Postgres parse it once (a named prepared statement)
 * and, after a few executions, plan it once when the generic plan costs no more than the
 * per-call ones (plan_cache_mode auto). The endpoint's manifest PUT is one statement of
 * eight parts; parsing and planning it on every PUT was a third of Postgres's CPU per image
 * (bench/endpoint.ts). Only for statements whose plan does not depend on how large the group
 * is (index lookups by key; a group's listings are prepared only where ArtifactStore.snapshot
 * knows the plan kept serves a small group) and whose result columns are fixed by the text,
 * so that a column added by a migration while a connection holds the statement cannot
 * change its result type.
 *
 * The name is the text's hash: the same text always has the same name, so no two statements
 * can claim one. A connection pooler between the replicas and Postgres must keep prepared
 * statements per server connection (PgBouncer's session mode, or 1.21+ with
 * max_prepared_statements set).
 */
export interface Prepared {
  readonly name: string;
  readonly text: string;
}

export function prepared(text: string): Prepared {
  return { name: `satellite_${createHash('sha256').update(text).digest('hex').slice(0, 24)}`, text };
}

export async function query<R extends pg.QueryResultRow>(pool: Pool | Client, statement: string | Prepared, values?: unknown[]): Promise<pg.QueryResult<R>> {
  try {
    return typeof statement === 'string'
      ? await pool.query<R>(statement, values)
      : await pool.query<R>({ name: statement.name, text: statement.text, values });
  } catch (err) {
    throw translate(err);
  }
}

/**
 * Rows as arrays (pg's rowMode "array"): no object per row, for listings of many rows whose
 * columns the caller names itself.
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export async function queryArrays<R extends any[]>(pool: Pool | Client, statement: string | Prepared, values?: unknown[]): Promise<R[]> {
  try {
    const named = typeof statement === 'string' ? { text: statement } : statement;
    return (await pool.query<R>({ ...named, values, rowMode: 'array' })).rows;
  } catch (err) {
    throw translate(err);
  }
}

/**
 * A cursor's batch of rows as arrays, collected from node-postgres's 'row' events rather
 * than from the rows its result accumulates. Measured on a 100,000-row listing fetched 1,000
 * rows at a time and dropped at once: through the result about 30 MB of rows outlived two
 * scavenges and were promoted to the old generation, where they stayed until the next full
 * collection (the worker's heap grew by that much during a first build); from the events,
 * 1.5-3 MB, and the fetches took 10-25 % less time.
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export function fetchArrays<R extends any[]>(client: Client, text: string): Promise<R[]> {
  return new Promise((resolve, reject) => {
    const rows: R[] = [];
    const config: pg.QueryArrayConfig = { text, rowMode: 'array' };
    const q = new pg.Query(config);
    q.on('row', (row: R) => rows.push(row));
    q.on('end', () => resolve(rows));
    q.on('error', (err) => reject(translate(err)));
    client.query(q);
  });
}
