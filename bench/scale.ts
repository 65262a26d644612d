// Scale check (issue 11 item 6): what one Postgres and one Redis hold per group and per
// artifact, measured, and a projection from it.
//
//   npm run bench:scale                    200 groups x 500 artifacts (100,000 records)
//   BENCH_GROUPS=1000 BENCH_GROUP_SIZE=100 npm run bench:scale
//
// Seeds the groups as the endpoint would have recorded them, lets one `satellite worker`
// publish every group (signed, to docker-registry), then reports the rows and bytes of each
// table (pg_total_relation_size: heap, TOAST and indexes), Redis's memory and keys for the
// queue, and the worker's RSS; then projects them to larger fleets.
import { readFile } from 'node:fs/promises';
import { rm } from 'node:fs/promises';
import { Redis } from 'ioredis';
import { startDockerRegistry } from '../harbor-dev/docker-registry.js';
import { createTestDatabase } from '../test/support/db.js';
import { spawnSatellite } from '../test/support/process.js';
import { dropPrefix, REDIS_URL, testPrefix } from '../test/support/redis.js';
import { KEY_PASSWORD, testKeys } from '../test/support/worker.js';
import { seedGroup } from './seed.js';

const GROUPS = Number(process.env.BENCH_GROUPS ?? 200);
const SIZE = Number(process.env.BENCH_GROUP_SIZE ?? 500);
const out = (s = '') => process.stdout.write(`${s}\n`);
const mib = (n: number) => `${(n / 1024 / 1024).toFixed(1)} MiB`;

async function redisUsage(redis: Redis, prefix: string): Promise<{ bytes: number; keys: number }> {
  let cursor = '0';
  let keys = 0;
  let bytes = 0;
  do {
    const [next, batch] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
    cursor = next;
    keys += batch.length;
    for (const k of batch) bytes += Number((await redis.call('MEMORY', 'USAGE', k)) ?? 0);
  } while (cursor !== '0');
  return { bytes, keys };
}

async function main(): Promise<void> {
  const registry = await startDockerRegistry();
  const keys = await testKeys();
  const db = await createTestDatabase();
  const prefix = testPrefix();
  const redis = new Redis(REDIS_URL);
  try {
    out(`seeding ${GROUPS} groups x ${SIZE} artifacts...`);
    for (let g = 0; g < GROUPS; g++) await seedGroup(db.pool, `g${g}`, SIZE, 20);
    await db.pool.query('ANALYZE');
    const t0 = performance.now();
    const worker = await spawnSatellite(['worker'], {
      DATABASE_URL: db.url, REDIS_URL, QUEUE_PREFIX: prefix, METRICS_PORT: '0', STATE_REGISTRY: registry.url,
      IMAGE_REGISTRY: 'https://harbor.example.com', COSIGN_KEY: keys.keyPath, COSIGN_PASSWORD: KEY_PASSWORD, LOG_LEVEL: 'info',
    }, 'worker started');
    let seconds: number;
    let rss: number;
    let queue: { bytes: number; keys: number };
    try {
      for (;;) {
        const { rows } = await db.pool.query<{ n: number }>("SELECT count(*)::int AS n FROM state_versions WHERE status = 'published'");
        if (rows[0]!.n >= GROUPS) break;
        await new Promise((r) => setTimeout(r, 50));
      }
      seconds = (performance.now() - t0) / 1000;
      rss = Number(/VmHWM:\s+(\d+)/.exec(await readFile(`/proc/${worker.child.pid}/status`, 'utf8'))?.[1] ?? NaN) * 1024;
      queue = await redisUsage(redis, prefix);
    } finally {
      worker.child.kill('SIGTERM');
      await worker.exited;
    }
    await db.pool.query('VACUUM ANALYZE');
    const { rows: tables } = await db.pool.query<{ name: string; rows: string; bytes: string }>(
      `SELECT c.relname AS name, c.reltuples::bigint AS rows, pg_total_relation_size(c.oid) AS bytes
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' AND c.relkind = 'r' ORDER BY pg_total_relation_size(c.oid) DESC`);
    const records = GROUPS * SIZE;
    out();
    out(`${GROUPS} groups x ${SIZE} artifacts (${records} records), published once each by one worker in ${seconds.toFixed(1)} s`
      + ` (${(GROUPS / seconds).toFixed(0)} states/s, ${(records / seconds).toFixed(0)} entries/s); worker peak RSS ${mib(rss)}`);
    out(`${'table'.padEnd(24)}${'rows'.padStart(10)}${'bytes'.padStart(12)}${'bytes/record'.padStart(14)}`);
    let total = 0;
    for (const t of tables) {
      const bytes = Number(t.bytes);
      total += bytes;
      if (bytes < 64 * 1024) continue;
      out(`${t.name.padEnd(24)}${String(Math.max(0, Number(t.rows))).padStart(10)}${mib(bytes).padStart(12)}${(bytes / records).toFixed(0).padStart(14)}`);
    }
    out(`${'all tables'.padEnd(24)}${''.padStart(10)}${mib(total).padStart(12)}${(total / records).toFixed(0).padStart(14)}`);
    out(`redis: ${queue.keys} keys under the queue's prefix, ${mib(queue.bytes)} (completed jobs are capped at 1,000, failed at 5,000)`);
    const perRecord = total / records;
    out();
    out('projection (Postgres bytes grow with records; Redis with jobs kept, not with groups):');
    for (const [g, m] of [[1000, 1000], [1000, 10_000], [100, 100_000], [10_000, 1000]] as const) {
      out(`   ${String(g).padStart(6)} groups x ${String(m).padStart(7)} artifacts: ${(g * m / 1e6).toFixed(1).padStart(6)} M records, ~${((g * m * perRecord) / 1024 ** 3).toFixed(1)} GiB in Postgres`);
    }
  } finally {
    redis.disconnect();
    await db.drop();
    await dropPrefix(prefix);
    await registry.stop();
    await rm(keys.dir, { recursive: true, force: true });
  }
}

main().then(() => process.exit(0), (err) => {
  process.stderr.write(`${(err as Error).stack ?? err}\n`);
  process.exit(1);
});
