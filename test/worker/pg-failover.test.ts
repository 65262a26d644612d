import { expect } from 'chai';
import { rm } from 'node:fs/promises';
import pg from 'pg';
import { startDockerRegistry, type LocalRegistry } from '../../harbor-dev/docker-registry.js';
import { RegistryClient } from '../../core/registry/registry-client.js';
import { basic } from '../support/endpoint.js';
import { image, randomLayer } from '../support/oci.js';
import { startPgPair, type PgPair } from '../support/pg-failover.js';
import { freePort, spawnSatellite, until, type Spawned } from '../support/process.js';
import { dropPrefix, REDIS_URL, testPrefix } from '../support/redis.js';
import { KEY_PASSWORD, readLatestState, testKeys, type TestKeys } from '../support/worker.js';

// node-postgres connects to one host, so a Postgres failover reaches the service as the
// address of DATABASE_URL leading to another server: the primary crashes mid-run, its
// synchronous standby is promoted, the address points at it. `satellite serve` is never
// restarted. A PUT that fails meanwhile (503: not acknowledged) is sent again, as Harbor's
// replication retries an artifact.

const PASSWORD = 'pg-failover-endpoint-secret';
const GROUPS = ['edge-a', 'edge-b'];
const PUTS = 600;
const repo = (group: string) => `satellite/group-state/${group}/state`;

describe('Postgres failover to another server behind the same address', function () {
  this.timeout(150_000);
  let pair: PgPair;
  let registry: LocalRegistry;
  let keys: TestKeys;
  const prefix = testPrefix();
  const running: Spawned[] = [];

  before(async () => {
    [pair, registry, keys] = await Promise.all([startPgPair(), startDockerRegistry(), testKeys()]);
  });
  after(async () => {
    for (const p of running.splice(0)) {
      p.child.kill('SIGKILL');
      await p.exited;
    }
    await pair?.stop();
    await registry?.stop();
    await dropPrefix(prefix);
    if (keys) await rm(keys.dir, { recursive: true, force: true });
  });

  it('when the primary crashes mid-run and the promoted standby takes its address, then the same process takes pushes again, and every acknowledged change is in the new primary and published', async () => {
    const [port, metricsPort] = [await freePort(), await freePort()];
    const serve = await spawnSatellite(['serve'], {
      DATABASE_URL: pair.url('satellite'), REDIS_URL, QUEUE_PREFIX: prefix, HOST: '127.0.0.1', PORT: String(port), METRICS_PORT: String(metricsPort),
      ENDPOINT_PASSWORD: PASSWORD, HARBOR_URL: '', HARBOR_PASSWORD: '',
      STATE_REGISTRY: registry.url, IMAGE_REGISTRY: 'https://harbor.example.com', COSIGN_KEY: keys.keyPath, COSIGN_PASSWORD: KEY_PASSWORD,
      BUILD_DEBOUNCE_MS: '150', BUILD_BACKOFF_MS: '100', RECONCILE_INTERVAL_SECONDS: '2', OUTBOX_POLL_MS: '500',
    }, 'worker started');
    running.push(serve);
    const pid = serve.child.pid;

    const acknowledged: { group: string; repository: string; tag: string; digest: string }[] = [];
    let refused = 0;
    const layers = [randomLayer(64)];
    let next = 0;
    let failedOver: Promise<void> | undefined;
    const pusher = async () => {
      for (let i = next++; i < PUTS; i = next++) {
        const group = GROUPS[i % GROUPS.length]!;
        const repository = `library/app${i % 10}`;
        const img = image({ layers });
        for (;;) {
          const status = await fetch(`http://127.0.0.1:${port}/v2/${group}/${repository}/manifests/t${i}`, {
            method: 'PUT', headers: { Authorization: basic('harbor', PASSWORD), 'Content-Type': img.manifest.mediaType }, body: img.manifest.bytes,
            signal: AbortSignal.timeout(20_000),
          }).then((r) => r.status, (err: Error) => `no answer: ${err.message}`);
          if (status === 201) break;
          expect(status, `a PUT the database could not take is refused as unavailable; the service said:\n${serve.output().slice(-3000)}`).to.equal(503);
          refused++;
          await new Promise((r) => setTimeout(r, 200));
        }
        acknowledged.push({ group, repository, tag: `t${i}`, digest: img.manifest.digest });
        if (!failedOver && acknowledged.length >= PUTS / 2) failedOver = pair.failover();
      }
    };
    await Promise.all(Array.from({ length: 4 }, pusher));
    await failedOver;
    expect(failedOver, 'the failover happened mid-run').to.not.equal(undefined);
    expect(acknowledged.length).to.equal(PUTS);
    expect(serve.child.pid, 'the same process').to.equal(pid);
    expect(serve.child.exitCode).to.equal(null);
    expect((await fetch(`http://127.0.0.1:${metricsPort}/readyz`)).status).to.equal(200);

    // Every acknowledged manifest is in the promoted server (it is the primary now)...
    const db = new pg.Client({ connectionString: pair.primaryUrl('satellite') });
    await db.connect();
    try {
      expect((await db.query('SELECT pg_is_in_recovery() AS standby')).rows[0].standby, 'the promoted server').to.equal(false);
      const { rows } = await db.query<{ group_name: string; repository: string; tag: string; digest: string }>('SELECT group_name, repository, tag, digest FROM tags');
      const held = new Set(rows.map((r) => `${r.group_name}/${r.repository}:${r.tag}@${r.digest}`));
      const lost = acknowledged.filter((a) => !held.has(`${a.group}/${a.repository}:${a.tag}@${a.digest}`));
      expect(lost, 'acknowledged tags the promoted server does not hold').to.deep.equal([]);
    } finally {
      await db.end();
    }
    // ...and in each group's signed latest state.
    const client = new RegistryClient(registry.url);
    for (const g of GROUPS) {
      const expected = acknowledged.filter((a) => a.group === g);
      await until(`${g} to hold all ${expected.length} acknowledged manifests`, async () => {
        const state = await readLatestState(client, repo(g));
        if (!state) return undefined;
        const have = new Set((state.artifacts as { repository: string; digest: string; tag: string[] }[]).flatMap((a) => a.tag.map((t) => `${a.repository}:${t}@${a.digest}`)));
        return expected.every((a) => have.has(`${a.repository}:${a.tag}@${a.digest}`)) ? true : undefined;
      }, 60_000);
    }
    process.stdout.write(`      (${refused} PUTs answered 503 during the failover and sent again)\n`);
  });
});
