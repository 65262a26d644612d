import { expect } from 'chai';
import { rm } from 'node:fs/promises';
import { Redis } from 'ioredis';
import { startDockerRegistry, type LocalRegistry } from '../../harbor-dev/docker-registry.js';
import { RegistryClient } from '../../core/registry/registry-client.js';
import { createTestDatabase, type TestDatabase } from '../support/db.js';
import { basic } from '../support/endpoint.js';
import { image, randomLayer } from '../support/oci.js';
import { freePort, spawnSatellite, until, type Spawned } from '../support/process.js';
import { dropPrefix, testPrefix } from '../support/redis.js';
import { MASTER_NAME, startSentinels, type SentinelSet } from '../support/sentinel.js';
import { KEY_PASSWORD, readLatestState, testKeys, type TestKeys } from '../support/worker.js';

// `satellite serve` on a Redis found through Redis Sentinel (REDIS_SENTINELS,
// REDIS_SENTINEL_MASTER, REDIS_SENTINEL_PASSWORD, REDIS_PASSWORD): the master is killed
// halfway through 2,000 manifest PUTs, the sentinels promote the replica, and the service,
// never restarted, follows it. Redis replicates asynchronously, so a job the old master
// took and did not pass on is gone with it; the reconcile pass rebuilds that group.

const PASSWORD = 'sentinel-endpoint-secret';
const GROUPS = ['edge-a', 'edge-b', 'edge-c', 'edge-d'];
const PUTS = 2000;
const repo = (group: string) => `satellite/group-state/${group}/state`;

describe('Redis Sentinel: the master killed during 2,000 pushes', function () {
  this.timeout(150_000);
  let db: TestDatabase;
  let registry: LocalRegistry;
  let keys: TestKeys;
  let redis: SentinelSet;
  const running: Spawned[] = [];
  const prefix = testPrefix();

  before(async () => {
    [db, registry, keys, redis] = await Promise.all([createTestDatabase(), startDockerRegistry(), testKeys(), startSentinels()]);
  });
  after(async () => {
    for (const p of running.splice(0)) {
      p.child.kill('SIGKILL');
      await p.exited;
    }
    await redis?.stop();
    await dropPrefix(prefix); // nothing, unless a connection went to the shared Redis instead
    await registry?.stop();
    await db?.drop();
    if (keys) await rm(keys.dir, { recursive: true, force: true });
  });

  it('when the master dies mid-run, then a replica is promoted, the service follows it without a restart, every acknowledged change is published, and each content gets one version, in order', async () => {
    const port = await freePort();
    const serve = await spawnSatellite(['serve'], {
      DATABASE_URL: db.url, REDIS_URL: '', REDIS_SENTINELS: redis.sentinels, REDIS_SENTINEL_MASTER: MASTER_NAME,
      REDIS_SENTINEL_PASSWORD: redis.sentinelPassword, REDIS_PASSWORD: redis.password, QUEUE_PREFIX: prefix,
      HOST: '127.0.0.1', PORT: String(port), METRICS_PORT: '0', ENDPOINT_PASSWORD: PASSWORD, HARBOR_URL: '', HARBOR_PASSWORD: '',
      STATE_REGISTRY: registry.url, IMAGE_REGISTRY: 'https://harbor.example.com', COSIGN_KEY: keys.keyPath, COSIGN_PASSWORD: KEY_PASSWORD,
      BUILD_DEBOUNCE_MS: '150', BUILD_BACKOFF_MS: '100', JOB_LOCK_MS: '2000', RECONCILE_INTERVAL_SECONDS: '2', SCHEDULE_CHECK_SECONDS: '2',
    }, 'worker started');
    running.push(serve);
    const pid = serve.child.pid;
    expect(await redis.currentMasterPort()).to.equal(redis.masterPort);

    const client = new RegistryClient(registry.url);
    const acknowledged: { group: string; repository: string; tag: string; digest: string }[] = [];
    const layers = [randomLayer(64)];
    let next = 0;
    let killed: Promise<void> | undefined;
    const pusher = async () => {
      for (let i = next++; i < PUTS; i = next++) {
        const group = GROUPS[i % GROUPS.length]!;
        const repository = `library/app${i % 25}`;
        const img = image({ layers });
        const res = await fetch(`http://127.0.0.1:${port}/v2/${group}/${repository}/manifests/t${i}`, {
          method: 'PUT', headers: { Authorization: basic('harbor', PASSWORD), 'Content-Type': img.manifest.mediaType }, body: img.manifest.bytes,
        });
        if (res.status === 201) acknowledged.push({ group, repository, tag: `t${i}`, digest: img.manifest.digest });
        if (!killed && acknowledged.length >= PUTS / 2) killed = redis.killMaster();
      }
    };
    await Promise.all(Array.from({ length: 8 }, pusher));
    await killed;
    expect(killed, 'the master was killed mid-run').to.not.equal(undefined);
    expect(acknowledged.length, 'every PUT was acknowledged (the endpoint never waits for Redis)').to.equal(PUTS);

    await until('the sentinels to promote the replica', async () => ((await redis.currentMasterPort()) === redis.replicaPort ? true : undefined), 30_000);

    // Every acknowledged manifest, with its tag, in each group's signed latest.
    for (const g of GROUPS) {
      const expected = acknowledged.filter((a) => a.group === g);
      await until(`${g} to hold all ${expected.length} acknowledged manifests`, async () => {
        const state = await readLatestState(client, repo(g));
        if (!state) return undefined;
        const have = new Set((state.artifacts as { repository: string; digest: string; tag: string[] }[]).flatMap((a) => a.tag.map((t) => `${a.repository}:${t}@${a.digest}`)));
        return expected.every((a) => have.has(`${a.repository}:${a.tag}@${a.digest}`)) ? true : undefined;
      }, 60_000);
    }
    expect(serve.child.pid, 'the same process').to.equal(pid);
    expect(serve.child.exitCode).to.equal(null);

    // The queue lives on the promoted replica now.
    const promoted = new Redis(redis.replicaPort, '127.0.0.1', { password: redis.password, maxRetriesPerRequest: 1 });
    try {
      expect(await promoted.call('ROLE').then((r) => (r as string[])[0])).to.equal('master');
      expect(await promoted.keys(`${prefix}:state-builds:*`), 'the queue\'s keys on the new master').to.not.deep.equal([]);
    } finally {
      promoted.disconnect();
    }

    const { rows: dup } = await db.pool.query(
      `SELECT group_name, content_digest, count(*)::int AS n FROM state_versions WHERE status = 'published'
        GROUP BY group_name, content_digest HAVING count(*) > 1`);
    expect(dup, 'one published version per distinct content: no build ran twice to another result').to.deep.equal([]);
    const { rows: order } = await db.pool.query<{ group_name: string; version: number; published_at: Date }>(
      "SELECT group_name, version, published_at FROM state_versions WHERE status = 'published' ORDER BY group_name, version");
    for (const g of GROUPS) {
      const mine = order.filter((r) => r.group_name === g);
      const times = mine.map((r) => r.published_at.getTime());
      expect(times, `${g}: versions published in order`).to.deep.equal([...times].sort((a, b) => a - b));
      // A build may still be between its push of latest and its row turning 'published':
      // wait for the two to agree rather than catch it in between.
      await until(`${g}: latest is the newest published version`, async () => {
        const latest = await readLatestState(client, repo(g));
        const { rows } = await db.pool.query<{ v: number }>("SELECT max(version)::int AS v FROM state_versions WHERE status = 'published' AND group_name = $1", [g]);
        return latest?.version === rows[0]?.v ? true : undefined;
      }, 30_000);
    }
  });
});
