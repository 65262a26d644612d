import { expect } from 'chai';
import type { RunningEndpoint } from '../../adapter/server.js';
import { createLogger } from '../../core/logger.js';
import { Metrics } from '../../core/metrics.js';
import { loadSigningKey } from '../../worker/signer.js';
import { startWorker, type RunningWorker } from '../../worker/state-worker.js';
import { createTestDatabase, type TestDatabase } from '../support/db.js';
import { client, startTestEndpoint } from '../support/endpoint.js';
import { image, sha256 } from '../support/oci.js';
import { until } from '../support/process.js';
import { dropPrefix, REDIS_URL, testPrefix } from '../support/redis.js';
import { KEY_PASSWORD, useRegistryAndKeys, workerConfig } from '../support/worker.js';

const OCI = 'application/vnd.oci.image.manifest.v1+json';

describe('the tables do not grow with re-sends, and what is done is pruned by the running worker', function () {
  this.timeout(90_000);
  let db: TestDatabase;
  let endpoint: RunningEndpoint;
  let api: ReturnType<typeof client>;

  beforeEach(async () => {
    db = await createTestDatabase();
    endpoint = await startTestEndpoint(db.url);
    api = client(endpoint.url);
  });
  afterEach(async () => {
    await endpoint?.stop();
    await db?.drop();
  });

  const count = async (table: string, where = 'true') =>
    (await db.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${table} WHERE ${where}`)).rows[0]!.n;
  const putManifest = async (tag: string, bytes: Buffer) => {
    const res = await api(`/v2/edge-eu/library/alpine/manifests/${tag}`, { method: 'PUT', headers: { 'Content-Type': OCI }, body: bytes });
    await res.arrayBuffer();
    expect(res.status, `PUT ${tag}`).to.equal(201);
  };

  it('when Harbor re-sends one manifest 1,000 times and its blobs again, then no table gains a row and no row changes', async () => {
    const img = image();
    await putManifest('3.20', img.manifest.bytes);
    const before = await db.dump();
    expect(await count('change_log')).to.equal(1);

    let next = 0;
    await Promise.all(Array.from({ length: 8 }, async () => {
      while (next++ < 1000) await putManifest('3.20', img.manifest.bytes);
    }));
    // A client that uploads a known blob anyway, whole and in chunks: sessions end, sizes are known.
    const config = img.config;
    for (let i = 0; i < 50; i++) {
      const whole = await api(`/v2/edge-eu/library/alpine/blobs/uploads/?digest=${config.digest}`, { method: 'POST', body: config.bytes });
      expect(whole.status).to.equal(201);
      const start = await api('/v2/edge-eu/library/alpine/blobs/uploads/', { method: 'POST' });
      expect(start.status).to.equal(202);
      const location = start.headers.get('location')!;
      const half = Math.floor(config.size / 2);
      expect((await api(location, { method: 'PATCH', headers: { 'Content-Range': `0-${half - 1}` }, body: config.bytes.subarray(0, half) })).status).to.equal(202);
      expect((await api(`${location}?digest=${config.digest}`, { method: 'PUT', body: config.bytes.subarray(half) })).status).to.equal(201);
    }

    expect(await count('change_log'), 'change_log rows').to.equal(1);
    expect(await count('outbox'), 'outbox rows').to.equal(1);
    expect(await count('uploads'), 'upload sessions').to.equal(0);
    expect(await db.dump(), 'every row of every table as before').to.equal(before);
  });

  describe('with a worker running', () => {
    const shared = useRegistryAndKeys();
    let worker: RunningWorker | undefined;
    let prefix: string;
    beforeEach(() => {
      prefix = testPrefix();
    });
    afterEach(async () => {
      await worker?.stop();
      worker = undefined;
      await dropPrefix(prefix);
    });

    it('when published changes pass CHANGE_LOG_RETENTION_HOURS and an upload session is abandoned, then the worker prunes both on its PRUNE_INTERVAL_SECONDS schedule, and keeps a recent change', async () => {
      const config = workerConfig({
        STATE_REGISTRY: shared.registry.url, COSIGN_KEY: shared.keys.keyPath, REDIS_URL, QUEUE_PREFIX: prefix,
        BUILD_DEBOUNCE_MS: '100', BUILD_QUIET_MS: '100', PRUNE_INTERVAL_SECONDS: '1', CHANGE_LOG_RETENTION_HOURS: '1',
      });
      worker = await startWorker({ config, pool: db.pool, log: createLogger('silent'), metrics: new Metrics(), signingKey: await loadSigningKey(shared.keys.keyPath, KEY_PASSWORD) });
      for (const tag of ['1', '2', '3']) await putManifest(tag, image().manifest.bytes);
      const published = async () => (await db.pool.query<{ ok: boolean }>(
        `SELECT g.built_change_id >= (SELECT max(id) FROM change_log WHERE group_name = 'edge-eu') AS ok
           FROM groups g WHERE g.name = 'edge-eu'`)).rows[0]?.ok || undefined;
      await until('the three changes published', published);

      // Three hours ago, as far as the log and the session table can tell.
      await db.pool.query("UPDATE change_log SET at = now() - interval '3 hours'");
      const session = await api('/v2/edge-eu/library/alpine/blobs/uploads/', { method: 'POST' });
      expect(session.status).to.equal(202);
      await db.pool.query("UPDATE uploads SET updated_at = now() - interval '3 hours'");
      const recent = image();
      await putManifest('4', recent.manifest.bytes);
      await until('the fourth change published', published);

      // Nothing here calls the pruner: the worker's own schedule must.
      await until('the old changes and the abandoned session pruned', async () =>
        (await count('change_log')) === 1 && (await count('uploads')) === 0 || undefined, 20_000);
      const { rows } = await db.pool.query<{ tag: string; digest: string }>('SELECT tag, digest FROM change_log');
      expect(rows, 'the recent change stays').to.deep.equal([{ tag: '4', digest: sha256(recent.manifest.bytes) }]);
    });
  });
});
