import { expect } from 'chai';
import { createTestDatabase, type TestDatabase } from '../support/db.js';
import { basic, PASSWORD, USERNAME } from '../support/endpoint.js';
import { freePort, spawnSatellite, type Spawned } from '../support/process.js';
import { dropPrefix, REDIS_URL, testPrefix } from '../support/redis.js';
import { KEY_PASSWORD, useRegistryAndKeys } from '../support/worker.js';

// The real `satellite serve`, as an operator starts it: the admin API's credential must be
// configured on purpose, and nothing else (least of all the endpoint's secret) stands in.

describe('satellite serve and the admin credential', function () {
  this.timeout(60_000);
  const shared = useRegistryAndKeys();
  let db: TestDatabase;
  let prefix: string;
  let running: Spawned | undefined;
  beforeEach(async () => {
    db = await createTestDatabase();
    prefix = testPrefix();
  });
  afterEach(async () => {
    if (running) {
      running.child.kill('SIGKILL');
      await running.exited;
      running = undefined;
    }
    await db.drop();
    await dropPrefix(prefix);
  });

  const serve = async (env: Record<string, string>) => {
    const port = await freePort();
    running = await spawnSatellite(['serve'], {
      DATABASE_URL: db.url, REDIS_URL, QUEUE_PREFIX: prefix, HOST: '127.0.0.1', PORT: String(port), METRICS_PORT: '0',
      ENDPOINT_USERNAME: USERNAME, ENDPOINT_PASSWORD: PASSWORD, STATE_REGISTRY: shared.registry.url,
      COSIGN_KEY: shared.keys.keyPath, COSIGN_PASSWORD: KEY_PASSWORD, HARBOR_URL: '', HARBOR_PASSWORD: '', ...env,
    }, 'endpoint listening');
    return `http://127.0.0.1:${port}`;
  };

  it('when ADMIN_USERNAME / ADMIN_PASSWORD are unset, then serve runs the endpoint but refuses the admin API to every credential, the endpoint\'s secret included', async () => {
    const url = await serve({ ADMIN_USERNAME: '', ADMIN_PASSWORD: '' });
    // The endpoint itself answers Harbor with its secret.
    expect((await fetch(`${url}/v2/`, { headers: { Authorization: basic() } })).status).to.equal(200);
    for (const auth of [basic(USERNAME, PASSWORD), basic('admin', PASSWORD), undefined]) {
      for (const [method, path] of [['GET', '/api/v1/groups'], ['POST', '/api/v1/satellites'], ['GET', '/api/v1/satellites']]) {
        const res = await fetch(url + path, {
          method, headers: { ...(auth ? { Authorization: auth } : {}), 'Content-Type': 'application/json' }, ...(method === 'POST' ? { body: '{"name":"s","groups":["g"]}' } : {}),
        });
        expect(res.status, `${method} ${path} with ${auth ?? 'no credential'}`).to.equal(503);
        const body = await res.json() as { errors: { code: string; message: string }[] };
        expect(body.errors).to.have.length(1);
        expect(body.errors[0]!.code).to.equal('UNAVAILABLE');
        expect(body.errors[0]!.message).to.include('ADMIN_USERNAME').and.include('ADMIN_PASSWORD');
      }
    }
    expect(running!.output(), 'the log says why').to.include('ADMIN_USERNAME / ADMIN_PASSWORD not set: the admin API (/api/v1) is not served');
  });

  it('when ADMIN_PASSWORD is set, then serve opens the admin API to that credential only', async () => {
    const url = await serve({ ADMIN_USERNAME: 'operator', ADMIN_PASSWORD: 'admin-secret-for-serve' });
    expect((await fetch(`${url}/api/v1/groups`, { headers: { Authorization: basic('operator', 'admin-secret-for-serve') } })).status).to.equal(200);
    expect((await fetch(`${url}/api/v1/groups`, { headers: { Authorization: basic(USERNAME, PASSWORD) } })).status).to.equal(401);
  });
});
