import { expect } from 'chai';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startDockerRegistry, type LocalRegistry } from '../../harbor-dev/docker-registry.js';
import { RegistryClient } from '../../core/registry/registry-client.js';
import { createTestDatabase, type TestDatabase } from '../support/db.js';
import { basic } from '../support/endpoint.js';
import { startFaultProxy } from '../support/fault-proxy.js';
import { image, imageBlobs, index, indexBlobs, writeLayout } from '../support/oci.js';
import { freePort, spawnSatellite, until, type Spawned } from '../support/process.js';
import { dropPrefix, REDIS_URL, testPrefix } from '../support/redis.js';
import { satellite, skopeoCopy } from '../support/run.js';
import { KEY_PASSWORD, readLatestState, testKeys, type TestKeys } from '../support/worker.js';

const PASSWORD = 'end-to-end-secret-1';
const repo = (group: string) => `satellite/group-state/${group}/state`;


async function latestState(client: RegistryClient, group: string, version: number) {
  const state = await readLatestState(client, repo(group));
  return state?.version === version ? state : undefined;
}

describe('end to end: skopeo → endpoint → worker → signed state in docker-registry', function () {
  this.timeout(120_000);
  let db: TestDatabase;
  let registry: LocalRegistry;
  let keys: TestKeys;
  let prefix: string;
  let work: string;
  const running: Spawned[] = [];

  before(async () => {
    registry = await startDockerRegistry();
    keys = await testKeys();
    work = await mkdtemp(join(tmpdir(), 'satellite-e2e-'));
  });
  beforeEach(async () => {
    db = await createTestDatabase();
    prefix = testPrefix();
  });
  afterEach(async () => {
    for (const p of running.splice(0)) {
      p.child.kill('SIGKILL');
      await p.exited;
    }
    await db?.drop();
    await dropPrefix(prefix);
  });
  after(async () => {
    await registry?.stop();
    if (keys) await rm(keys.dir, { recursive: true, force: true });
    if (work) await rm(work, { recursive: true, force: true });
  });

  const env = (extra: Record<string, string> = {}) => ({
    DATABASE_URL: db.url, REDIS_URL, QUEUE_PREFIX: prefix, HOST: '127.0.0.1', ENDPOINT_PASSWORD: PASSWORD,
    STATE_REGISTRY: registry.url, IMAGE_REGISTRY: 'https://harbor.example.com', COSIGN_KEY: keys.keyPath, COSIGN_PASSWORD: KEY_PASSWORD,
    BUILD_DEBOUNCE_MS: '200', BUILD_BACKOFF_MS: '100', METRICS_PORT: '0', ...extra,
  });

  it('when skopeo pushes into `satellite serve`, then a signed state listing exactly what was pushed appears, and a DELETE adds a tombstone', async () => {
    const port = await freePort();
    const opsPort = await freePort();
    const admin = { username: 'ops', password: 'admin-secret-e2e-1' };
    running.push(await spawnSatellite(['serve'], env({ PORT: String(port), METRICS_PORT: String(opsPort), ADMIN_USERNAME: admin.username, ADMIN_PASSWORD: admin.password }), 'worker started'));
    const single = image();
    const multi = index([{ architecture: 'amd64', os: 'linux' }, { architecture: 'arm64', os: 'linux' }]);
    await writeLayout(join(work, 'alpine'), '3.20', single.manifest, imageBlobs(single));
    await writeLayout(join(work, 'nginx'), '1.27', multi.manifest, indexBlobs(multi));
    await skopeoCopy(`oci:${join(work, 'alpine')}:3.20`, `docker://127.0.0.1:${port}/edge-eu/library/alpine:3.20`, `harbor:${PASSWORD}`);
    await skopeoCopy(`oci:${join(work, 'nginx')}:1.27`, `docker://127.0.0.1:${port}/edge-eu/library/nginx:1.27`, `harbor:${PASSWORD}`);

    const client = new RegistryClient(registry.url);
    const rows = (s: { artifacts: { repository: string; digest: string; tag: string[]; deleted: boolean }[] }) => s.artifacts.map((a) => [a.repository, a.digest, a.tag, a.deleted]);
    const expected = [
      ['library/alpine', single.manifest.digest, ['3.20'], false],
      ['library/nginx', multi.manifest.digest, ['1.27'], false],
    ];
    // The pushes may land in one version or several (the debounce may close between them on a
    // busy machine; an index's children arrive before it): the last one lists exactly both.
    let last: unknown;
    const state = await until('a signed state listing exactly what was pushed', async () => {
      const s = await readLatestState(client, repo('edge-eu'));
      last = s && rows(s);
      return s && JSON.stringify(rows(s)) === JSON.stringify(expected) ? s : undefined;
    }).catch((err: Error) => { throw new Error(`${err.message}; the last state listed ${JSON.stringify(last)}`); });
    expect(state.group).to.equal('edge-eu');
    expect(rows(state)).to.deep.equal(expected);
    const verified = await satellite(['verify', `${registry.host}/${repo('edge-eu')}:latest`, '--key', keys.pubPath, '--plain-http'], { STATE_REGISTRY: registry.url });
    expect(verified.stdout).to.include('docker-manifest-digest');

    const del = await fetch(`http://127.0.0.1:${port}/v2/edge-eu/library/alpine/manifests/${single.manifest.digest}`, { method: 'DELETE', headers: { Authorization: basic('harbor', PASSWORD) } });
    expect(del.status).to.equal(202);
    const next = await until('the state with the tombstone', () => latestState(client, 'edge-eu', state.version + 1));
    const alpine = next.artifacts.find((a: { repository: string }) => a.repository === 'library/alpine');
    expect(alpine).to.include({ digest: single.manifest.digest, deleted: true });
    expect(alpine.tag).to.deep.equal(['3.20']);

    // The metrics count what happened, on the operations port only; the dashboard is
    // behind the admin credential, which the endpoint's does not replace.
    const metrics = await (await fetch(`http://127.0.0.1:${opsPort}/metrics`)).text();
    expect(metrics).to.match(/satellite_manifests_received_total\{action="put",outcome="recorded"\} [1-9]/);
    expect(metrics).to.match(/satellite_state_builds_total\{result="published"\} [1-9]/);
    expect(metrics).to.match(/satellite_queue_jobs\{state="failed"\} 0/);
    expect((await fetch(`http://127.0.0.1:${port}/metrics`)).status).to.equal(404);
    expect((await fetch(`http://127.0.0.1:${opsPort}/admin/queues`)).status).to.equal(401);
    expect((await fetch(`http://127.0.0.1:${opsPort}/admin/queues`, { headers: { Authorization: basic('harbor', PASSWORD) } })).status).to.equal(401);
    const board = await fetch(`http://127.0.0.1:${opsPort}/admin/queues`, { headers: { Authorization: basic(admin.username, admin.password) } });
    expect(board.status).to.equal(200);
    expect(await board.text()).to.include('<html');

    const show = await satellite(['state', 'show', 'edge-eu', '--json'], { ...env(), COSIGN_PUBLIC_KEY: keys.pubPath });
    expect(JSON.parse(show.stdout)).to.include({ group: 'edge-eu', version: next.version, latestTagMatches: true, signature: `verified with ${keys.pubPath}` });
  });

  it('when the worker is killed with SIGKILL in the middle of a publish, then another worker recovers the job and the final state is correct', async () => {
    const proxy = await startFaultProxy(registry.url);
    // The first PUT of latest hangs: the worker is stuck in the middle of its job.
    proxy.rules.push({ method: 'PUT', path: /\/manifests\/latest$/, fault: 'hang', times: 1 });
    try {
      const workerEnv = env({ STATE_REGISTRY: proxy.url, JOB_LOCK_MS: '2000', REGISTRY_TIMEOUT_MS: '60000' });
      const first = await spawnSatellite(['worker'], workerEnv, 'worker started');
      running.push(first);
      const port = await freePort();
      running.push(await spawnSatellite(['adapter'], env({ PORT: String(port) }), 'endpoint listening'));
      const img = image();
      const put = await fetch(`http://127.0.0.1:${port}/v2/edge-kill/library/alpine/manifests/3.20`, {
        method: 'PUT', headers: { Authorization: basic('harbor', PASSWORD), 'Content-Type': img.manifest.mediaType }, body: img.manifest.bytes,
      });
      expect(put.status).to.equal(201);
      await until('the publish to hang', async () => (proxy.injected() === 1 ? true : undefined));
      first.child.kill('SIGKILL');
      await first.exited;
      const second = await spawnSatellite(['worker'], workerEnv, 'worker started');
      running.push(second);
      const client = new RegistryClient(registry.url);
      const state = await until('the recovered state', () => latestState(client, 'edge-kill', 1));
      expect(second.output(), 'the job was taken over as a stalled job').to.include('job stalled');
      expect(state.artifacts.map((a: { digest: string }) => a.digest)).to.deep.equal([img.manifest.digest]);
      const tags = (await client.listTags(repo('edge-kill'))).filter((t) => /^v\d+$/.test(t));
      expect(tags).to.deep.equal(['v1']);
      const { rows } = await db.pool.query("SELECT version, status FROM state_versions WHERE group_name = 'edge-kill'");
      expect(rows).to.deep.equal([{ version: 1, status: 'published' }]);
    } finally {
      await proxy.close();
    }
  });

  it('when the worker is killed four times on the same job until BullMQ fails it as stalled, then a healthy worker still publishes every acknowledged change', async () => {
    const proxy = await startFaultProxy(registry.url);
    // Every PUT of latest hangs: whichever worker runs the job is stuck in it when killed.
    proxy.rules.push({ method: 'PUT', path: /\/manifests\/latest$/, fault: 'hang', times: 1_000_000 });
    try {
      const workerEnv = env({ STATE_REGISTRY: proxy.url, JOB_LOCK_MS: '1000', RECONCILE_INTERVAL_SECONDS: '1' });
      const { record } = await import('../support/worker.js');
      const images = Array.from({ length: 300 }, () => image());
      await Promise.all(images.map((img, i) => record(db.pool, 'edge-stall', `library/app${i % 20}`, img, `t${i}`)));
      for (let kill = 1; kill <= 4; kill++) {
        const w = await spawnSatellite(['worker'], workerEnv, 'worker started');
        running.push(w);
        await until(`publish attempt ${kill} to hang`, async () => (proxy.injected() >= kill ? true : undefined));
        w.child.kill('SIGKILL');
        await w.exited;
      }
      proxy.rules.length = 0;
      const healthy = await spawnSatellite(['worker'], workerEnv, 'worker started');
      running.push(healthy);
      const client = new RegistryClient(registry.url);
      const state = await until('every acknowledged change in a signed latest', async () => {
        const s = await readLatestState(client, repo('edge-stall'));
        return s?.artifacts.length === 300 ? s : undefined;
      }, 60_000);
      expect(healthy.output(), 'BullMQ gave up on the job').to.include('stalled more than allowable limit');
      expect(state.artifacts.map((a: { digest: string }) => a.digest).sort()).to.deep.equal(images.map((i) => i.manifest.digest).sort());
      // Signed under the name it was published at (through the proxy); verify exits 0 only if so.
      const verified = await satellite(['verify', `${proxy.host}/${repo('edge-stall')}:latest`, '--key', keys.pubPath, '--plain-http'], { STATE_REGISTRY: proxy.url });
      expect(verified.stdout).to.include('docker-manifest-digest');
    } finally {
      await proxy.close();
    }
  });

  it('when the worker gets SIGTERM in the middle of a publish, then it finishes that publish and exits 0', async () => {
    const proxy = await startFaultProxy(registry.url);
    proxy.rules.push({ method: 'PUT', path: /\/manifests\/latest$/, fault: 'slow', times: 1, delayMs: 1500 });
    try {
      const worker = await spawnSatellite(['worker'], env({ STATE_REGISTRY: proxy.url }), 'worker started');
      running.push(worker);
      const { record } = await import('../support/worker.js');
      const img = image();
      await record(db.pool, 'edge-term', 'library/alpine', img, '1');
      await until('the publish to reach latest', async () => (proxy.injected() === 1 ? true : undefined));
      worker.child.kill('SIGTERM');
      const { code } = await worker.exited;
      expect(code).to.equal(0);
      const { rows } = await db.pool.query("SELECT version, status FROM state_versions WHERE group_name = 'edge-term'");
      expect(rows).to.deep.equal([{ version: 1, status: 'published' }]);
      const state = await latestState(new RegistryClient(registry.url), 'edge-term', 1);
      expect(state.artifacts[0].digest).to.equal(img.manifest.digest);
    } finally {
      await proxy.close();
    }
  });
});
