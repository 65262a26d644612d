import { expect } from 'chai';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RegistryClient } from '../../core/registry/registry-client.js';
import { startHarborDouble, type HarborDouble } from '../../harbor-dev/harbor-double.js';
import { basicAuth, HARBOR_ADMIN, UPSTREAM } from '../support/admin.js';
import { startHarborRegistry } from '../support/harbor-registry.js';
import { createTestDatabase, type TestDatabase } from '../support/db.js';
import { image, imageBlobs, writeLayout } from '../support/oci.js';
import { freePort, spawnSatellite, until, type Spawned } from '../support/process.js';
import { dropPrefix, REDIS_URL, testPrefix } from '../support/redis.js';
import { satellite, skopeoCopy } from '../support/run.js';
import { KEY_PASSWORD, readLatestState, useRegistryAndKeys } from '../support/worker.js';

// The whole path with Harbor's API played by the double: `groups create` through the admin
// API of a running `satellite serve`, Harbor's replication replayed into the endpoint with
// skopeo (to the destination the rule names, with the endpoint's credential), the signed
// state in a real registry, `satellites register`, and the robot's pull rights as Harbor's
// token service grants them, kept in step when the group gains an image from a new project.
// A second case goes on to the device: `satellite agent register` with the one-time token,
// then `satellite agent --once` pulling through Harbor's registry auth with the robot.

const ENDPOINT_PASSWORD = 'e2e-endpoint-secret-1';
const ADMIN_PASSWORD = 'e2e-admin-secret-12';

