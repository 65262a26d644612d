import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RegistryClient } from '../../core/registry/registry-client.js';
import { createTestDatabase, type TestDatabase } from '../support/db.js';
import { basic } from '../support/endpoint.js';
import { image } from '../support/oci.js';
import { freePort, spawnSatellite, until, type Spawned } from '../support/process.js';
import { dropPrefix, REDIS_URL, testPrefix } from '../support/redis.js';
import { KEY_PASSWORD, readLatestState, useRegistryAndKeys } from '../support/worker.js';

// The real `satellite serve` with every secret in a file (<NAME>_FILE, as a mounted
// Kubernetes Secret or a compose secret gives them) and the signing key as PEM content.

describe('satellite serve with its secrets in files', function () {
  this.timeout(60_000);
  const shared = useRegistryAndKeys();
  let db: TestDatabase;
  let prefix: string;
  let dir: string;
  let running: Spawned | undefined;
  beforeEach(async () => {
    db = await createTestDatabase();
    prefix = testPrefix();
    dir = await mkdtemp(join(tmpdir(), 'satellite-secret-files-'));
  });
  afterEach(async () => {
    if (running) {
      running.child.kill('SIGKILL');
      await running.exited;
      running = undefined;
    }
    await db.drop();
    await dropPrefix(prefix);
    await rm(dir, { recursive: true, force: true });
  });
  const secretFile = async (name: string, content: string) => {
    const path = join(dir, name);
    await writeFile(path, `${content}\n`, { mode: 0o600 });
    return path;
  };

  it('when every secret comes from a _FILE and COSIGN_KEY holds the PEM, then serve accepts exactly those secrets and publishes signed states', async () => {
    const port = await freePort();
    const endpointPassword = 'endpoint-secret-from-a-file';
    const adminPassword = 'admin-secret-from-a-file';
    running = await spawnSatellite(['serve'], {
      DATABASE_URL_FILE: await secretFile('database-url', db.url), REDIS_URL_FILE: await secretFile('redis-url', REDIS_URL),
      ENDPOINT_PASSWORD_FILE: await secretFile('endpoint-password', endpointPassword),
      ADMIN_USERNAME: 'operator', ADMIN_PASSWORD_FILE: await secretFile('admin-password', adminPassword),
      COSIGN_KEY: shared.keys.privatePem, COSIGN_PASSWORD_FILE: await secretFile('cosign-password', KEY_PASSWORD),
      QUEUE_PREFIX: prefix, HOST: '127.0.0.1', PORT: String(port), METRICS_PORT: '0', STATE_REGISTRY: shared.registry.url,
      BUILD_DEBOUNCE_MS: '50', BUILD_QUIET_MS: '20', HARBOR_URL: '', HARBOR_PASSWORD: '',
    }, 'worker started');
    const url = `http://127.0.0.1:${port}`;
    expect((await fetch(`${url}/v2/`, { headers: { Authorization: basic('harbor', endpointPassword) } })).status, 'the file\'s endpoint secret').to.equal(200);
    expect((await fetch(`${url}/v2/`, { headers: { Authorization: basic('harbor', `${endpointPassword}\n`) } })).status, 'the secret with the file\'s newline').to.equal(401);
    expect((await fetch(`${url}/api/v1/groups`, { headers: { Authorization: basic('operator', adminPassword) } })).status, 'the file\'s admin secret').to.equal(200);

    // A push is recorded in the database of DATABASE_URL_FILE and published, signed with the
    // PEM key decrypted with the password of COSIGN_PASSWORD_FILE.
    const img = image();
    const put = await fetch(`${url}/v2/edge-files/library/app/manifests/1.0`, {
      method: 'PUT', headers: { Authorization: basic('harbor', endpointPassword), 'Content-Type': img.manifest.mediaType }, body: img.manifest.bytes,
    });
    expect(put.status).to.equal(201);
    const registry = new RegistryClient(shared.registry.url);
    const state = await until('the published state', () => readLatestState(registry, 'satellite/group-state/edge-files/state'));
    expect(state.artifacts.map((a: { digest: string }) => a.digest)).to.deep.equal([img.manifest.digest]);
    const verify = spawn(process.execPath, ['dist/cli/main.js', 'verify', `${registry.host}/satellite/group-state/edge-files/state:latest`, '--key', shared.keys.pubPath, '--plain-http'], { stdio: 'ignore' });
    expect(await new Promise((resolve) => verify.on('exit', resolve)), 'satellite verify with the public key').to.equal(0);
  });

  it('when a secret is set both directly and as a _FILE, then serve refuses to start, naming both, and listens on nothing', async () => {
    const port = await freePort();
    const child = spawn(process.execPath, ['dist/cli/main.js', 'serve'], {
      env: {
        ...process.env, DATABASE_URL: db.url, REDIS_URL, QUEUE_PREFIX: prefix, HOST: '127.0.0.1', PORT: String(port), METRICS_PORT: '0',
        ENDPOINT_PASSWORD: 'endpoint-secret-direct', ENDPOINT_PASSWORD_FILE: await secretFile('endpoint-password', 'endpoint-secret-in-file'),
        COSIGN_KEY: shared.keys.keyPath, COSIGN_PASSWORD: KEY_PASSWORD, STATE_REGISTRY: shared.registry.url,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    // A serve that wrongly starts is stopped here rather than left running after the test.
    const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
    const code = await new Promise((resolve) => child.on('exit', resolve));
    clearTimeout(timer);
    expect(code).to.equal(78);
    expect(stderr).to.include('ENDPOINT_PASSWORD and ENDPOINT_PASSWORD_FILE are both set');
    expect(stderr).not.to.include('endpoint-secret-direct').and.not.to.include('endpoint-secret-in-file');
    expect(await fetch(`http://127.0.0.1:${port}/v2/`).then(() => 'answered', () => 'refused')).to.equal('refused');
  });
});
