import { expect } from 'chai';
import { gunzipSync } from 'node:zlib';
import { extract } from 'tar-stream';
import { cosignSignature, image, signatureTag } from '../support/oci.js';
import { KEY_PASSWORD, record, testBuilder, useRegistryAndKeys, workerConfig } from '../support/worker.js';
import { basicAuth, startAdminHarness, type AdminHarness } from '../support/admin.js';
import { createServer } from 'node:http';
import { forward, listenLocal } from '../support/forward.js';
import { createLogger } from '../../core/logger.js';
import { Metrics } from '../../core/metrics.js';
import { loadSigningKey } from '../../worker/signer.js';
import { startWorker } from '../../worker/state-worker.js';
import { until } from '../support/process.js';
import { dropPrefix, REDIS_URL, testPrefix } from '../support/redis.js';

// Harbor Satellite's satellites (container-registry/harbor-satellite), replayed: zero-touch
// registration, then reading the satellite state, each group state and the config state as
// they do (crane pull of the reference, export of the one layer, artifacts.json parsed),
// then heartbeats to /satellites/sync with the robot credential.

/** What a Harbor Satellite satellite gets from a state reference: the artifacts.json of its one layer. */
async function readAsSatellite(ref: string): Promise<unknown> {
  const m = /^(https?):\/\/([^/]+)\/(.+):([^:/]+)$/.exec(ref);
  if (!m) throw new Error(`not a reference with a scheme: ${ref}`);
  const [, scheme, host, repository, tag] = m;
  const base = `${scheme}://${host}/v2/${repository}`;
  const manifest = await fetch(`${base}/manifests/${tag}`, { headers: { Accept: 'application/vnd.docker.distribution.manifest.v2+json' } });
  expect(manifest.status, ref).to.equal(200);
  const doc = await manifest.json() as { mediaType: string; layers: { mediaType: string; digest: string }[] };
  expect(doc.mediaType).to.equal('application/vnd.docker.distribution.manifest.v2+json');
  expect(doc.layers).to.have.length(1);
  expect(doc.layers[0]!.mediaType).to.equal('application/vnd.docker.image.rootfs.diff.tar.gzip');
  const layer = Buffer.from(await (await fetch(`${base}/blobs/${doc.layers[0]!.digest}`)).arrayBuffer());
  const files = new Map<string, Buffer>();
  await new Promise<void>((resolve, reject) => {
    const x = extract();
    x.on('entry', (header, stream, next) => {
      const parts: Buffer[] = [];
      stream.on('data', (c: unknown) => parts.push(c as Buffer));
      stream.on('end', () => {
        files.set(header.name, Buffer.concat(parts));
        next();
      });
    });
    x.on('finish', resolve);
    x.on('error', reject);
    x.end(gunzipSync(layer));
  });
  expect([...files.keys()]).to.deep.equal(['artifacts.json']);
  return JSON.parse(files.get('artifacts.json')!.toString());
}

