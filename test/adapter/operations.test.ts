import { expect } from 'chai';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startOpsServer, type RunningOps } from '../../adapter/ops-server.js';
import type { RunningEndpoint } from '../../adapter/server.js';
import { ConfigError, loadConfig } from '../../core/config.js';
import { createLogger } from '../../core/logger.js';
import { Metrics } from '../../core/metrics.js';
import { connectQueue, type StateQueue } from '../../worker/queue.js';
import { createTestDatabase, type TestDatabase } from '../support/db.js';
import { basic, client, PASSWORD, startTestEndpoint, USERNAME } from '../support/endpoint.js';
import { freePort, spawnSatellite, type Spawned } from '../support/process.js';
import { dropPrefix, REDIS_URL, testPrefix } from '../support/redis.js';

const ADMIN = { username: 'ops', password: 'admin-secret-0123456' };

describe('the operations listener: metrics and the queue dashboard', () => {
  let db: TestDatabase;
  let endpoint: RunningEndpoint;
  let ops: RunningOps;
  let queue: StateQueue;
  let disconnect: () => void;
  const prefix = testPrefix();

  before(async () => {
    db = await createTestDatabase();
    const metrics = new Metrics();
    endpoint = await startTestEndpoint(db.url, 1000, undefined, { metrics });
    const log = createLogger('silent');
    const q = await connectQueue(REDIS_URL, prefix, log);
    queue = q.queue;
    disconnect = () => q.connection.disconnect();
    ops = await startOpsServer({
      host: '127.0.0.1', port: 0, pool: db.pool, metrics, queue: () => queue, log,
      admin: { ...ADMIN, authFailureLimit: 1000, redis: { url: REDIS_URL, prefix: `${prefix}:auth` } },
    });
  });
  after(async () => {
    await ops?.stop();
    await endpoint?.stop();
    await queue?.close();
    disconnect?.();
    await db?.drop();
    await dropPrefix(prefix);
  });

  it('when /metrics is asked for, then the operations listener answers and the endpoint\'s public port does not', async () => {
    const metrics = await fetch(`${ops.url}/metrics`);
    expect(metrics.status).to.equal(200);
    expect(await metrics.text()).to.include('satellite_auth_secret_hashes_total');
    expect((await fetch(`${endpoint.url}/metrics`)).status).to.equal(404);
    expect((await client(endpoint.url)('/metrics')).status, 'not even with the endpoint credential').to.equal(404);
    expect((await client(endpoint.url)('/admin/queues')).status).to.equal(404);
  });

  it('when the dashboard is opened, then only the admin credential opens it: not anonymous, not the endpoint credential', async () => {
    const anon = await fetch(`${ops.url}/admin/queues`);
    expect(anon.status).to.equal(401);
    expect(anon.headers.get('www-authenticate')).to.match(/^Basic /);
    expect((await client(ops.url)('/admin/queues')).status, 'endpoint credential').to.equal(401);
    const board = await client(ops.url, basic(ADMIN.username, ADMIN.password))('/admin/queues');
    expect(board.status).to.equal(200);
    expect(await board.text()).to.include('<html');
    expect(board.headers.get('x-frame-options')).to.equal('DENY');
  });

  it('when a state-changing dashboard request comes from another origin or names none, then it is refused and changes nothing (CSRF)', async () => {
    const admin = client(ops.url, basic(ADMIN.username, ADMIN.password));
    const pause = (headers: Record<string, string>) => admin('/admin/queues/api/queues/state-builds/pause', { method: 'PUT', headers });
    expect((await pause({})).status, 'no Origin').to.equal(403);
    expect((await pause({ Origin: 'http://evil.example' })).status, 'foreign Origin').to.equal(403);
    expect((await pause({ Referer: 'http://evil.example/page' })).status, 'foreign Referer').to.equal(403);
    expect((await pause({ Origin: 'null' })).status, 'opaque Origin').to.equal(403);
    expect(await queue.isPaused(), 'the queue still runs').to.equal(false);
    const own = new URL(ops.url).host;
    expect((await pause({ Origin: `http://${own}` })).status, 'the dashboard itself').to.be.below(300);
    expect(await queue.isPaused()).to.equal(true);
    await queue.resume();
    // Reading stays open to the admin without an Origin (the page's own GETs, curl).
    expect((await admin('/admin/queues/api/queues')).status).to.equal(200);
  });

  it('when no admin credential is configured, then the dashboard is off and says how to turn it on', async () => {
    const bare = await startOpsServer({ host: '127.0.0.1', port: 0, pool: db.pool, metrics: new Metrics(), queue: () => queue, log: createLogger('silent') });
    try {
      const res = await client(bare.url)('/admin/queues');
      expect(res.status).to.equal(404);
      expect(await res.text()).to.include('ADMIN_PASSWORD');
    } finally {
      await bare.stop();
    }
  });

  it('when the configuration is read, then the admin credential never falls back to the endpoint\'s, and may not equal it', () => {
    const c = loadConfig({ ENDPOINT_PASSWORD: 'endpoint-secret-123' });
    expect(c.adminPassword).to.equal(undefined);
    expect(c.metricsHost).to.equal('127.0.0.1');
    expect(() => loadConfig({ ENDPOINT_PASSWORD: 'endpoint-secret-123', ADMIN_PASSWORD: 'endpoint-secret-123' })).to.throw(ConfigError, /ADMIN_PASSWORD must differ/);
    expect(() => loadConfig({ ADMIN_PASSWORD: 'short' })).to.throw(ConfigError, /ADMIN_PASSWORD must be at least 12/);
  });
});

