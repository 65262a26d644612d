import { execFileSync } from 'node:child_process';
import { expect } from 'chai';
import { createPool, query, type Pool } from '../../core/db/pool.js';
import { StoreUnavailableError } from '../../core/errors.js';
import { ArtifactStore } from '../../core/store/artifact-store.js';
import { seedGroup } from '../../bench/seed.js';
import { createTestDatabase, type TestDatabase } from '../support/db.js';

// A Postgres failover or restart cuts the connections of the pool, some of them checked out
// in the middle of a transaction. node-postgres reports that on the client itself, as an
// 'error' event; pg-pool listens for it only on idle clients. Unheard, it ends the process.

describe('a pooled connection cut while it is checked out', () => {
  let db: TestDatabase;
  let pool: Pool | undefined;
  beforeEach(async () => {
    db = await createTestDatabase();
  });
  afterEach(async () => {
    await pool?.end();
    pool = undefined;
    await db?.drop();
  });

  it('when the server ends a connection between two queries of a transaction, then the next query fails as "database unavailable", the process goes on, and the pool serves from a new connection', async () => {
    pool = createPool(db.url, 2);
    const client = await pool.connect();
    await client.query('BEGIN');
    const { rows } = await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
    // What a failover does to it: the server side goes away while no query runs.
    await db.pool.query('SELECT pg_terminate_backend($1)', [rows[0]!.pid]);
    await new Promise((r) => setTimeout(r, 300));
    const err = await query(client, 'SELECT 1').then(() => undefined, (e: unknown) => e);
    client.release(err as Error);
    expect(err).to.be.instanceOf(StoreUnavailableError);
    expect((await query<{ one: number }>(pool, 'SELECT 1 AS one')).rows[0]!.one).to.equal(1);
  });

  it('when the server ends a connection while a large group is read through its cursor, then the read fails as "database unavailable", the process goes on, and the pool serves from a new connection', async () => {
    await seedGroup(db.pool, 'big', 6000); // more than one statement reads: a cursor, FETCH after FETCH
    pool = createPool(db.url, 2);
    let batches = 0;
    const err = await new ArtifactStore(pool).snapshot('big', 24, 'tombstone', undefined, () => {
      if (batches++ > 0) return;
      // After the first batch, before the next FETCH is asked for (the callback holds the
      // event loop meanwhile): the backend that serves the cursor goes away.
      execFileSync('psql', [db.url, '-Atqc', "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'FETCH%'"]);
    }).then(() => undefined, (e: unknown) => e);
    expect(batches, 'the listing was cut short').to.be.greaterThan(0).and.lessThan(6);
    expect(err).to.be.instanceOf(StoreUnavailableError);
    expect((await query<{ one: number }>(pool, 'SELECT 1 AS one')).rows[0]!.one).to.equal(1);
  });
});
