import { expect } from 'chai';
import { Redis } from 'ioredis';
import pg from 'pg';
import { createPool } from '../../core/db/pool.js';
import { createLogger } from '../../core/logger.js';
import { Metrics } from '../../core/metrics.js';
import { RegistryClient } from '../../core/registry/registry-client.js';
import { OutboxStore } from '../../core/store/outbox-store.js';
import { OutboxRelay, type RelayOptions } from '../../worker/outbox-relay.js';
import { stateQueue, type StateQueue } from '../../worker/queue.js';
import { loadSigningKey } from '../../worker/signer.js';
import { startWorker, type RunningWorker } from '../../worker/state-worker.js';
import { createTestDatabase, type TestDatabase } from '../support/db.js';
import { image, randomLayer } from '../support/oci.js';
import { until } from '../support/process.js';
import { dropPrefix, REDIS_URL, testPrefix } from '../support/redis.js';
import { KEY_PASSWORD, readLatestState, record, useRegistryAndKeys, workerConfig } from '../support/worker.js';

// Issue 11 item 3: a change reaches the queue when it commits (LISTEN/NOTIFY), not on a
// poll; a burst is built once it ends, or at the latest BUILD_DEBOUNCE_MS after it began.

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const LONG = 600_000; // ten minutes: far beyond every wait below

describe('the outbox relay wakes on commit', function () {
  this.timeout(60_000);
  let db: TestDatabase;
  let prefix: string;
  let redis: Redis;
  let queue: StateQueue;
  let relay: OutboxRelay | undefined;
  beforeEach(async () => {
    db = await createTestDatabase();
    prefix = testPrefix();
    redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 1 });
    queue = stateQueue(redis, prefix);
  });
  afterEach(async () => {
    await relay?.stop();
    relay = undefined;
    await queue.close();
    redis.disconnect();
    await db.drop();
    await dropPrefix(prefix);
  });

  const startRelay = (options: Partial<RelayOptions>) => {
    relay = new OutboxRelay(new OutboxStore(db.pool), queue, { attempts: 1, backoffMs: 100 }, createLogger('silent'),
      { deployment: 'relay-test', listen: db.pool, quietMs: 50, maxWaitMs: 500, pollMs: LONG, ...options });
    relay.start();
  };
  const queued = (group: string) => async () => ((await queue.getJobs(['waiting', 'delayed'])).some((j) => j.data.group === group) ? true : undefined);
  const listening = async () => ((await db.pool.query("SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND query = 'LISTEN satellite_outbox'")).rowCount === 1 ? true : undefined);

  it('when a change commits, then its group is queued at once, though the next poll is ten minutes away', async () => {
    startRelay({});
    await until('the relay listening', listening);
    await record(db.pool, 'edge', 'library/app', image({ layers: [randomLayer(16)] }), '1');
    await until('edge queued', queued('edge'), 10_000);
    // Claimed: the row goes when the claim commits, just after Redis took the job.
    await until('its outbox row claimed', async () => ((await db.pool.query('SELECT 1 FROM outbox')).rowCount === 0 ? true : undefined), 10_000);
  });

  it('when the listening connection is cut, then a change committed meanwhile is still queued, and notifications work again', async () => {
    startRelay({});
    await until('the relay listening', listening);
    await db.pool.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND query = 'LISTEN satellite_outbox'");
    await record(db.pool, 'missed', 'library/app', image({ layers: [randomLayer(16)] }), '1');
    await until('the change made while nobody listened queued', queued('missed'), 20_000);
    await until('the relay listening again', listening);
    await record(db.pool, 'after', 'library/app', image({ layers: [randomLayer(16)] }), '1');
    await until('a change after the reconnection queued', queued('after'), 10_000);
  });

  /** Counts the outbox notifications of `group` on a connection of its own. */
  const countNotifications = async (group: string) => {
    const client = new pg.Client(db.url);
    await client.connect();
    let n = 0;
    client.on('notification', (m) => (m.payload === group ? n++ : undefined));
    await client.query('LISTEN satellite_outbox');
    return { count: () => n, stop: () => client.end() };
  };
  const outboxRows = async (group: string) => (await db.pool.query('SELECT 1 FROM outbox WHERE group_name = $1', [group])).rowCount;

  it('when a burst of changes commits to one group, then the relay is woken a few times, not once per change, and every change is claimed', async () => {
    // Migration 73: a NOTIFY serializes commits; one per burst is all the relay needs.
    startRelay({});
    await until('the relay listening', listening);
    const heard = await countNotifications('burst');
    try {
      const images = Array.from({ length: 100 }, () => image({ layers: [randomLayer(16)] }));
      let next = 0;
      await Promise.all(Array.from({ length: 8 }, async () => {
        while (next < images.length) {
          const i = next++;
          await record(db.pool, 'burst', `library/app${i}`, images[i]!, '1');
        }
      }));
      await until('every change claimed', async () => ((await outboxRows('burst')) === 0 ? true : undefined), 10_000);
      await until('the first notification heard', async () => (heard.count() > 0 ? true : undefined), 5_000);
      expect(heard.count(), 'notifications for 100 changes').to.be.at.most(30);
      expect(await queued('burst')()).to.equal(true);
    } finally {
      await heard.stop();
    }
  });

  it('when a change that did not notify commits just after the relay claimed its group, then it is claimed too, though the next poll is ten minutes away', async () => {
    startRelay({});
    await until('the relay listening', listening);
    const heard = await countNotifications('late');
    const slow = createPool(db.url, 1);
    try {
      await record(db.pool, 'late', 'library/app', image({ layers: [randomLayer(16)] }), '1');
      // Within 50 ms of that change: this one does not notify. It commits only once the
      // relay has claimed the first.
      await slow.query('BEGIN');
      await record(slow, 'late', 'library/app', image({ layers: [randomLayer(16)] }), '2');
      await until('the first change claimed', async () => ((await outboxRows('late')) === 0 ? true : undefined), 10_000);
      await slow.query('COMMIT');
      await until('the late change claimed', async () => ((await outboxRows('late')) === 0 ? true : undefined), 5_000);
      await sleep(100);
      expect(heard.count(), 'the late change did not notify').to.equal(1);
    } finally {
      await slow.end();
      await heard.stop();
    }
  });

  it('when notifications are not available, then the poll still queues every change', async () => {
    startRelay({ listen: undefined, pollMs: 200 });
    await record(db.pool, 'polled', 'library/app', image({ layers: [randomLayer(16)] }), '1');
    await until('polled queued', queued('polled'), 10_000);
  });
});