describe('the operations listener: the metrics credential of a real satellite process', function () {
  this.timeout(60_000);
  let db: TestDatabase;
  let dir: string;
  let running: Spawned | undefined;
  const TOKEN = 'metrics-token-0123456789';
  const SCRAPER = { username: 'prometheus', password: 'scrape-secret-0123456' };
  beforeEach(async () => {
    db = await createTestDatabase();
    dir = await mkdtemp(join(tmpdir(), 'satellite-metrics-'));
    await writeFile(join(dir, 'token'), `${TOKEN}\n`, { mode: 0o600 });
    await writeFile(join(dir, 'password'), SCRAPER.password, { mode: 0o600 });
  });
  afterEach(async () => {
    if (running) {
      running.child.kill('SIGKILL');
      await running.exited;
      running = undefined;
    }
    await db.drop();
    await rm(dir, { recursive: true, force: true });
  });

  const adapter = async (env: Record<string, string>) => {
    const metricsPort = await freePort();
    running = await spawnSatellite(['adapter'], {
      DATABASE_URL: db.url, REDIS_URL, HOST: '127.0.0.1', PORT: '0', METRICS_PORT: String(metricsPort),
      ENDPOINT_PASSWORD: PASSWORD, ADMIN_PASSWORD: '', HARBOR_URL: '', ...env,
    }, 'operations listening');
    return `http://127.0.0.1:${metricsPort}`;
  };

  it('when a metrics token and a Basic pair are configured (from files), then /metrics wants one of them (401 with a challenge for none or a wrong one) and the probes stay open', async () => {
    const ops = await adapter({ METRICS_TOKEN_FILE: join(dir, 'token'), METRICS_USERNAME: SCRAPER.username, METRICS_PASSWORD_FILE: join(dir, 'password') });
    const metrics = (authorization?: string) => fetch(`${ops}/metrics`, { headers: authorization ? { Authorization: authorization } : {} });
    const none = await metrics();
    expect(none.status).to.equal(401);
    expect(none.headers.get('www-authenticate')).to.include('Bearer realm=').and.include('Basic realm=');
    expect(await none.text(), 'no metric leaks').to.not.include('satellite_');
    for (const wrong of [`Bearer ${TOKEN.slice(0, -1)}X`, basic(SCRAPER.username, `${SCRAPER.password.slice(0, -1)}X`), `Bearer ${TOKEN}x`, `Bearer ${TOKEN.slice(0, -1)}`, 'Bearer ', basic(SCRAPER.username, 'wrong-password-0123'), basic('someone', SCRAPER.password), basic(USERNAME, PASSWORD), `Basic ${TOKEN}`]) {
      const res = await metrics(wrong);
      expect(res.status, wrong).to.equal(401);
      expect(res.headers.get('www-authenticate'), wrong).to.match(/Bearer|Basic/);
    }
    const byToken = await metrics(`Bearer ${TOKEN}`);
    expect(byToken.status, 'the token, without the file\'s newline').to.equal(200);
    expect(await byToken.text()).to.include('satellite_');
    expect((await metrics(basic(SCRAPER.username, SCRAPER.password))).status).to.equal(200);
    expect((await fetch(`${ops}/healthz`)).status, 'the liveness probe is open').to.equal(200);
    expect((await fetch(`${ops}/readyz`)).status, 'the readiness probe is open').to.equal(200);
  });

  it('when no metrics credential is configured, then /metrics answers anyone who reaches the listener, as before', async () => {
    const ops = await adapter({});
    expect((await fetch(`${ops}/metrics`)).status).to.equal(200);
  });

  it('when the token file cannot be read or holds a short secret, or a username comes without a password file, then the process does not start and names the variable', async () => {
    for (const [env, expected] of [
      [{ METRICS_TOKEN_FILE: join(dir, 'missing') }, /METRICS_TOKEN_FILE: cannot read/],
      [{ METRICS_USERNAME: 'prometheus' }, /METRICS_USERNAME and METRICS_PASSWORD_FILE go together/],
    ] as const) {
      await adapter(env).then(() => expect.fail('started'), (err: Error) => expect(err.message).to.match(expected));
      running = undefined;
    }
    await writeFile(join(dir, 'short'), 'short');
    await adapter({ METRICS_TOKEN_FILE: join(dir, 'short') }).then(() => expect.fail('started'), (err: Error) => expect(err.message).to.match(/METRICS_TOKEN_FILE: the secret in .* must be at least 12 characters/));
    running = undefined;
  });
});