describe('end to end with the Harbor double: groups create → replication → signed state → register → pull rights', function () {
  this.timeout(120_000);
  const shared = useRegistryAndKeys();
  let db: TestDatabase;
  let harbor: HarborDouble;
  let prefix: string;
  let work: string;
  const running: Spawned[] = [];
  beforeEach(async () => {
    db = await createTestDatabase();
    harbor = await startHarborDouble(UPSTREAM, HARBOR_ADMIN);
    prefix = testPrefix();
    work = await mkdtemp(join(tmpdir(), 'satellite-harbor-e2e-'));
  });
  afterEach(async () => {
    for (const p of running.splice(0)) {
      p.child.kill('SIGKILL');
      await p.exited;
    }
    expect(harbor.violations, 'requests that break Harbor\'s spec').to.deep.equal([]);
    await harbor.close();
    await db.drop();
    await dropPrefix(prefix);
    await rm(work, { recursive: true, force: true });
  });

  it('when a group is created, replicated and a satellite registers, then its robot may pull exactly the state project and the images\' projects, and gains a new one', async () => {
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    running.push(await spawnSatellite(['serve'], {
      DATABASE_URL: db.url, REDIS_URL, QUEUE_PREFIX: prefix, HOST: '127.0.0.1', PORT: String(port), METRICS_PORT: '0',
      ENDPOINT_PASSWORD, ENDPOINT_URL: url, ADMIN_USERNAME: 'operator', ADMIN_PASSWORD,
      HARBOR_URL: harbor.url, HARBOR_USERNAME: HARBOR_ADMIN.username, HARBOR_PASSWORD: HARBOR_ADMIN.password,
      STATE_REGISTRY: shared.registry.url, IMAGE_REGISTRY: 'https://harbor.example.com', COSIGN_KEY: shared.keys.keyPath, COSIGN_PASSWORD: KEY_PASSWORD,
      BUILD_DEBOUNCE_MS: '100', BUILD_BACKOFF_MS: '100',
    }, 'worker started'));
    const admin = basicAuth('operator', ADMIN_PASSWORD);
    const api = async (path: string, method = 'GET', body?: unknown, auth: string | null = admin) => {
      const res = await fetch(url + path, {
        method, headers: { ...(auth ? { Authorization: auth } : {}), ...(body ? { 'Content-Type': 'application/json' } : {}) }, body: body ? JSON.stringify(body) : undefined,
      });
      return { status: res.status, body: await res.json().catch(() => undefined) as any };
    };

    // In Harbor: the images the group should run, and one it should not.
    const alpine = image();
    const curl = image();
    harbor.addArtifact({ repository: 'library/alpine', digest: alpine.manifest.digest, tags: ['3.20'] });
    harbor.addArtifact({ repository: 'tools/curl', digest: curl.manifest.digest, tags: ['8'] });
    harbor.addArtifact({ repository: 'secret/db', digest: `sha256:${'5'.repeat(64)}`, tags: ['1'] });

    // 1. groups create (with a first manual replication)
    const created = await api('/api/v1/groups', 'POST', { name: 'edge-eu', filters: [{ type: 'name', value: '{library,tools}/**' }], replicate: true });
    expect(created.status, JSON.stringify(created.body)).to.equal(201);
    const policy = harbor.policies[0]!;
    const registry = harbor.registries.find((r) => r.id === (policy.dest_registry as { id: number }).id)!;
    expect(registry.url).to.equal(url);
    expect(policy).to.deep.include({ dest_namespace: 'edge-eu', dest_namespace_replace_count: 0 });

    // 2. Harbor replicates library/alpine as its rule says: <dest_namespace>/<source repository>, with the endpoint's credential.
    const push = async (img: typeof alpine, repository: string, tag: string) => {
      const dir = join(work, repository.replace('/', '-'));
      await writeLayout(dir, tag, img.manifest, imageBlobs(img));
      await skopeoCopy(`oci:${dir}:${tag}`, `docker://127.0.0.1:${port}/${policy.dest_namespace}/${repository}:${tag}`,
        `${(registry.credential as { access_key: string }).access_key}:${ENDPOINT_PASSWORD}`);
    };
    await push(alpine, 'library/alpine', '3.20');
    await harbor.notifyReplication(created.body.executionId, 'library');
    expect(harbor.deliveries.at(-1)).to.deep.include({ event: 'REPLICATION', status: 200 });

    // 3. The signed state.
    const client = new RegistryClient(shared.registry.url);
    const stateRepo = 'satellite/group-state/edge-eu/state';
    const state = await until('the signed state', async () => {
      const s = await readLatestState(client, stateRepo);
      return s?.artifacts.length === 1 ? s : undefined;
    });
    expect(state.artifacts[0]).to.include({ repository: 'library/alpine', digest: alpine.manifest.digest });
    const verified = await satellite(['verify', `${shared.registry.host}/${stateRepo}:latest`, '--key', shared.keys.pubPath, '--plain-http'], { STATE_REGISTRY: shared.registry.url });
    expect(verified.stdout).to.include('docker-manifest-digest');

    // 4. satellites register
    const issued = await api('/api/v1/satellites', 'POST', { name: 'store-042', groups: ['edge-eu'] });
    expect(issued.status).to.equal(201);
    const reg = await api('/api/v1/satellites/register', 'POST', { token: issued.body.token }, null);
    expect(reg.status).to.equal(200);
    expect(reg.body.groups).to.deep.equal([{ name: 'edge-eu', state: stateRepo }]);
    expect(reg.body.publicKey).to.equal(shared.keys.publicPem);
    expect(await client.headManifest(reg.body.groups[0].state, 'latest'), 'the state named in the registration exists').to.not.equal(undefined);

    // 5. The robot's pull rights, as Harbor's token service grants them.
    const may = async (repository: string) => {
      const res = await fetch(`${harbor.url}/service/token?service=harbor-registry&scope=repository:${repository}:pull`, { headers: { Authorization: basicAuth(reg.body.username, reg.body.password) } });
      const claims = JSON.parse(Buffer.from(((await res.json()) as { token: string }).token.split('.')[1]!, 'base64url').toString());
      return (claims.access[0]?.actions ?? []).includes('pull') as boolean;
    };
    expect(await may('library/alpine')).to.equal(true);
    expect(await may(`${stateRepo}`)).to.equal(true);
    expect(await may('tools/curl'), 'nothing the group lists comes from tools yet').to.equal(false);
    expect(await may('secret/db')).to.equal(false);

    // 6. The group gains an image from a new project: after the next publish, the robot follows.
    await push(curl, 'tools/curl', '8');
    await until('the robot to gain tools', async () => ((await may('tools/curl')) ? true : undefined), 30_000);
    expect(await may('secret/db')).to.equal(false);
    const fleet = await api('/api/v1/satellites/store-042');
    expect(fleet.body.robot.projects).to.deep.equal(['library', 'satellite', 'tools']);
  });

  it('when a satellite registers with its token, then satellite agent register writes its configuration, satellite agent --once pulls the group\'s images with the robot (a new project\'s once the robot follows), and satellites list shows it up to date, then behind by 2 after 2 new versions', async () => {
    // Harbor's registry: the images live there, states are published there, and every pull
    // needs a token from Harbor's token service granting it.
    const front = await startHarborRegistry(shared.registry.url, `${harbor.url}/service/token`);
    try {
      const port = await freePort();
      const url = `http://127.0.0.1:${port}`;
      running.push(await spawnSatellite(['serve'], {
        DATABASE_URL: db.url, REDIS_URL, QUEUE_PREFIX: prefix, HOST: '127.0.0.1', PORT: String(port), METRICS_PORT: '0',
        ENDPOINT_PASSWORD, ENDPOINT_URL: url, ADMIN_USERNAME: 'operator', ADMIN_PASSWORD,
        HARBOR_URL: harbor.url, HARBOR_USERNAME: HARBOR_ADMIN.username, HARBOR_PASSWORD: HARBOR_ADMIN.password,
        STATE_REGISTRY: front.url, STATE_REGISTRY_USERNAME: HARBOR_ADMIN.username, STATE_REGISTRY_PASSWORD: HARBOR_ADMIN.password,
        COSIGN_KEY: shared.keys.keyPath, COSIGN_PASSWORD: KEY_PASSWORD, BUILD_DEBOUNCE_MS: '100', BUILD_BACKOFF_MS: '100',
      }, 'worker started'));
      const admin = basicAuth('operator', ADMIN_PASSWORD);
      const api = async (path: string, body: unknown) => {
        const res = await fetch(url + path, { method: 'POST', headers: { Authorization: admin, 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
        return { status: res.status, body: await res.json().catch(() => undefined) as any };
      };
      const alpine = image();
      const curl = image();
      const busybox = image();
      harbor.addArtifact({ repository: 'library/alpine', digest: alpine.manifest.digest, tags: ['3.20'] });
      harbor.addArtifact({ repository: 'tools/curl', digest: curl.manifest.digest, tags: ['8'] });
      const created = await api('/api/v1/groups', { name: 'edge-eu', filters: [{ type: 'name', value: '{library,tools}/**' }] });
      expect(created.status, JSON.stringify(created.body)).to.equal(201);
      const policy = harbor.policies[0]!;
      const registry = harbor.registries.find((r) => r.id === (policy.dest_registry as { id: number }).id)!;
      const replicate = async (img: typeof alpine, repository: string, tag: string) => {
        const dir = join(work, repository.replace('/', '-'));
        await writeLayout(dir, tag, img.manifest, imageBlobs(img));
        await skopeoCopy(`oci:${dir}:${tag}`, `docker://${shared.registry.host}/${repository}:${tag}`, 'x:y'); // pushed to Harbor
        await skopeoCopy(`oci:${dir}:${tag}`, `docker://127.0.0.1:${port}/${policy.dest_namespace}/${repository}:${tag}`,
          `${(registry.credential as { access_key: string }).access_key}:${ENDPOINT_PASSWORD}`); // replicated to us
      };
      await replicate(alpine, 'library/alpine', '3.20');

      const issued = await api('/api/v1/satellites', { name: 'store-042', groups: ['edge-eu'] });
      expect(issued.status).to.equal(201);
      const config = join(work, 'agent.yaml');
      const registered = await satellite(['agent', 'register', '--url', url, '--token', issued.body.token, '--out', config,
        '--store', join(work, 'store'), '--listen', '127.0.0.1:0', '--platform', 'linux/amd64'], {});
      expect(registered.stdout).to.include('registered as store-042');
      expect((await stat(config)).mode & 0o777, 'the file holds a credential').to.equal(0o600);
      const again = await satellite(['agent', 'register', '--url', url, '--token', issued.body.token, '--out', join(work, 'again.yaml')], {})
        .then(() => 'accepted', (e: { stderr: string }) => e.stderr);
      expect(again, 'the token works once').to.match(/registration refused \(401\)/);

      const runOnce = async () => satellite(['agent', '--once', '--config', config], { SATELLITE_AGENT_LOG_LEVEL: 'warn' }).then(() => 0, (e: { code: number }) => e.code);
      const statusOf = async () => JSON.parse((await satellite(['agent', 'status', '--json', '--config', config], {}).catch((e: { stdout: string }) => e)).stdout);
      await until('the agent to apply the signed state with alpine', async () => ((await runOnce()) === 0 ? true : undefined), 30_000);
      expect((await statusOf()).groups[0]).to.deep.include({ name: 'edge-eu', images: { present: 1, pending: 0, failed: 0, skipped: 0 } });

      // The fleet view, from what the agent reported with its robot credential.
      const fleet = async () => {
        const list = JSON.parse((await satellite(['satellites', 'list', '--json'], { DATABASE_URL: db.url })).stdout) as { name: string; status: string; lastSeen: string | null; agentVersion: string | null; drift: { group: string; summary: string; behind: number | null }[] }[];
        return list.find((x) => x.name === 'store-042')!;
      };
      const upToDate = await fleet();
      expect(upToDate).to.deep.include({ status: 'up to date' });
      expect(upToDate.drift.map((d) => [d.group, d.summary, d.behind])).to.deep.equal([['edge-eu', 'up to date', 0]]);
      expect(upToDate.lastSeen).to.be.a('string');
      expect(upToDate.agentVersion).to.be.a('string');

      // Two new versions of the group while the device sleeps: behind by 2.
      const latestVersion = async () => Number((await db.pool.query("SELECT max(version) AS v FROM state_versions WHERE group_name = 'edge-eu' AND status = 'published'")).rows[0].v);
      const applied = await latestVersion();
      await replicate(curl, 'tools/curl', '8');
      await until('a second version', async () => ((await latestVersion()) === applied + 1 ? true : undefined), 30_000);
      harbor.addArtifact({ repository: 'library/busybox', digest: busybox.manifest.digest, tags: ['1.36'] });
      await replicate(busybox, 'library/busybox', '1.36');
      await until('a third version', async () => ((await latestVersion()) === applied + 2 ? true : undefined), 30_000);
      const behind = await fleet();
      expect(behind.status).to.equal('behind');
      expect(behind.drift.map((d) => [d.group, d.summary, d.behind])).to.deep.equal([['edge-eu', 'behind by 2 versions', 2]]);

      // The group gained an image from a new project: the agent pulls it once the robot may, and is up to date again.
      await until('the agent to pull tools/curl with the robot', async () => {
        if ((await runOnce()) !== 0) return undefined;
        const g = (await statusOf()).groups[0];
        return g.images.present === 3 ? true : undefined;
      }, 60_000);
      expect((await fleet()).drift.map((d) => d.summary)).to.deep.equal(['up to date']);
    } finally {
      await front.close();
    }
  });
});