describe('Harbor Satellite satellites against us (STATE_LAYOUT=harbor-satellite)', function () {
  this.timeout(60_000);
  const shared = useRegistryAndKeys();
  let h: AdminHarness;
  // The same Harbor as satellites reach it (IMAGE_REGISTRY), at another address than the one
  // this service publishes to (STATE_REGISTRY), as behind a public name and an internal one.
  let front: Awaited<ReturnType<typeof listenLocal>>;
  before(async () => {
    front = await listenLocal(createServer((req, res) => forward(new URL(shared.registry.url), req, res)));
  });
  after(async () => {
    await front?.close();
  });
  afterEach(async () => {
    expect(h.harbor.violations).to.deep.equal([]);
    await h.close();
  });

  const start = async (extra: Record<string, string> = {}) => {
    h = await startAdminHarness({
      STATE_LAYOUT: 'harbor-satellite', STATE_REGISTRY: shared.registry.url, IMAGE_REGISTRY: front.url, COSIGN_KEY: shared.keys.keyPath, COSIGN_PASSWORD: KEY_PASSWORD, ...extra,
    });
    h.harbor.addArtifact({ repository: 'library/nginx', digest: `sha256:${'1'.repeat(64)}`, tags: ['1.27'] });
    expect((await h.api('/api/v1/groups', { method: 'POST', body: { name: 'edge-eu', filters: [{ type: 'name', value: 'library/**' }] } })).status).to.equal(201);
  };

  it('when a satellite registers by zero-touch and reads what we publish as it does, then it finds its states, its config, and no tombstone or signature, all at the registry its images are at', async () => {
    await start();
    const live = image();
    const removed = image();
    await record(h.db.pool, 'edge-eu', 'library/nginx', live, '1.27');
    await record(h.db.pool, 'edge-eu', 'library/nginx', cosignSignature(live.manifest, 'harbor.example.com/library/nginx'), signatureTag(live.manifest.digest));
    await record(h.db.pool, 'edge-eu', 'library/redis', removed, '7');
    await h.db.pool.query("UPDATE artifacts SET deleted = true, deleted_at = now(), deleted_tags = '{7}' WHERE repository = 'library/redis'");
    await h.db.pool.query("DELETE FROM tags WHERE repository = 'library/redis'");
    const config = workerConfig({ STATE_REGISTRY: shared.registry.url, IMAGE_REGISTRY: front.url, STATE_LAYOUT: 'harbor-satellite', DATABASE_URL: h.db.url });
    expect((await testBuilder(config, h.db.pool, shared.keys).builder.build('edge-eu')).result).to.equal('published');
    const { token } = (await h.api('/api/v1/satellites', { method: 'POST', body: { name: 'store-7', groups: ['edge-eu'] } })).body;

    const ztr = await fetch(`${h.url}/satellites/ztr/${token}`);
    expect(ztr.status).to.equal(200);
    const answer = await ztr.json() as { auth: { url: string; username: string; password: string }; state: string };
    // One registry for everything, the one its images are at: the satellite pulls images from
    // auth.url and reads every state reference with the same (Harbor robot) credential.
    expect(answer).to.deep.equal({
      auth: { url: front.url, username: 'robot$satellite-store-7', password: answer.auth.password },
      state: `${front.url}/satellite/satellite-state/store-7/state:latest`,
    });
    const access = [{ resource: 'repository', action: 'pull' }, { resource: 'repository', action: 'read' }, { resource: 'artifact', action: 'read' }];
    expect(h.harbor.robots[0]!.permissions).to.deep.equal([
      { kind: 'project', namespace: 'library', access }, { kind: 'project', namespace: 'satellite', access },
    ]);

    const satelliteState = await readAsSatellite(answer.state) as { states: string[]; config: string };
    expect(satelliteState).to.deep.equal({
      states: [`${front.url}/satellite/group-state/edge-eu/state:latest`],
      config: `${front.url}/satellite/config-state/default/state:latest`,
    });
    const group = await readAsSatellite(satelliteState.states[0]!) as { group: string; registry: string; artifacts: { repository: string; tag: string[]; deleted: boolean; type: string; digest: string }[] };
    expect(group.registry).to.equal(answer.auth.url);
    expect(group.artifacts.map((a) => [a.repository, a.tag, a.type, a.deleted])).to.deep.equal([['library/nginx', ['1.27'], 'IMAGE', false]]);
    const cfg = await readAsSatellite(satelliteState.config) as { app_config: Record<string, unknown>; zot_config: Record<string, unknown> };
    expect(cfg.app_config).to.deep.include({ ground_control_url: h.url, state_replication_interval: '@every 00h00m30s' });
    expect(cfg.zot_config).to.have.property('storage');
    // Tagged as their ground control tags: a unix time and latest.
    const tags = await (await fetch(`${shared.registry.url}/v2/satellite/satellite-state/store-7/state/tags/list`)).json() as { tags: string[] };
    expect(tags.tags.sort()).to.satisfy((t: string[]) => t.includes('latest') && t.some((x) => /^\d{10}$/.test(x)));
    const groupTags = await (await fetch(`${shared.registry.url}/v2/satellite/group-state/edge-eu/state/tags/list`)).json() as { tags: string[] };
    expect(groupTags.tags, 'group states too').to.satisfy((t: string[]) => t.includes('latest') && t.some((x) => /^\d{10}$/.test(x)));

    // Single use.
    expect((await fetch(`${h.url}/satellites/ztr/${token}`)).status).to.equal(401);

    // Heartbeats feed the fleet view; they need the robot credential and the right name.
    const beat = (name: string, auth: string) => fetch(`${h.url}/satellites/sync`, {
      method: 'POST', headers: { Authorization: auth, 'Content-Type': 'application/json' },
      body: JSON.stringify({ name, activity: '', state_report_interval: '@every 00h00m30s', latest_state_digest: '', latest_config_digest: '', memory_used_bytes: 1, storage_used_bytes: 2, cpu_percent: 0.5, request_created_time: new Date().toISOString(), last_sync_duration_ms: 12, image_count: 1, cached_images: [{ reference: 'library/nginx:1.27', size_bytes: 10 }] }),
    });
    expect((await beat('store-7', basicAuth(answer.auth.username, 'wrong'))).status).to.equal(401);
    expect((await beat('store-8', basicAuth(answer.auth.username, answer.auth.password))).status).to.equal(403);
    expect((await beat('store-7', basicAuth(answer.auth.username, answer.auth.password))).status).to.equal(200);
    const view = (await h.api('/api/v1/satellites/store-7')).body;
    expect(view).to.deep.include({ status: 'reporting', imageCount: 1 });
    expect(view.lastSeen).to.be.a('string');
  });

  it('when a registered satellite\'s groups change, then its satellite state is published again and it reads the new list of group states', async () => {
    await start();
    h.harbor.addArtifact({ repository: 'tools/curl', digest: `sha256:${'2'.repeat(64)}`, tags: ['8'] });
    expect((await h.api('/api/v1/groups', { method: 'POST', body: { name: 'edge-us', filters: [{ type: 'name', value: 'tools/**' }] } })).status).to.equal(201);
    const { token } = (await h.api('/api/v1/satellites', { method: 'POST', body: { name: 'store-5', groups: ['edge-eu'] } })).body;
    const answer = await (await fetch(`${h.url}/satellites/ztr/${token}`)).json() as { state: string };
    const groupRef = (g: string) => `${front.url}/satellite/group-state/${g}/state:latest`;
    expect(((await readAsSatellite(answer.state)) as { states: string[] }).states).to.deep.equal([groupRef('edge-eu')]);
    const moved = await h.api('/api/v1/satellites/store-5', { method: 'PATCH', body: { groups: ['edge-us', 'edge-eu'] } });
    expect(moved.status, JSON.stringify(moved.body)).to.equal(200);
    // The same reference it was given at registration now lists both groups.
    expect(((await readAsSatellite(answer.state)) as { states: string[] }).states).to.deep.equal([groupRef('edge-eu'), groupRef('edge-us')]);
    expect((await h.api('/api/v1/satellites/store-5', { method: 'PATCH', body: { groups: ['edge-us'] } })).status).to.equal(200);
    expect(((await readAsSatellite(answer.state)) as { states: string[] }).states).to.deep.equal([groupRef('edge-us')]);
  });

  it('when a satellite names groups nothing was replicated to yet, then every state reference in its satellite state resolves, to an empty group state', async () => {
    await start();
    const prefix = testPrefix();
    const config = workerConfig({
      STATE_REGISTRY: shared.registry.url, IMAGE_REGISTRY: front.url, STATE_LAYOUT: 'harbor-satellite', DATABASE_URL: h.db.url,
      REDIS_URL, QUEUE_PREFIX: prefix, COSIGN_KEY: shared.keys.keyPath, BUILD_DEBOUNCE_MS: '100',
    });
    const worker = await startWorker({ config, pool: h.db.pool, log: createLogger((process.env.TEST_LOG_LEVEL as 'silent') ?? 'silent'), metrics: new Metrics(), signingKey: await loadSigningKey(shared.keys.keyPath, KEY_PASSWORD) });
    try {
      // Groups of their own: the registry is shared by this file's tests.
      for (const name of ['fresh-a', 'fresh-b']) {
        expect((await h.api('/api/v1/groups', { method: 'POST', body: { name, filters: [{ type: 'name', value: 'library/**' }] } })).status).to.equal(201);
      }
      const { token } = (await h.api('/api/v1/satellites', { method: 'POST', body: { name: 'store-fresh', groups: ['fresh-a', 'fresh-b'] } })).body;
      const answer = await (await fetch(`${h.url}/satellites/ztr/${token}`)).json() as { state: string };
      const satelliteState = await readAsSatellite(answer.state) as { states: string[]; config: string };
      expect(satelliteState.states).to.have.length(2);
      // A Harbor Satellite satellite stops its whole sync cycle at the first state it cannot read.
      const groups = await until('every group state the satellite names', async () => {
        const found = [];
        for (const ref of satelliteState.states) found.push(await readAsSatellite(ref));
        return found;
      }, 30_000);
      expect(groups.map((g) => (g as { group: string }).group)).to.deep.equal(['fresh-a', 'fresh-b']);
      for (const g of groups) expect(g).to.deep.include({ registry: front.url, version: 1, artifacts: [] });
      expect(await readAsSatellite(satelliteState.config)).to.have.property('app_config');
    } finally {
      await worker.stop();
      await dropPrefix(prefix);
    }
  });

  it('when zero-touch tokens are tried too often from one address, then 429, even for a good token', async () => {
    await start({ REGISTRATION_RATE_LIMIT: '3' });
    const { token } = (await h.api('/api/v1/satellites', { method: 'POST', body: { name: 'store-9', groups: ['edge-eu'] } })).body;
    for (let i = 0; i < 3; i++) expect((await fetch(`${h.url}/satellites/ztr/sat_guess-${i}`)).status).to.equal(401);
    expect((await fetch(`${h.url}/satellites/ztr/${token}`)).status).to.equal(429);
    expect(h.harbor.robots).to.deep.equal([]);
  });

  it('when a satellite retries its good token every few seconds while Harbor fails, then it is never refused with 429 and registers once Harbor is back', async () => {
    await start({ REGISTRATION_RATE_LIMIT: '3' });
    const { token } = (await h.api('/api/v1/satellites', { method: 'POST', body: { name: 'store-3', groups: ['edge-eu'] } })).body;
    h.harbor.failNext('CreateRobot', 503, 6);
    for (let i = 0; i < 6; i++) expect((await fetch(`${h.url}/satellites/ztr/${token}`)).status, `try ${i}`).to.equal(502);
    expect((await fetch(`${h.url}/satellites/ztr/${token}`)).status).to.equal(200);
    expect(h.harbor.robots).to.have.length(1);
  });

  it('when the layout is the default one, then the Harbor Satellite routes are not there', async () => {
    h = await startAdminHarness({});
    expect((await fetch(`${h.url}/satellites/ztr/sat_x`)).status).to.equal(404);
  });
});
