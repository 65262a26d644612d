import { expect } from 'chai';
import { execFile, spawn } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { createTestDatabase, type TestDatabase } from '../support/db.js';
import { BUNDLE } from '../support/agent.js';
import { image, imageBlobs, writeLayout } from '../support/oci.js';
import { freePort, spawnSatellite, until, type Spawned } from '../support/process.js';
import { dropPrefix, REDIS_URL, testPrefix } from '../support/redis.js';
import { skopeoCopy } from '../support/run.js';
import { KEY_PASSWORD, testKeys, useRegistryAndKeys } from '../support/worker.js';

const exec = promisify(execFile);

// The README's "try it without Harbor", as a newcomer walks it: `make run` (here `satellite
// serve` on a port of the test's own, states to a docker-registry), an image they have as a
// docker-archive, harbor-dev/try-it.sh, then the agent it configured serving the image.
// And `satellite state show` as they would run it afterwards: with the public key only.

const ENDPOINT_PASSWORD = 'try-it-endpoint-secret';

describe('trying it without Harbor: an image through the endpoint to an edge agent', function () {
  this.timeout(180_000);
  const shared = useRegistryAndKeys();
  let db: TestDatabase;
  let prefix: string;
  let work: string;
  let serve: Spawned | undefined;
  let agent: ReturnType<typeof spawn> | undefined;
  let port: number;

  before(async () => {
    db = await createTestDatabase();
    prefix = testPrefix();
    work = await mkdtemp(join(tmpdir(), 'satellite-try-it-'));
    port = await freePort();
    serve = await spawnSatellite(['serve'], {
      DATABASE_URL: db.url, REDIS_URL, QUEUE_PREFIX: prefix, HOST: '127.0.0.1', PORT: String(port), METRICS_PORT: '0',
      ENDPOINT_PASSWORD, STATE_REGISTRY: shared.registry.url, COSIGN_KEY: shared.keys.keyPath, COSIGN_PASSWORD: KEY_PASSWORD,
      BUILD_DEBOUNCE_MS: '100',
    }, 'worker started');
  });
  after(async () => {
    agent?.kill('SIGKILL');
    if (serve) {
      serve.child.kill('SIGKILL');
      await serve.exited;
    }
    await db?.drop();
    await dropPrefix(prefix);
    if (work) await rm(work, { recursive: true, force: true });
  });

  /** An image as a newcomer might have it: `docker save`'s format, uncompressed layers. */
  const dockerArchive = async (name: string) => {
    const img = image();
    const layout = join(work, `${name}-layout`);
    await writeLayout(layout, '1.0', img.manifest, imageBlobs(img));
    const tar = join(work, `${name}.tar`);
    await exec('skopeo', ['--insecure-policy', 'copy', `oci:${layout}:1.0`, `docker-archive:${tar}:library/${name}:1.0`]);
    return tar;
  };
  const cli = (args: string[], env: Record<string, string>, cwd = process.cwd()) =>
    exec(process.execPath, [resolve('dist/cli/main.js'), ...args], { cwd, env: { ...process.env, DATABASE_URL: db.url, STATE_REGISTRY: shared.registry.url, ...env } })
      .then((r) => ({ code: 0, ...r }), (e: { code: number; stdout: string; stderr: string }) => e);

  it('when a newcomer runs harbor-dev/try-it.sh with a docker-archive, then the worker publishes the group\'s signed state, the agent applies it, and serves the image as the registry holds it', async () => {
    const tar = await dockerArchive('my-image');
    const dev = join(work, 'dev');
    const listen = `127.0.0.1:${await freePort()}`;
    // The endpoint's secret as a file, as a deployment with ENDPOINT_PASSWORD_FILE has it.
    const passwordFile = join(work, 'endpoint-password');
    await writeFile(passwordFile, `${ENDPOINT_PASSWORD}\n`, { mode: 0o600 });
    const script = await exec('bash', ['harbor-dev/try-it.sh', `docker-archive:${tar}`, 'edge-eu/library/my-image:1.0'], {
      env: {
        ...process.env, PORT: String(port), ENDPOINT_PASSWORD: '', ENDPOINT_PASSWORD_FILE: passwordFile, STATE_REGISTRY: shared.registry.url, DATABASE_URL: db.url,
        COSIGN_PUBLIC_KEY: shared.keys.pubPath, COSIGN_KEY: '', COSIGN_PASSWORD: '', DEV_DIR: dev, AGENT_LISTEN: listen,
      },
      maxBuffer: 16 * 1024 * 1024,
    }).catch((e: { code: number; stdout: string; stderr: string }) => expect.fail(`try-it.sh exited ${e.code}:\n${e.stdout}\n${e.stderr}`));
    expect(script.stdout).to.include('signature         verified with').and.include('1 present, 0 pending, 0 failed');
    const digest = (await readFile(join(dev, 'try-it.digest'), 'utf8')).trim();

    // The agent it configured, serving as on a device: skopeo pulls the image from it.
    agent = spawn(process.execPath, [BUNDLE, '--config', join(dev, 'agent.yaml')], { stdio: 'ignore' });
    const served = await until('the agent to serve the image', async () => {
      const { stdout } = await exec('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${listen}/library/my-image:1.0`]);
      return stdout;
    }, 30_000);
    const { stdout: held } = await exec('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${shared.registry.host}/library/my-image:1.0`]);
    expect(served, 'byte for byte the manifest the registry holds').to.equal(held);
    const { stdout: inspected } = await exec('skopeo', ['inspect', '--tls-verify=false', `docker://${listen}/library/my-image@${digest}`]);
    expect(JSON.parse(inspected).Digest).to.equal(digest);
  });

  it('when satellite state show runs with the public key only (COSIGN_PUBLIC_KEY, or .dev/cosign.pub where make run keeps it), then it checks the signature without the private key or its password', async () => {
    const img = image();
    const layout = join(work, 'shown-layout');
    await writeLayout(layout, '1', img.manifest, imageBlobs(img));
    await skopeoCopy(`oci:${layout}:1`, `docker://127.0.0.1:${port}/shown/library/app:1`, `harbor:${ENDPOINT_PASSWORD}`);
    const env = { COSIGN_KEY: '', COSIGN_PASSWORD: '' };
    const withKey = await until('the state to be published', async () => {
      const r = await cli(['state', 'show', 'shown'], { ...env, COSIGN_PUBLIC_KEY: shared.keys.pubPath });
      return r.code === 0 ? r : undefined;
    }, 30_000);
    expect(withKey.stdout).to.match(/signature\s+verified with /);

    // Run from a checkout after `make run`: its .dev/cosign.pub.
    const checkout = join(work, 'checkout');
    await mkdir(join(checkout, '.dev'), { recursive: true });
    await writeFile(join(checkout, '.dev', 'cosign.pub'), shared.keys.publicPem);
    const fromDev = await cli(['state', 'show', 'shown'], env, checkout);
    expect(fromDev.code, fromDev.stderr).to.equal(0);
    expect(fromDev.stdout).to.match(/signature\s+verified with \.dev\/cosign\.pub/);

    // Another key: the signature does not verify, and the exit status says so.
    const other = await testKeys();
    try {
      const wrong = await cli(['state', 'show', 'shown'], { ...env, COSIGN_PUBLIC_KEY: other.pubPath });
      expect(wrong.code).to.equal(1);
      expect(wrong.stdout).to.match(/signature\s+NOT VERIFIED/);
    } finally {
      await rm(other.dir, { recursive: true, force: true });
    }
  });
});
