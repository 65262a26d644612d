import { expect } from 'chai';
import { Redis } from 'ioredis';
import { createLogger } from '../../core/logger.js';
import { Metrics } from '../../core/metrics.js';
import { RegistryClient } from '../../core/registry/registry-client.js';
import { loadSigningKey } from '../../worker/signer.js';
import { startWorker, type RunningWorker } from '../../worker/state-worker.js';
import { createTestDatabase, type TestDatabase } from '../support/db.js';
import { startFaultProxy, type FaultProxy } from '../support/fault-proxy.js';
import { image } from '../support/oci.js';
import { until } from '../support/process.js';
import { ownRedis, type OwnRedis } from '../support/redis.js';
import { KEY_PASSWORD, readLatestState, record, useRegistryAndKeys, workerConfig } from '../support/worker.js';

// Redis coming back empty (restarted without persistence, FLUSHALL, a failover to a replica
// that had not caught up) takes the worker's repeatable jobs with it, and with them the
// reconcile pass that rebuilds a group whose build failed for good. A Redis of the test's
// own, so it can be flushed and restarted; the worker is never restarted.

const repo = (group: string) => `satellite/group-state/${group}/state`;

describe('the worker\'s repeatable jobs when Redis comes back empty', function () {
  this.timeout(120_000);
  const shared = useRegistryAndKeys();
  let db: TestDatabase;
  let proxy: FaultProxy;
  let redis: OwnRedis;
  let worker: RunningWorker | undefined;

  beforeEach(async () => {
    db = await createTestDatabase();
    proxy = await startFaultProxy(shared.registry.url);
    redis = await ownRedis();
  });
  afterEach(async () => {
    await redis.start().catch(() => undefined); // so the worker can close cleanly
    await worker?.stop();
    worker = undefined;
    await redis.stop();
    await proxy?.close();
    await db?.drop();
  });

  const start = async (scheduleCheckSeconds: string) => {
    const config = workerConfig({
      STATE_REGISTRY: proxy.url, COSIGN_KEY: shared.keys.keyPath, REDIS_URL: redis.url, QUEUE_PREFIX: 'satellite',
      BUILD_DEBOUNCE_MS: '100', BUILD_BACKOFF_MS: '50', BUILD_ATTEMPTS: '2',
      RECONCILE_INTERVAL_SECONDS: '1', SCHEDULE_CHECK_SECONDS: scheduleCheckSeconds,
    });
    worker = await startWorker({ config, pool: db.pool, log: createLogger('silent'), metrics: new Metrics(), signingKey: await loadSigningKey(shared.keys.keyPath, KEY_PASSWORD) });
    return worker;
  };
  const schedulers = async (w: RunningWorker) => {
    const found = await Promise.all(['prune', 'reconcile'].map(async (id) => (await w.queue.getJobScheduler(id)) !== undefined));
    return found.every(Boolean);
  };

  /**
   * A group's build fails for good while the registry refuses every request; Redis comes back
   * empty (`empty`); the registry heals. The worker, never restarted, must register its
   * schedulers again, and its reconcile pass (which reads stale groups from Postgres, the only
   * place the failed build is remembered now) must publish the group's signed state.
   */
  const failThenEmptyThenHeal = async (group: string, scheduleCheckSeconds: string, empty: () => Promise<void>) => {
    const w = await start(scheduleCheckSeconds);
    await until('the schedulers registered at start', async () => ((await schedulers(w)) ? true : undefined));
    proxy.rules.push({ method: '*', path: /^\/v2\/.+/, fault: 'error500', times: 1_000_000 });
    const img = image();
    await record(db.pool, group, 'library/alpine', img, '3.20');
    const failed = await until('the build to fail for good', async () => (await w.queue.getFailed()).find((j) => j.data.group === group));
    expect(failed.attemptsMade, 'it used every attempt').to.equal(2);

    await empty();
    // Attempts in flight when Redis emptied run into the refusing registry, not a healed one.
    await new Promise((r) => setTimeout(r, 500));
    proxy.rules.length = 0;

    await until('the schedulers to be back', async () => ((await schedulers(w)) ? true : undefined), 30_000);
    const state = await until('the group\'s signed latest', async () => {
      const s = await readLatestState(new RegistryClient(shared.registry.url), repo(group));
      return s?.artifacts.length === 1 ? s : undefined;
    }, 30_000);
    expect(state.group).to.equal(group);
    expect(state.artifacts[0].digest).to.equal(img.manifest.digest);
    const client = new RegistryClient(shared.registry.url);
    const latest = await client.headManifest(repo(group), 'latest');
    expect(await client.headManifest(repo(group), `${latest!.digest.replace(':', '-')}.sig`), 'latest is signed').to.not.equal(undefined);
  };

  it('when Redis is flushed while a group\'s build has failed for good, then the running worker registers its schedulers again and publishes the group once the registry heals', async () => {
    // FLUSHALL keeps the connection up: only the periodic check (every second here) can notice.
    await failThenEmptyThenHeal('flushed', '1', async () => {
      const conn = new Redis(redis.url);
      try {
        await conn.flushall();
      } finally {
        conn.disconnect();
      }
    });
  });

  it('when Redis restarts empty while a group\'s build has failed for good, then the running worker registers its schedulers again on reconnecting and publishes the group once the registry heals', async () => {
    // The periodic check is an hour away: only the reconnection can bring the schedulers back.
    await failThenEmptyThenHeal('restarted', '3600', async () => {
      await redis.stop();
      await redis.start();
    });
  });
});
