import { expect } from 'chai';
import { createPublicKey } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { startDockerRegistry, type LocalRegistry } from '../../harbor-dev/docker-registry.js';
import { verifyStateSignature } from '../../core/cosign/verify.js';
import { RegistryClient } from '../../core/registry/registry-client.js';
import { createTestDatabase, type TestDatabase } from '../support/db.js';
import { basic } from '../support/endpoint.js';
import { image, randomLayer } from '../support/oci.js';
import { freePort, spawnSatellite, until, type Spawned } from '../support/process.js';
import { dropPrefix, REDIS_URL, testPrefix } from '../support/redis.js';
import { KEY_PASSWORD, readLatestState, testKeys, type TestKeys } from '../support/worker.js';

const PASSWORD = 'scale-out-secret-2000';
const GROUPS = ['edge-a', 'edge-b', 'edge-c', 'edge-d'];
const PUTS = 2000;
const repo = (group: string) => `satellite/group-state/${group}/state`;

describe('scale-out: two endpoints and two workers on one Postgres and Redis, one worker killed mid-run', function () {
  this.timeout(180_000);
  let db: TestDatabase;
  let registry: LocalRegistry;
  let keys: TestKeys;
  const prefix = testPrefix();
  const running: Spawned[] = [];

  before(async () => {
    [db, registry, keys] = await Promise.all([createTestDatabase(), startDockerRegistry(), testKeys()]);
  });
  after(async () => {
    for (const p of running.splice(0)) {
      p.child.kill('SIGKILL');
      await p.exited;
    }
    await registry?.stop();
    await db?.drop();
    await dropPrefix(prefix);
    if (keys) await rm(keys.dir, { recursive: true, force: true });
  });

  it('when 2,000 PUTs go through both endpoints, then no acknowledged change is lost, each content gets one version, in order, and latest is always signed', async () => {
    const env = {
      DATABASE_URL: db.url, REDIS_URL, QUEUE_PREFIX: prefix, HOST: '127.0.0.1', ENDPOINT_PASSWORD: PASSWORD, METRICS_PORT: '0',
      STATE_REGISTRY: registry.url, IMAGE_REGISTRY: 'https://harbor.example.com', COSIGN_KEY: keys.keyPath, COSIGN_PASSWORD: KEY_PASSWORD,
      BUILD_DEBOUNCE_MS: '150', BUILD_BACKOFF_MS: '100', JOB_LOCK_MS: '2000', WORKER_CONCURRENCY: '2', RECONCILE_INTERVAL_SECONDS: '2',
    };
    const ports = [await freePort(), await freePort()];
    for (const port of ports) running.push(await spawnSatellite(['adapter'], { ...env, PORT: String(port) }, 'endpoint listening'));
    const workers = [await spawnSatellite(['worker'], env, 'worker started'), await spawnSatellite(['worker'], env, 'worker started')];
    running.push(...workers);

    // A satellite's view, all along: every latest it sees must verify, and versions only grow.
    const client = new RegistryClient(registry.url);
    const key = createPublicKey(keys.publicPem);
    const verified = new Set<string>();
    const seenVersions = new Map<string, number[]>(GROUPS.map((g) => [g, []]));
    const violations: string[] = [];
    let watching = true;
    const watch = (async () => {
      while (watching) {
        for (const g of GROUPS) {
          const head = await client.headManifest(repo(g), 'latest').catch(() => undefined);
          if (!head || verified.has(head.digest)) continue;
          const check = await verifyStateSignature(client, repo(g), head.digest, key, `${registry.host}/${repo(g)}`);
          if (!check.verified) violations.push(`${g}: latest ${head.digest} is not signed`);
          const state = await readLatestState(client, repo(g), head.digest).catch(() => undefined);
          if (state) seenVersions.get(g)!.push(state.version);
          verified.add(head.digest);
        }
        await new Promise((r) => setTimeout(r, 50));
      }
    })();

    const acknowledged: { group: string; repository: string; tag: string; digest: string }[] = [];
    const layers = [randomLayer(64)];
    let next = 0;
    let killed = false;
    const pusher = async () => {
      for (let i = next++; i < PUTS; i = next++) {
        const group = GROUPS[i % GROUPS.length]!;
        const repository = `library/app${i % 25}`;
        const img = image({ layers });
        const res = await fetch(`http://127.0.0.1:${ports[i % 2]}/v2/${group}/${repository}/manifests/t${i}`, {
          method: 'PUT', headers: { Authorization: basic('harbor', PASSWORD), 'Content-Type': img.manifest.mediaType }, body: img.manifest.bytes,
        });
        if (res.status === 201) acknowledged.push({ group, repository, tag: `t${i}`, digest: img.manifest.digest });
        if (!killed && acknowledged.length >= PUTS / 2) {
          killed = true;
          workers[0]!.child.kill('SIGKILL');
        }
      }
    };
    await Promise.all(Array.from({ length: 16 }, pusher));
    expect(killed, 'a worker was killed mid-run').to.equal(true);
    expect(acknowledged.length, 'every PUT was acknowledged').to.equal(PUTS);

    // Every acknowledged manifest, with its tag, in each group's signed latest.
    for (const g of GROUPS) {
      const expected = acknowledged.filter((a) => a.group === g);
      await until(`${g} to hold all ${expected.length} acknowledged manifests`, async () => {
        const state = await readLatestState(client, repo(g));
        if (!state) return undefined;
        const have = new Set((state.artifacts as { repository: string; digest: string; tag: string[] }[]).flatMap((a) => a.tag.map((t) => `${a.repository}:${t}@${a.digest}`)));
        return expected.every((a) => have.has(`${a.repository}:${a.tag}@${a.digest}`)) ? true : undefined;
      }, 90_000);
    }
    watching = false;
    await watch;

    expect(violations).to.deep.equal([]);
    for (const g of GROUPS) {
      const seen = seenVersions.get(g)!;
      expect(seen.length, `${g}: latest was watched`).to.be.greaterThan(0);
      expect(seen, `${g}: latest never went back to an older version`).to.deep.equal([...seen].sort((a, b) => a - b));
    }
    const { rows: dup } = await db.pool.query(
      `SELECT group_name, content_digest, count(*)::int AS n FROM state_versions WHERE status = 'published'
        GROUP BY group_name, content_digest HAVING count(*) > 1`);
    expect(dup, 'one published version per distinct content').to.deep.equal([]);
    const { rows: order } = await db.pool.query<{ group_name: string; version: number; published_at: Date }>(
      "SELECT group_name, version, published_at FROM state_versions WHERE status = 'published' ORDER BY group_name, version");
    for (const g of GROUPS) {
      const mine = order.filter((r) => r.group_name === g);
      const times = mine.map((r) => r.published_at.getTime());
      expect(times, `${g}: versions published in order`).to.deep.equal([...times].sort((a, b) => a - b));
      const latest = await readLatestState(client, repo(g));
      expect(latest.version, `${g}: latest is the newest published version`).to.equal(mine[mine.length - 1]!.version);
    }
  });
});
