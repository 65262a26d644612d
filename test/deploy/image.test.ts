import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { chmod, chown, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { stringify } from 'yaml';
import { startDockerRegistry, type LocalRegistry } from '../../harbor-dev/docker-registry.js';
import { RegistryClient } from '../../core/registry/registry-client.js';
import { pushImage, readAgentState } from '../support/agent.js';
import { buildah, inspectImage, runImage, type RunningContainer } from '../support/container.js';
import { createTestDatabase, type TestDatabase } from '../support/db.js';
import { image, imageBlobs, writeLayout } from '../support/oci.js';
import { freePort, until } from '../support/process.js';
import { dropPrefix, REDIS_URL, testPrefix } from '../support/redis.js';
import { satellite, skopeoCopy } from '../support/run.js';
import { KEY_PASSWORD, readLatestState, record, testBuilder, testKeys, workerConfig, type TestKeys } from '../support/worker.js';
import { SERVICE_ENV, SERVICE_NODE_FLAGS } from '../../cli/runtime.js';

const exec = promisify(execFile);
const PASSWORD = 'image-test-secret-0123';
/** The user the Containerfiles name: numeric, so Kubernetes' runAsNonRoot can check it. */
const IMAGE_USER = '65532:65532';

const has = async (tool: string) => exec('sh', ['-c', `command -v ${tool}`]).then(() => true, () => false);

// `make image` with a Node 20 base made here from Debian packages (deploy/images/local-base.sh:
// no base image can be pulled on this machine), then each image's entrypoint run as the image
// says, against the real Postgres, Redis, docker-registry and skopeo. harbor-dev/deps.sh
// installs buildah and mmdebstrap; without them the whole block is skipped.
describe('the images, built by make image (needs the Debian packages buildah and mmdebstrap)', function () {
  this.timeout(4 * 60_000);
  const tag = `test-${Date.now().toString(36)}`;
  const service = `localhost/satellite-for-harbor:${tag}`;
  const agent = `localhost/satellite-agent:${tag}`;
  const revision = 'c0ffee0000000000000000000000000000000000';
  const source = 'https://example.test/satellite-for-harbor.git';
  let built = false;
  let db: TestDatabase;
  let prefix: string;
  let harbor: LocalRegistry; // Harbor's registry: the images themselves
  let states: LocalRegistry; // where states are published
  let keys: TestKeys;
  let work: string;
  let keyDir: string; // cosign.key and cosign.pub, readable by the image's user
  const containers: RunningContainer[] = [];

  before(async function () {
    if (!(await has('buildah')) || !(await has('mmdebstrap'))) this.skip();
    // A fresh machine builds the base (~1 min) and installs every dependency in the build.
    this.timeout(15 * 60_000);
    const base = await exec('deploy/images/local-base.sh', [], { maxBuffer: 64 * 1024 * 1024 }).catch((e) => {
      throw new Error(`local-base.sh failed:\n${e.stderr}`);
    });
    await exec('make', ['--no-print-directory', 'image', `BASE_IMAGE=${base.stdout.trim()}`, `IMAGE_TAG=${tag}`, 'IMAGE_VERSION=9.8.7-test',
      `IMAGE_REVISION=${revision}`, `IMAGE_SOURCE=${source}`], { maxBuffer: 256 * 1024 * 1024 }).catch((e) => {
      throw new Error(`make image failed:\n${String(e.stdout).slice(-4000)}\n${String(e.stderr).slice(-4000)}`);
    });
    built = true;
    [harbor, states, keys, db] = await Promise.all([startDockerRegistry(), startDockerRegistry(), testKeys(), createTestDatabase()]);
    prefix = testPrefix();
    work = await mkdtemp(join(tmpdir(), 'satellite-image-'));
    await chmod(work, 0o755);
    keyDir = join(work, 'keys');
    await mkdir(keyDir);
    await writeFile(join(keyDir, 'cosign.key'), keys.privatePem, { mode: 0o644 });
    await writeFile(join(keyDir, 'cosign.pub'), keys.publicPem, { mode: 0o644 });
  });

  afterEach(async () => {
    for (const c of containers.splice(0)) await c.remove();
  });

  after(async () => {
    await db?.drop();
    if (prefix) await dropPrefix(prefix);
    await harbor?.stop();
    await states?.stop();
    if (keys) await rm(keys.dir, { recursive: true, force: true });
    if (work) await rm(work, { recursive: true, force: true });
    // The tagged images go; buildah's layer cache stays, so the next run is quicker.
    if (built) for (const ref of [service, agent]) await buildah(['rmi', ref]).catch(() => '');
  });

  /** A directory the image's user owns, for a store or a config. */
  async function ownedDir(name: string): Promise<string> {
    const dir = join(work, name);
    await mkdir(dir, { recursive: true });
    await chown(dir, 65532, 65532);
    return dir;
  }

  async function serviceEnv(): Promise<Record<string, string>> {
    return {
      DATABASE_URL: db.url, REDIS_URL, QUEUE_PREFIX: prefix, HOST: '127.0.0.1', PORT: String(await freePort()),
      METRICS_PORT: String(await freePort()), ENDPOINT_PASSWORD: PASSWORD, STATE_REGISTRY: states.url, IMAGE_REGISTRY: harbor.url,
      COSIGN_KEY: '/run/keys/cosign.key', COSIGN_PASSWORD: KEY_PASSWORD, BUILD_DEBOUNCE_MS: '200',
    };
  }

  async function start(ref: string, args: string[] | undefined, opts: Parameters<typeof runImage>[2]): Promise<RunningContainer> {
    const c = await runImage(ref, args, opts);
    containers.push(c);
    return c;
  }

  async function ready(c: RunningContainer, url: string): Promise<void> {
    let exited = false;
    void c.exited.then(() => (exited = true));
    await until(`${url} to answer 200`, async () => {
      if (exited) throw new Error('gave up');
      return (await fetch(url)).status === 200 ? true : undefined;
    }, 90_000).catch(() => {
      throw new Error(`${url} did not answer 200${exited ? ' (the container exited)' : ''}:\n${c.output().slice(-4000)}`);
    });
  }

  it('when make image builds with a BASE_IMAGE, then both images carry the build arguments as OCI labels, a numeric non-root user, STOPSIGNAL SIGTERM, a health check and their entrypoint', async () => {
    for (const [ref, title, entrypoint, cmd] of [
      [service, 'satellite-for-harbor', ['node', ...SERVICE_NODE_FLAGS, '/app/dist/cli/main.js'], ['serve']],
      [agent, 'satellite-agent', ['node', '--max-semi-space-size=1', '--liftoff-only', '--no-opt', '--optimize-for-size', '--single-threaded', '/usr/local/lib/satellite/satellite-agent.cjs'], ['run']],
    ] as const) {
      const config = await inspectImage(ref);
      expect(config.labels, ref).to.include({
        'org.opencontainers.image.title': title,
        'org.opencontainers.image.source': source,
        'org.opencontainers.image.version': '9.8.7-test',
        'org.opencontainers.image.revision': revision,
        'org.opencontainers.image.licenses': 'Apache-2.0',
      });
      expect(config.user, ref).to.equal(IMAGE_USER);
      expect(config.stopSignal, ref).to.equal('SIGTERM');
      expect(config.healthcheck?.slice(0, 3), ref).to.deep.equal(['CMD', 'node', '-e']);
      expect(config.entrypoint, ref).to.deep.equal(entrypoint);
      expect(config.cmd, ref).to.deep.equal(cmd);
    }
    expect((await inspectImage(service)).env, 'the service\'s malloc settings (cli/runtime.ts)').to.include(SERVICE_ENV);
  });

  it('when the service image is opened, then node_modules holds every production dependency and the built @harbor-api/client, and no development dependency', async () => {
    const pkg = JSON.parse(await readFile('package.json', 'utf8'));
    const name = `satellite-test-open-${Date.now().toString(36)}`;
    await buildah(['from', '--name', name, service]);
    try {
      const root = await buildah(['mount', name]);
      const modules = new Set<string>();
      for (const entry of await readdir(join(root, 'app/node_modules'))) {
        if (entry.startsWith('@')) for (const sub of await readdir(join(root, 'app/node_modules', entry))) modules.add(`${entry}/${sub}`);
        else modules.add(entry);
      }
      // What the lock says only development needs (dev), or development and an optional peer
      // (devOptional: typescript), must be gone; some @types are also production's, through
      // express-openapi-validator, and stay.
      const lock = JSON.parse(await readFile('package-lock.json', 'utf8'));
      const devOnly = Object.entries(lock.packages as Record<string, { dev?: boolean; devOptional?: boolean }>)
        .filter(([path, p]) => /^node_modules\/(@[^/]+\/)?[^/]+$/.test(path) && (p.dev || p.devOptional))
        .map(([path]) => path.slice('node_modules/'.length));
      expect(devOnly).to.include.members(['typescript', 'esbuild', 'mocha', 'chai']);
      for (const dep of Object.keys(pkg.dependencies)) expect(modules, `production dependency ${dep}`).to.include(dep);
      for (const dep of devOnly) expect(modules, `development dependency ${dep}`).to.not.include(dep);
      // The workspace package is reached through its link, built.
      expect(await readdir(join(root, 'app/harbor-api/dist'))).to.include('index.js');
      expect(await readdir(join(root, 'app'))).to.have.members(['dist', 'harbor-api', 'node_modules', 'package.json']);
    } finally {
      await buildah(['umount', name]).catch(() => '');
      await buildah(['rm', name]).catch(() => '');
    }
  });

  it('when the service image runs `serve` (buildah run, chroot), then it answers /readyz against Postgres, takes a skopeo push, publishes a signed state, passes its health check, and exits 0 on its STOPSIGNAL', async () => {
    const env = await serviceEnv();
    const c = await start(service, ['serve'], { env, mounts: [{ source: keyDir, target: '/run/keys', readOnly: true }] });
    await ready(c, `http://127.0.0.1:${env.METRICS_PORT}/readyz`);
    expect((await fetch(`http://127.0.0.1:${env.PORT}/readyz`)).status).to.equal(200);
    const health = (await inspectImage(service)).healthcheck!.slice(1);
    expect(await c.exec(health), 'the health check while serving').to.equal(0);

    const alpine = image();
    await writeLayout(join(work, 'alpine'), '3.20', alpine.manifest, imageBlobs(alpine));
    await skopeoCopy(`oci:${join(work, 'alpine')}:3.20`, `docker://127.0.0.1:${env.PORT}/edge-eu/library/alpine:3.20`, `harbor:${PASSWORD}`);
    const stateRepo = 'satellite/group-state/edge-eu/state';
    const state = await until('the state listing the pushed image', async () => {
      const s = await readLatestState(new RegistryClient(states.url), stateRepo);
      return s?.artifacts?.some((a: { digest: string }) => a.digest === alpine.manifest.digest) ? s : undefined;
    }, 60_000).catch((e) => {
      throw new Error(`${(e as Error).message}:\n${c.output().slice(-4000)}`);
    });
    expect(state.registry).to.equal(harbor.url);
    const verified = await satellite(['verify', `${states.host}/${stateRepo}:latest`, '--key', join(keyDir, 'cosign.pub'), '--plain-http'], { STATE_REGISTRY: states.url });
    expect(verified.stderr).to.include(`Verification for ${states.host}/${stateRepo}@`); // exit 0, else satellite() throws

    c.signal('SIGTERM');
    const { code } = await c.exited;
    expect(code, c.output().slice(-2000)).to.equal(0);
    expect(c.output()).to.include('"msg":"stopped"');
    expect(await c.exec(health), 'the health check once stopped').to.not.equal(0);
  });

  it('when the agent image runs with a store volume (buildah run, chroot), then it syncs a signed state and serves the listed image to skopeo by digest, byte for byte', async () => {
    const busybox = image();
    await pushImage(new RegistryClient(harbor.url), 'library/busybox', busybox, '1.36');
    await record(db.pool, 'edge-ap', 'library/busybox', busybox, '1.36');
    const { builder } = testBuilder(workerConfig({ STATE_REGISTRY: states.url, IMAGE_REGISTRY: harbor.url, COSIGN_KEY: join(keyDir, 'cosign.key') }), db.pool, keys);
    await builder.build('edge-ap');

    const store = await ownedDir('agent-store');
    const etc = await ownedDir('agent-etc');
    const port = await freePort();
    await writeFile(join(etc, 'cosign.pub'), keys.publicPem);
    await writeFile(join(etc, 'agent.yaml'), stringify({
      registry: states.url,
      groups: [{ name: 'edge-ap', state: 'satellite/group-state/edge-ap/state', publicKey: '/etc/satellite/cosign.pub' }],
      platforms: ['linux/amd64'], interval: '1s', listen: `127.0.0.1:${port}`,
    }));
    // SATELLITE_AGENT_LISTEN too: the health check reads the port from it (see agent.Containerfile).
    const c = await start(agent, undefined, {
      env: { SATELLITE_AGENT_LISTEN: `127.0.0.1:${port}` },
      mounts: [{ source: store, target: '/var/lib/satellite-agent' }, { source: etc, target: '/etc/satellite', readOnly: true }],
    });
    await until('the image present in the store', async () => {
      const status = await readAgentState(store);
      const images = Object.values(status.groups?.['edge-ap']?.images ?? {}) as { status: string }[];
      return images.length === 1 && images[0]!.status === 'present' ? true : undefined;
    }, 60_000).catch(async (e) => {
      const status = JSON.stringify(await readAgentState(store).catch((err: Error) => err.message));
      throw new Error(`${(e as Error).message}:\n${c.output().slice(-4000)}\n${status}`);
    });

    const dest = join(work, 'pulled-busybox');
    await exec('skopeo', ['--insecure-policy', 'copy', '--preserve-digests', '--src-tls-verify=false',
      `docker://127.0.0.1:${port}/library/busybox@${busybox.manifest.digest}`, `oci:${dest}:pulled`]);
    for (const b of [busybox.manifest, ...imageBlobs(busybox)]) {
      expect((await readFile(join(dest, 'blobs', 'sha256', b.digest.slice(7)))).equals(b.bytes), b.digest).to.equal(true);
    }
    expect(await c.exec((await inspectImage(agent)).healthcheck!.slice(1), { SATELLITE_AGENT_LISTEN: `127.0.0.1:${port}` })).to.equal(0);
    c.signal('SIGTERM');
    expect((await c.exited).code, c.output().slice(-2000)).to.equal(0);
  });

  it('when the root file system is read-only (only /tmp and the volumes writable), then `serve` answers /readyz and the agent syncs into its store volume', async () => {
    const env = await serviceEnv();
    const c = await start(service, ['serve'], { env, readOnlyRoot: true, mounts: [{ source: keyDir, target: '/run/keys', readOnly: true }] });
    await ready(c, `http://127.0.0.1:${env.METRICS_PORT}/readyz`);
    expect(await c.exec(['sh', '-c', 'touch /app/probe']), 'a write to the image').to.not.equal(0);
    expect(await c.exec(['sh', '-c', 'touch /tmp/probe']), 'a write to /tmp').to.equal(0);
    c.signal('SIGTERM');
    expect((await c.exited).code, c.output().slice(-2000)).to.equal(0);

    // A group and state of its own, so the test stands alone.
    const alpine = image();
    await pushImage(new RegistryClient(harbor.url), 'library/alpine', alpine, '3.21');
    await record(db.pool, 'edge-ro', 'library/alpine', alpine, '3.21');
    const { builder } = testBuilder(workerConfig({ STATE_REGISTRY: states.url, IMAGE_REGISTRY: harbor.url, COSIGN_KEY: join(keyDir, 'cosign.key') }), db.pool, keys);
    await builder.build('edge-ro');
    const store = await ownedDir('agent-store-ro');
    const etc = await ownedDir('agent-etc-ro');
    await writeFile(join(etc, 'cosign.pub'), keys.publicPem);
    await writeFile(join(etc, 'agent.yaml'), stringify({
      registry: states.url,
      groups: [{ name: 'edge-ro', state: 'satellite/group-state/edge-ro/state', publicKey: '/etc/satellite/cosign.pub' }],
      platforms: ['linux/amd64'], listen: `127.0.0.1:${await freePort()}`,
    }));
    const a = await start(agent, ['run', '--once'], {
      readOnlyRoot: true,
      mounts: [{ source: store, target: '/var/lib/satellite-agent' }, { source: etc, target: '/etc/satellite', readOnly: true }],
    });
    expect((await a.exited).code, a.output().slice(-2000)).to.equal(0);
    const status = await readAgentState(store);
    expect(Object.values(status.groups['edge-ro']!.images).map((i) => (i as { status: string }).status)).to.deep.equal(['present']);
  });
});
