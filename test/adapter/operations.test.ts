import { expect } from 'chai';
import { startOpsServer, type RunningOps } from '../../adapter/ops-server.js';
import type { RunningEndpoint } from '../../adapter/server.js';
import { ConfigError, loadConfig } from '../../core/config.js';
import { createLogger } from '../../core/logger.js';
import { Metrics } from '../../core/metrics.js';
import { connectQueue, type StateQueue } from '../../worker/queue.js';
import { createTestDatabase, type TestDatabase } from '../support/db.js';
import { basic, client, startTestEndpoint } from '../support/endpoint.js';
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
