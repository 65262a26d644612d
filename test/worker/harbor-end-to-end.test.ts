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

// With E2E_HARBOR_URL (and HARBOR_USERNAME / HARBOR_PASSWORD of an administrator), the first
// case runs against that real Harbor instead of the double, as harbor-dev/e2e-real-harbor.sh
// does: images are pushed into Harbor, Harbor itself replicates them to the endpoint (which
// listens on E2E_ENDPOINT_HOST, an address Harbor reaches) and sends the webhooks, states are
// published into Harbor, and Harbor's token service judges the robot. Not run in CI here.
const REAL = process.env.E2E_HARBOR_URL
  ? {
    url: process.env.E2E_HARBOR_URL.replace(/\/+$/, ''), username: process.env.HARBOR_USERNAME || 'admin', password: process.env.HARBOR_PASSWORD ?? '',
    endpointHost: process.env.E2E_ENDPOINT_HOST ?? '127.0.0.1', suffix: String(Date.now()),
  }
  : undefined;

/** The Harbor a case runs against: the double, or a real one (REAL). */
interface HarborUnderTest {
  url: string;
  username: string;
  password: string;
  /** Where states go and are read from, with its credential. */
  stateRegistry: { url: string; credentials?: { username: string; password: string } };
  /** Names that cannot clash with what a real Harbor already holds. */
  project(name: string): string;
  group: string;
  /** The image is in Harbor (pushed, or seeded into the double). */
  seed(repository: string, img: ReturnType<typeof image>, tag: string): Promise<void>;
  /** Harbor replicates it to the endpoint (the double: replayed with skopeo, then its webhook). */
  replicated(repository: string, img: ReturnType<typeof image>, tag: string, endpoint: { port: number; executionId?: number }): Promise<void>;
  policy(group: string): Promise<{ dest_namespace?: string; dest_namespace_replace_count?: number; dest_registry?: { id?: number; url?: string } }>;
  violations(): string[];
  close(): Promise<void>;
}

