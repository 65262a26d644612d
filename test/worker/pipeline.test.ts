import { expect } from 'chai';
import { rm } from 'node:fs/promises';
import { startDockerRegistry, type LocalRegistry } from '../../harbor-dev/docker-registry.js';
import { createLogger } from '../../core/logger.js';
import { Metrics } from '../../core/metrics.js';
import { RegistryClient } from '../../core/registry/registry-client.js';
import { loadSigningKey } from '../../worker/signer.js';
import { startWorker, type RunningWorker } from '../../worker/state-worker.js';
import { connectQueue } from '../../worker/queue.js';
import { createTestDatabase, type TestDatabase } from '../support/db.js';
import { startFaultProxy, type FaultProxy } from '../support/fault-proxy.js';
import { blob, image, randomLayer, sha256 } from '../support/oci.js';
import { until } from '../support/process.js';
import { dropPrefix, ownRedis, REDIS_URL, testPrefix } from '../support/redis.js';
import { KEY_PASSWORD, readLatestState, record, testKeys, workerConfig, type TestKeys } from '../support/worker.js';

const repo = (group: string) => `satellite/group-state/${group}/state`;


describe('the state pipeline: outbox, queue, worker, registry', function () {
  this.timeout(90_000);
  let db: TestDatabase;
  let registry: LocalRegistry;
  let proxy: FaultProxy;
  let keys: TestKeys;
  let prefix: string;
  let worker: RunningWorker | undefined;
  let metrics: Metrics;

  before(async () => {
    registry = await startDockerRegistry();
    keys = await testKeys();
  });
  beforeEach(async () => {
    db = await createTestDatabase();
    proxy = await startFaultProxy(registry.url);
    prefix = testPrefix();
    metrics = new Metrics();
  });
  afterEach(async () => {
    await worker?.stop();
    worker = undefined;
    await proxy?.close();
    await db?.drop();
    await dropPrefix(prefix);
  });
  after(async () => {
    await registry?.stop();
    if (keys) await rm(keys.dir, { recursive: true, force: true });
  });

  const start = async (env: Record<string, string> = {}) => {
    const config = workerConfig({
      STATE_REGISTRY: proxy.url, COSIGN_KEY: keys.keyPath, REDIS_URL, QUEUE_PREFIX: prefix,
      BUILD_DEBOUNCE_MS: '100', BUILD_BACKOFF_MS: '50', BUILD_ATTEMPTS: '8', ...env,
    });
    worker = await startWorker({ config, pool: db.pool, log: createLogger('silent'), metrics, signingKey: await loadSigningKey(keys.keyPath, KEY_PASSWORD) });
    return config;
  };
  const client = () => new RegistryClient(registry.url);
  const versions = async (group: string) => (await client().listTags(repo(group))).filter((t) => /^v\d+$/.test(t)).sort();
  const published = async (group: string) => (await db.pool.query<{ version: number }>(
    "SELECT version FROM state_versions WHERE group_name = $1 AND status = 'published' ORDER BY version", [group])).rows.map((r) => r.version);

  it('when a burst of 1,000 manifests lands in one group, then one or two builds publish it, not a thousand', async () => {
    // A debounce window comfortably longer than recording the burst takes here (~0.5 s),
    // so the relay's several passes over the outbox all fold into one waiting job.
    await start({ BUILD_DEBOUNCE_MS: '3000', BUILD_QUIET_MS: '3000' });
    const images = Array.from({ length: 1000 }, () => image({ layers: [randomLayer(16)] }));
    await Promise.all(images.map((img, i) => record(db.pool, 'burst', `library/app${i % 50}`, img, `t${i}`)));
    const n = await until('the burst published', async () => {
      const v = await published('burst');
      const state = await readLatestState(client(), repo('burst'));
      return state?.artifacts.length === 1000 && v.length > 0 ? v.length : undefined;
    });
    expect(n).to.be.within(1, 2);
    const builds = (await metrics.registry.getSingleMetricAsString('satellite_state_builds_total'));
    expect(builds).to.not.include('result="failed"');
  });

  it('when the registry answers 500, resets the connection and hangs mid-publish, then retries end with exactly one new version', async () => {
    proxy.rules.push(
      { method: 'PUT', path: /\/manifests\/v1$/, fault: 'error500', times: 1 },
      { method: 'PUT', path: /\/manifests\/sha256-[0-9a-f]+\.sig$/, fault: 'reset', times: 1 },
      { method: 'PUT', path: /\/manifests\/latest$/, fault: 'error500', times: 2 },
    );
    await start();
    await record(db.pool, 'flaky', 'library/alpine', image(), '3.20');
    await until('published despite faults', async () => ((await published('flaky')).length === 1 ? true : undefined));
    expect(proxy.injected()).to.equal(4);
    expect(await versions('flaky')).to.deep.equal(['v1']);
    const latest = await client().headManifest(repo('flaky'), 'latest');
    const v1 = await client().headManifest(repo('flaky'), 'v1');
    expect(latest!.digest).to.equal(v1!.digest);
    expect(await client().headManifest(repo('flaky'), `${latest!.digest.replace(':', '-')}.sig`)).to.not.equal(undefined);
  });

  it('when a publish hangs until its timeout, then the retry still converges on one version and latest never named an unsigned state', async () => {
    proxy.rules.push({ method: 'PUT', path: /\/manifests\/v1$/, fault: 'hang', times: 1 });
    // A short client timeout so the hang becomes a retryable failure quickly.
    await start({ REGISTRY_TIMEOUT_MS: '1500' });
    await record(db.pool, 'hang', 'library/alpine', image(), '3.20');
    await until('published after the hang', async () => ((await published('hang')).length === 1 ? true : undefined));
    // Every PUT of latest came after the signature of the same digest.
    const order = proxy.log.filter((l) => l.startsWith('PUT') && /manifests\/(latest|sha256-.*\.sig)$/.test(l));
    expect(order[0]).to.match(/\.sig$/);
    expect(await versions('hang')).to.deep.equal(['v1']);
  });

  it('when Redis is down, then changes are still recorded, and when it returns every dirty group is built', async () => {
    const redis = await ownRedis();
    try {
      await start({ REDIS_URL: redis.url });
      await redis.stop();
      for (const g of ['g1', 'g2', 'g3']) await record(db.pool, g, 'library/alpine', image(), '1');
      await new Promise((r) => setTimeout(r, 700));
      const waiting = await db.pool.query('SELECT count(*)::int AS n FROM outbox');
      expect(waiting.rows[0].n, 'the outbox keeps the changes while Redis is away').to.equal(3);
      await redis.start();
      await worker!.queue.waitUntilReady();
      for (const g of ['g1', 'g2', 'g3']) await until(`${g} published`, async () => ((await published(g)).length === 1 ? true : undefined), 30_000);
    } finally {
      await redis.start().catch(() => undefined); // so the worker can close cleanly
      await worker?.stop();
      worker = undefined;
      await redis.stop();
    }
  });

  it('when the registry fails a build of a published group until it runs out of attempts and then heals, then the reconcile pass still publishes every acknowledged change', async () => {
    await start({ BUILD_ATTEMPTS: '3', RECONCILE_INTERVAL_SECONDS: '1' });
    const images = Array.from({ length: 300 }, () => image({ layers: [randomLayer(16)] }));
    await Promise.all(images.slice(0, 10).map((img, i) => record(db.pool, 'healed', `library/app${i % 30}`, img, `t${i}`)));
    // One version or two (ten concurrent records may straddle a build on a busy machine).
    await until('the group published', async () => ((await readLatestState(client(), repo('healed')))?.artifacts.length === 10
      && (await published('healed')).length >= 1) || undefined);
    const before = await client().headManifest(repo('healed'), 'latest');
    // 60 % of requests answer 500 and 20 % more are reset: no attempt can get through.
    const failing = [
      { method: '*', path: /^\/v2\/.+/, fault: 'error500' as const, times: 1_000_000, probability: 0.6 },
      { method: '*', path: /^\/v2\/.+/, fault: 'reset' as const, times: 1_000_000, probability: 0.5 },
    ];
    proxy.rules.push(...failing);
    await Promise.all(images.slice(10).map((img, i) => record(db.pool, 'healed', `library/app${i % 30}`, img, `t${i + 10}`)));
    const failed = await until('the build to fail for good', async () =>
      (await worker!.queue.getFailed()).find((j) => j.data.group === 'healed'));
    expect(failed.attemptsMade, 'it used every attempt').to.equal(3);
    expect((await client().headManifest(repo('healed'), 'latest'))?.digest, 'latest still names the first state').to.equal(before?.digest);
    // Nothing of the group is left in Redis but the failed job: only the reconcile pass of
    // a worker started now can find that the group's changes were never published.
    await worker!.stop();
    worker = undefined;
    const { queue, connection } = await connectQueue(REDIS_URL, prefix, createLogger('silent'));
    await queue.drain(true);
    await queue.close();
    connection.disconnect();
    proxy.rules.length = 0;
    await start({ BUILD_ATTEMPTS: '3', RECONCILE_INTERVAL_SECONDS: '1' });
    const state = await until('every acknowledged change in a signed latest', async () => {
      const s = await readLatestState(client(), repo('healed'));
      return s?.artifacts.length === 300 ? s : undefined;
    });
    expect(state.artifacts.map((a: { digest: string }) => a.digest).sort()).to.deep.equal(images.map((i) => i.manifest.digest).sort());
    const latest = await client().headManifest(repo('healed'), 'latest');
    expect(await client().headManifest(repo('healed'), `${latest!.digest.replace(':', '-')}.sig`), 'latest is signed').to.not.equal(undefined);
    expect((await worker!.queue.getFailed()).some((j) => j.id === failed.id), 'the failed job stays for operators to see').to.equal(true);
  });

  it('when a build cannot succeed (registry refuses with 4xx), then it fails at once with a readable reason', async () => {
    await start();
    // A group name that makes an invalid repository for the registry: it answers 4xx.
    await db.pool.query("INSERT INTO groups (name) VALUES ('Bad_Group') ON CONFLICT DO NOTHING");
    await worker!.queue.add('build', { group: 'Bad_Group', deployment: worker!.deployment }, { attempts: 8 });
    const failed = await until('the job failed', async () => {
      const jobs = await worker!.queue.getFailed();
      return jobs.find((j) => j.data.group === 'Bad_Group');
    });
    expect(failed.attemptsMade).to.equal(1);
    expect(failed.failedReason).to.match(/^registry refused the state: .*(400|404)/);
  });

  it('when the registry answers a manifest PUT with an endless body, then the worker drops it at 64 KiB and fails the build at once, naming the URL and the cap', async () => {
    proxy.rules.push({ method: 'PUT', path: new RegExp(`^/v2/${repo('endless')}/manifests/`), fault: 'endless', status: 201, times: 1_000 });
    await start();
    await record(db.pool, 'endless', 'library/app', image(), '1');
    const failed = await until('the build to fail', async () => (await worker!.queue.getFailed()).find((j) => j.data.group === 'endless'));
    expect(failed.attemptsMade, 'not retried: the same request gets the same answer').to.equal(1);
    expect(failed.failedReason).to.match(/^registry answer refused: /);
    expect(failed.failedReason).to.include(`${proxy.url}/v2/${repo('endless')}/manifests/`).and.include('more than 64 KiB');
    const sent = proxy.answers.filter((a) => a.request.startsWith('PUT ') && a.status === 201 && a.request.includes('/manifests/'));
    for (const a of sent) expect(a.bytes, `${a.request}: dropped long before the proxy's safety stop`).to.be.below(32 * 1024 * 1024);
    expect(await versions('endless'), 'nothing tagged').to.deep.equal([]);
  });

  it('when a group\'s state would weigh more than STATE_MAX_MB, then its build fails at once naming the group, the size and the cap, and nothing is published', async () => {
    // Indexes of 100 platforms: ~15 KB of JSON per entry, so 100 of them are past 1 MiB.
    const INDEX = 'application/vnd.oci.image.index.v1+json';
    const children = Array.from({ length: 100 }, (_, k) => ({
      mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: sha256(Buffer.from(`child ${k}`)), size: 500, platform: { os: 'linux', architecture: `arch${k}` },
    }));
    for (let i = 0; i < 100; i++) {
      const bytes = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: INDEX, manifests: children, annotations: { n: String(i) } }));
      await record(db.pool, 'huge', 'library/app', { manifest: blob(INDEX, bytes) }, `t${i}`);
    }
    await start({ STATE_MAX_MB: '1' });
    const failed = await until('the build to fail', async () => (await worker!.queue.getFailed()).find((j) => j.data.group === 'huge'), 60_000);
    expect(failed.attemptsMade).to.equal(1);
    expect(failed.failedReason).to.match(/^the state of group huge is [\d.]+ MiB of JSON, more than STATE_MAX_MB \(1 MiB\)/);
    expect(await versions('huge'), 'nothing published').to.deep.equal([]);
    expect(await client().headManifest(repo('huge'), 'latest')).to.equal(undefined);
  });
});

describe('Redis eviction policy check', () => {
  it('when Redis may evict keys, then the worker warns at start', async () => {
    const { checkEvictionPolicy } = await import('../../worker/queue.js');
    const { Redis } = await import('ioredis');
    const { pino } = await import('pino');
    const redis = await ownRedis();
    const conn = new Redis(redis.url);
    try {
      await conn.config('SET', 'maxmemory-policy', 'allkeys-lru');
      const lines: string[] = [];
      const log = pino({ level: 'warn' }, { write: (l: string) => lines.push(l) });
      await checkEvictionPolicy(conn, log);
      expect(lines.join('')).to.include('not noeviction').and.include('allkeys-lru');
      lines.length = 0;
      await conn.config('SET', 'maxmemory-policy', 'noeviction');
      await checkEvictionPolicy(conn, log);
      expect(lines).to.deep.equal([]);
    } finally {
      conn.disconnect();
      await redis.stop();
    }
  });
});