describe('a burst of changes is published once it ends', function () {
  this.timeout(90_000);
  const shared = useRegistryAndKeys();
  let db: TestDatabase;
  let prefix: string;
  let worker: RunningWorker | undefined;
  beforeEach(async () => {
    db = await createTestDatabase();
    prefix = testPrefix();
  });
  afterEach(async () => {
    await worker?.stop();
    worker = undefined;
    await db.drop();
    await dropPrefix(prefix);
  });

  const start = async (env: Record<string, string>) => {
    const config = workerConfig({ STATE_REGISTRY: shared.registry.url, COSIGN_KEY: shared.keys.keyPath, REDIS_URL, QUEUE_PREFIX: prefix, OUTBOX_POLL_MS: String(LONG), ...env });
    worker = await startWorker({ config, pool: db.pool, log: createLogger('silent'), metrics: new Metrics(), signingKey: await loadSigningKey(shared.keys.keyPath, KEY_PASSWORD) });
    await until('the worker listening', async () =>
      ((await db.pool.query("SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND query = 'LISTEN satellite_outbox'")).rowCount === 1 ? true : undefined));
    // The reconcile pass runs once at start; past it, only the relay queues builds.
    await until('the first reconcile pass done', async () => ((await worker!.queue.getCompleted()).some((j) => j.name === 'reconcile') ? true : undefined));
  };
  const published = async (group: string) => (await db.pool.query<{ version: number }>(
    "SELECT version FROM state_versions WHERE group_name = $1 AND status = 'published' ORDER BY version", [group])).rows.map((r) => r.version);
  it('when changes pause less than BUILD_QUIET_MS, then the burst is one version, built when it ends, not BUILD_DEBOUNCE_MS after it began', async () => {
    // Three seconds of changes 100 ms apart: a pause of a second would end the burst.
    await start({ BUILD_QUIET_MS: '1000', BUILD_DEBOUNCE_MS: String(LONG) });
    for (let i = 0; i < 30; i++) {
      await record(db.pool, 'burst', `library/app${i}`, image({ layers: [randomLayer(16)] }), '1');
      await sleep(100);
    }
    const client = new RegistryClient(shared.registry.url);
    await until('the whole burst published', async () =>
      ((await readLatestState(client, 'satellite/group-state/burst/state'))?.artifacts.length === 30 ? true : undefined), 30_000);
    expect(await published('burst'), 'one version for the whole burst').to.deep.equal([1]);
  });

  it('when changes never pause for BUILD_QUIET_MS, then the group is still published while they keep coming', async () => {
    await start({ BUILD_QUIET_MS: String(LONG), BUILD_DEBOUNCE_MS: '300' });
    let publishedDuringStream = false;
    for (let i = 0; i < 60 && !publishedDuringStream; i++) {
      await record(db.pool, 'stream', `library/app${i}`, image({ layers: [randomLayer(16)] }), '1');
      await sleep(50);
      publishedDuringStream = (await published('stream')).length > 0;
    }
    expect(publishedDuringStream, 'a version came out before the changes stopped').to.equal(true);
  });
});