describe('end to end with the Harbor double: groups create → replication → signed state → register → pull rights', function () {
  this.timeout(REAL ? 600_000 : 120_000);
  const shared = useRegistryAndKeys();
  let db: TestDatabase;
  let harbor: HarborDouble;
  let target: HarborUnderTest | undefined;
  let prefix: string;
  let work: string;
  const running: Spawned[] = [];
  const cleanups: (() => Promise<unknown>)[] = [];

  const layoutOf = async (repository: string, img: ReturnType<typeof image>, tag: string) => {
    const dir = join(work, repository.replace(/\//g, '-'));
    await writeLayout(dir, tag, img.manifest, imageBlobs(img));
    return `oci:${dir}:${tag}`;
  };
  const doubleTarget = (): HarborUnderTest => ({
    url: harbor.url, ...HARBOR_ADMIN, stateRegistry: { url: shared.registry.url }, project: (name) => name, group: 'edge-eu',
    async seed(repository, img, tag) {
      harbor.addArtifact({ repository, digest: img.manifest.digest, tags: [tag] });
    },
    async replicated(repository, img, tag, endpoint) {
      // As Harbor's replication does: <dest_namespace>/<source repository>, with the endpoint's credential.
      const policy = harbor.policies[0]!;
      const registry = harbor.registries.find((r) => r.id === (policy.dest_registry as { id: number }).id)!;
      await skopeoCopy(await layoutOf(repository, img, tag), `docker://127.0.0.1:${endpoint.port}/${policy.dest_namespace}/${repository}:${tag}`,
        `${(registry.credential as { access_key: string }).access_key}:${ENDPOINT_PASSWORD}`);
      if (endpoint.executionId !== undefined) {
        await harbor.notifyReplication(endpoint.executionId, repository.split('/')[0]!);
        expect(harbor.deliveries.at(-1)).to.deep.include({ event: 'REPLICATION', status: 200 });
      }
    },
    async policy() {
      return harbor.policies[0]! as never;
    },
    violations: () => harbor.violations,
    close: () => harbor.close(),
  });
  const realTarget = (r: NonNullable<typeof REAL>): HarborUnderTest => {
    const auth = basicAuth(r.username, r.password);
    const harborApi = async (path: string, method = 'GET', body?: unknown) => {
      const res = await fetch(`${r.url}/api/v2.0${path}`, { method, headers: { Authorization: auth, ...(body ? { 'Content-Type': 'application/json' } : {}) }, body: body ? JSON.stringify(body) : undefined });
      if (!res.ok && res.status !== 409) throw new Error(`Harbor ${method} ${path}: ${res.status} ${await res.text()}`);
      return res.status === 200 ? res.json() as Promise<any> : undefined;
    };
    return {
      url: r.url, username: r.username, password: r.password,
      stateRegistry: { url: r.url, credentials: { username: r.username, password: r.password } },
      project: (name) => `e2e-${name}-${r.suffix}`, group: `e2e-${r.suffix}`,
      async seed(repository, img, tag) {
        const project = repository.split('/')[0]!;
        await harborApi('/projects', 'POST', { project_name: project, metadata: { public: 'false' } });
        cleanups.push(() => harborApi(`/projects/${project}/repositories/${encodeURIComponent(encodeURIComponent(repository.slice(project.length + 1)))}`, 'DELETE').catch(() => undefined));
        await skopeoCopy(await layoutOf(repository, img, tag), `docker://${r.url.replace(/^https?:\/\//, '')}/${repository}:${tag}`, `${r.username}:${r.password}`,
          r.url.startsWith('http://') ? [] : ['--dest-tls-verify=true']);
      },
      async replicated() {
        // Harbor does it: the manual execution of `replicate: true`, then its event-based trigger.
      },
      async policy(group) {
        const list = await harborApi(`/replication/policies?q=${encodeURIComponent(`name=satellite-${group}`)}`) as { id: number }[];
        return harborApi(`/replication/policies/${list[0]!.id}`);
      },
      violations: () => [],
      async close() {
        for (const c of cleanups.splice(0).reverse()) await c();
      },
    };
  };

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
    await target?.close();
    target = undefined;
    await harbor.close();
    await db.drop();
    await dropPrefix(prefix);
    await rm(work, { recursive: true, force: true });
  });

  it('when a group is created, replicated and a satellite registers, then its robot may pull exactly the state project and the images\' projects, and gains a new one', async () => {
    const t = REAL ? realTarget(REAL) : doubleTarget();
    target = t;
    const [library, tools, secret] = [t.project('library'), t.project('tools'), t.project('secret')];
    const group = t.group;
    const port = await freePort();
    const url = `http://${REAL ? REAL.endpointHost : '127.0.0.1'}:${port}`;
    const local = `http://127.0.0.1:${port}`;
    running.push(await spawnSatellite(['serve'], {
      DATABASE_URL: db.url, REDIS_URL, QUEUE_PREFIX: prefix, HOST: REAL ? '0.0.0.0' : '127.0.0.1', PORT: String(port), METRICS_PORT: '0',
      ENDPOINT_PASSWORD, ENDPOINT_URL: url, ADMIN_USERNAME: 'operator', ADMIN_PASSWORD,
      HARBOR_URL: t.url, HARBOR_USERNAME: t.username, HARBOR_PASSWORD: t.password,
      STATE_REGISTRY: t.stateRegistry.url,
      ...(t.stateRegistry.credentials ? { STATE_REGISTRY_USERNAME: t.stateRegistry.credentials.username, STATE_REGISTRY_PASSWORD: t.stateRegistry.credentials.password } : {}),
      IMAGE_REGISTRY: REAL ? REAL.url : 'https://harbor.example.com', COSIGN_KEY: shared.keys.keyPath, COSIGN_PASSWORD: KEY_PASSWORD,
      BUILD_DEBOUNCE_MS: '100', BUILD_BACKOFF_MS: '100',
    }, 'worker started'));
    const admin = basicAuth('operator', ADMIN_PASSWORD);
    const api = async (path: string, method = 'GET', body?: unknown, auth: string | null = admin) => {
      const res = await fetch(local + path, {
        method, headers: { ...(auth ? { Authorization: auth } : {}), ...(body ? { 'Content-Type': 'application/json' } : {}) }, body: body ? JSON.stringify(body) : undefined,
      });
      return { status: res.status, body: await res.json().catch(() => undefined) as any };
    };
    if (REAL) {
      cleanups.push(() => api(`/api/v1/satellites/store-${REAL.suffix}`, 'DELETE'));
      cleanups.push(() => api(`/api/v1/groups/${group}`, 'DELETE'));
    }
    const satelliteName = REAL ? `store-${REAL.suffix}` : 'store-042';

    // In Harbor: the image the group should run, and one it should not.
    const alpine = image();
    const curl = image();
    await t.seed(`${library}/alpine`, alpine, '3.20');
    await t.seed(`${secret}/db`, image(), '1');

    // 1. groups create (with a first manual replication)
    const created = await api('/api/v1/groups', 'POST', { name: group, filters: [{ type: 'name', value: `{${library},${tools}}/**` }], replicate: true });
    expect(created.status, JSON.stringify(created.body)).to.equal(201);
    const policy = await t.policy(group);
    expect(policy.dest_registry?.url).to.equal(url);
    expect(policy).to.deep.include({ dest_namespace: group, dest_namespace_replace_count: 0 });

    // 2. Harbor replicates the image as its rule says.
    await t.replicated(`${library}/alpine`, alpine, '3.20', { port, executionId: created.body.executionId });

    // 3. The signed state.
    const client = new RegistryClient(t.stateRegistry.url, t.stateRegistry.credentials);
    const stateRepo = `satellite/group-state/${group}/state`;
    const state = await until('the signed state', async () => {
      const s = await readLatestState(client, stateRepo);
      return s?.artifacts.length === 1 ? s : undefined;
    }, REAL ? 300_000 : 30_000);
    expect(state.artifacts[0]).to.include({ repository: `${library}/alpine`, digest: alpine.manifest.digest });
    const stateHost = t.stateRegistry.url.replace(/^https?:\/\//, '');
    const verified = await satellite(['verify', `${stateHost}/${stateRepo}:latest`, '--key', shared.keys.pubPath, ...(t.stateRegistry.url.startsWith('http://') ? ['--plain-http'] : [])], {
      STATE_REGISTRY: t.stateRegistry.url,
      ...(t.stateRegistry.credentials ? { STATE_REGISTRY_USERNAME: t.stateRegistry.credentials.username, STATE_REGISTRY_PASSWORD: t.stateRegistry.credentials.password } : {}),
    });
    expect(verified.stdout).to.include('docker-manifest-digest');

    // 4. satellites register
    const issued = await api('/api/v1/satellites', 'POST', { name: satelliteName, groups: [group] });
    expect(issued.status).to.equal(201);
    const reg = await api('/api/v1/satellites/register', 'POST', { token: issued.body.token }, null);
    expect(reg.status).to.equal(200);
    // identity: what the worker's signatures name, the state registry's host and the state.
    expect(reg.body.groups).to.deep.equal([{ name: group, state: stateRepo, identity: `${stateHost}/${stateRepo}` }]);
    expect(reg.body.publicKey).to.equal(shared.keys.publicPem);
    expect(await client.headManifest(reg.body.groups[0].state, 'latest'), 'the state named in the registration exists').to.not.equal(undefined);

    // 5. The robot's pull rights, as Harbor's token service grants them.
    const may = async (repository: string) => {
      const res = await fetch(`${t.url}/service/token?service=harbor-registry&scope=repository:${repository}:pull`, { headers: { Authorization: basicAuth(reg.body.username, reg.body.password) } });
      const claims = JSON.parse(Buffer.from(((await res.json()) as { token: string }).token.split('.')[1]!, 'base64url').toString());
      return (claims.access?.[0]?.actions ?? []).includes('pull') as boolean;
    };
    expect(await may(`${library}/alpine`)).to.equal(true);
    expect(await may(`${stateRepo}`)).to.equal(true);
    expect(await may(`${tools}/curl`), 'nothing the group lists comes from tools yet').to.equal(false);
    expect(await may(`${secret}/db`)).to.equal(false);

    // 6. The group gains an image from a new project: after the next publish, the robot follows.
    await t.seed(`${tools}/curl`, curl, '8');
    await t.replicated(`${tools}/curl`, curl, '8', { port });
    await until('the robot to gain tools', async () => ((await may(`${tools}/curl`)) ? true : undefined), REAL ? 300_000 : 30_000);
    expect(await may(`${secret}/db`)).to.equal(false);
    // Harbor grants the new project before our database records it (the same transaction
    // commits after Harbor answered), so the fleet view is polled for it too.
    const want = JSON.stringify([library, 'satellite', tools].sort());
    const projects = await until('the fleet view to list tools', async () => {
      const fleet = await api(`/api/v1/satellites/${satelliteName}`);
      return JSON.stringify(fleet.body?.robot?.projects) === want ? fleet.body.robot.projects : undefined;
    }, 10_000);
    expect(projects).to.deep.equal([library, 'satellite', tools].sort());
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

  it('when a group is created before anything is replicated to it, then its signed empty state v1 is published at once, and satellite agent --once on a device of the group applies it and exits 0', async () => {
    const front = await startHarborRegistry(shared.registry.url, `${harbor.url}/service/token`);
    try {
      const port = await freePort();
      const url = `http://127.0.0.1:${port}`;
      running.push(await spawnSatellite(['serve'], {
        DATABASE_URL: db.url, REDIS_URL, QUEUE_PREFIX: prefix, HOST: '127.0.0.1', PORT: String(port), METRICS_PORT: '0',
        ENDPOINT_PASSWORD, ENDPOINT_URL: url, ADMIN_USERNAME: 'operator', ADMIN_PASSWORD,
        HARBOR_URL: harbor.url, HARBOR_USERNAME: HARBOR_ADMIN.username, HARBOR_PASSWORD: HARBOR_ADMIN.password,
        STATE_REGISTRY: front.url, STATE_REGISTRY_USERNAME: HARBOR_ADMIN.username, STATE_REGISTRY_PASSWORD: HARBOR_ADMIN.password,
        COSIGN_KEY: shared.keys.keyPath, COSIGN_PASSWORD: KEY_PASSWORD, BUILD_DEBOUNCE_MS: '100',
      }, 'worker started'));
      const api = async (path: string, body: unknown) => {
        const res = await fetch(url + path, { method: 'POST', headers: { Authorization: basicAuth('operator', ADMIN_PASSWORD), 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
        return { status: res.status, body: await res.json().catch(() => undefined) as any };
      };
      expect((await api('/api/v1/groups', { name: 'edge-new', filters: [{ type: 'name', value: 'library/**' }] })).status).to.equal(201);
      const registry = new RegistryClient(shared.registry.url);
      const repository = 'satellite/group-state/edge-new/state';
      const state = await until('the group\'s first state', () => readLatestState(registry, repository), 30_000);
      expect(state).to.deep.equal({ group: 'edge-new', registry: front.url, version: 1, artifacts: [] });
      const latest = await registry.headManifest(repository, 'latest');
      expect(await registry.headManifest(repository, `${latest!.digest.replace(':', '-')}.sig`), 'it is signed').to.not.equal(undefined);

      const issued = await api('/api/v1/satellites', { name: 'store-new', groups: ['edge-new'] });
      expect(issued.status).to.equal(201);
      const config = join(work, 'agent.yaml');
      await satellite(['agent', 'register', '--url', url, '--token', issued.body.token, '--out', config, '--store', join(work, 'store'), '--listen', '127.0.0.1:0'], {});
      const once = await satellite(['agent', '--once', '--config', config], { SATELLITE_AGENT_LOG_LEVEL: 'warn' }).then(() => 0, (e: { code: number; stderr: string }) => `${e.code}: ${e.stderr}`);
      expect(once, 'the first sync applies the empty state').to.equal(0);
      const status = JSON.parse((await satellite(['agent', 'status', '--json', '--config', config], {})).stdout);
      expect(status.groups[0]).to.deep.include({ name: 'edge-new', version: 1, images: { present: 0, pending: 0, failed: 0, skipped: 0 } });
    } finally {
      await front.close();
    }
  });
});
