import { expect } from 'chai';
import { createServer } from 'node:net';
import { freePort } from '../../harbor-dev/docker-registry.js';
import { createTestDatabase } from '../support/db.js';
import { testPrefix } from '../support/redis.js';

// Tests and benchmarks run beside other work on a shared machine: the names of their
// databases, their Redis key prefixes and their ports come from the environment when set.

function withEnv<T>(vars: Record<string, string>, fn: () => Promise<T>): Promise<T> {
  const before = Object.fromEntries(Object.keys(vars).map((k) => [k, process.env[k]]));
  Object.assign(process.env, vars);
  return fn().finally(() => {
    for (const [k, v] of Object.entries(before)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  });
}

describe('the test and benchmark environment', function () {
  this.timeout(30_000);

  it('when TEST_DATABASE_PREFIX is set, then the database created is named with it', async () => {
    await withEnv({ TEST_DATABASE_PREFIX: 'bench_other_' }, async () => {
      const db = await createTestDatabase();
      try {
        expect(new URL(db.url).pathname).to.match(/^\/bench_other_[0-9a-f]{12}$/);
        expect((await db.pool.query<{ name: string }>('SELECT current_database() AS name')).rows[0]!.name).to.match(/^bench_other_/);
      } finally {
        await db.drop();
      }
    });
  });

  it('when TEST_DATABASE_PREFIX is not a plain name, then no database is created and the error names the variable', async () => {
    await withEnv({ TEST_DATABASE_PREFIX: 'x"; DROP' }, async () => {
      const err = await createTestDatabase().then(() => undefined, (e: Error) => e);
      expect(err?.message).to.match(/^TEST_DATABASE_PREFIX=/);
    });
  });

  it('when TEST_REDIS_PREFIX is set, then the Redis prefix starts with it', () => {
    expect(testPrefix({ TEST_REDIS_PREFIX: 'bench-other-' })).to.match(/^bench-other-[0-9a-f]{10}$/);
    expect(testPrefix({})).to.match(/^satellite-test-[0-9a-f]{10}$/);
    expect(() => testPrefix({ TEST_REDIS_PREFIX: 'a b*' })).to.throw(/^TEST_REDIS_PREFIX=/);
  });

  it('when TEST_PORTS is set, then free ports come from that range, skipping one in use', async () => {
    // A port the kernel picks, held, and the one above it free a moment ago (another
    // process's connection may hold that one: then the pair is picked again).
    let taken = createServer();
    let lo = 0;
    for (let attempt = 0; ; attempt++) {
      const server = taken;
      lo = await new Promise<number>((r) => server.listen(0, '127.0.0.1', () => r((server.address() as { port: number }).port)));
      const probe = createServer();
      const nextFree = await new Promise<boolean>((r) => probe.once('error', () => r(false)).listen(lo + 1, '127.0.0.1', () => probe.close(() => r(true))));
      if (nextFree || attempt === 20) break;
      await new Promise((r) => server.close(r));
      taken = createServer();
    }
    try {
      await withEnv({ TEST_PORTS: `${lo}-${lo + 1}` }, async () => {
        for (let i = 0; i < 5; i++) expect(await freePort()).to.equal(lo + 1);
      });
      await withEnv({ TEST_PORTS: '5-4' }, async () => {
        expect(await freePort().then(() => undefined, (e: Error) => e.message)).to.match(/^TEST_PORTS="5-4": expected a range/);
      });
    } finally {
      await new Promise((r) => taken.close(r));
    }
  });
});
