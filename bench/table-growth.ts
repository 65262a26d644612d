// Table growth under re-sends: N identical manifest PUTs (what Harbor's scheduled
// replication re-sends), then M upload sessions opened and abandoned, against an endpoint in
// this process; prints every table's rows and size before, after, and after VACUUM.
//
//   npm run bench:growth                 N=100000 PUTs, M=10000 upload POSTs, 8 at a time
//   GROWTH_PUTS=1000 npm run bench:growth
import { startEndpoint } from '../adapter/server.js';
import { createLogger } from '../core/logger.js';
import { createTestDatabase } from '../test/support/db.js';
import { image } from '../test/support/oci.js';

const PUTS = Number(process.env.GROWTH_PUTS ?? 100_000);
const POSTS = Number(process.env.GROWTH_UPLOADS ?? 10_000);
const CONCURRENCY = Number(process.env.GROWTH_CONCURRENCY ?? 8);
const PASSWORD = 'growth-secret-0123456789';

async function sizes(pool: import('pg').Pool): Promise<Map<string, { rows: number; bytes: number }>> {
  const { rows: tables } = await pool.query<{ t: string }>("SELECT tablename AS t FROM pg_tables WHERE schemaname = 'public' ORDER BY 1");
  const out = new Map<string, { rows: number; bytes: number }>();
  for (const { t } of tables) {
    const { rows } = await pool.query<{ n: number; b: string }>(`SELECT (SELECT count(*)::int FROM "${t}") AS n, pg_total_relation_size('"${t}"') AS b`);
    out.set(t, { rows: rows[0]!.n, bytes: Number(rows[0]!.b) });
  }
  return out;
}

async function main(): Promise<void> {
  const db = await createTestDatabase();
  const endpoint = await startEndpoint({
    databaseUrl: db.url, host: '127.0.0.1', port: 0, username: 'harbor', password: PASSWORD, authFailureLimit: 10,
    imageRegistry: 'https://harbor.example.com', log: createLogger('silent'),
  });
  const auth = `Basic ${Buffer.from(`harbor:${PASSWORD}`).toString('base64')}`;
  const img = image();
  const put = () => fetch(`${endpoint.url}/v2/edge-eu/library/alpine/manifests/3.20`, {
    method: 'PUT', headers: { Authorization: auth, 'Content-Type': img.manifest.mediaType }, body: img.manifest.bytes,
  }).then(async (r) => {
    await r.arrayBuffer();
    if (r.status !== 201) throw new Error(`PUT answered ${r.status}`);
  });
  try {
    await put();
    const before = await sizes(db.pool);
    let next = 1;
    const started = Date.now();
    await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
      while (next++ < PUTS) await put();
    }));
    const putSeconds = (Date.now() - started) / 1000;
    let refused = 0;
    next = 0;
    await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
      while (next++ < POSTS) {
        const r = await fetch(`${endpoint.url}/v2/edge-eu/library/alpine/blobs/uploads/`, { method: 'POST', headers: { Authorization: auth } });
        await r.arrayBuffer();
        if (r.status === 429) refused++;
      }
    }));
    const after = await sizes(db.pool);
    await db.pool.query('VACUUM');
    const vacuumed = await sizes(db.pool);
    const kib = (b: number) => `${(b / 1024).toFixed(0)} KiB`;
    process.stdout.write(`${PUTS} identical PUTs in ${putSeconds.toFixed(1)} s, then ${POSTS} upload sessions opened (${refused} refused past the cap)\n\n`);
    process.stdout.write('| table | rows before | rows after | size before | size after | after VACUUM |\n|---|---|---|---|---|---|\n');
    for (const [t, b] of before) {
      const a = after.get(t)!;
      const v = vacuumed.get(t)!;
      process.stdout.write(`| ${t} | ${b.rows} | ${a.rows} | ${kib(b.bytes)} | ${kib(a.bytes)} | ${kib(v.bytes)} |\n`);
    }
  } finally {
    await endpoint.stop();
    await db.drop();
  }
}

await main();
