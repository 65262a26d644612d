import { expect } from 'chai';
import http from 'node:http';
import { pino, type Logger } from 'pino';
import { BasicAuthenticator } from '../../adapter/auth.js';
import { LoginThrottle } from '../../adapter/login-throttle.js';
import type { RunningEndpoint } from '../../adapter/server.js';
import { RegistryError } from '../../core/errors.js';
import { Metrics } from '../../core/metrics.js';
import { CredentialStore } from '../../core/store/credential-store.js';
import { createTestDatabase, type TestDatabase } from '../support/db.js';
import { basic, client, PASSWORD, startTestEndpoint, USERNAME } from '../support/endpoint.js';
import { image } from '../support/oci.js';
import { dropPrefix, ownRedis, REDIS_URL, testPrefix } from '../support/redis.js';

const hashes = async (m: Metrics) => (await m.secretHashes.get()).values[0]?.value ?? 0;

describe('login throttling', function () {
  this.timeout(60_000);
  let db: TestDatabase;
  let prefix: string;
  const running: RunningEndpoint[] = [];

  beforeEach(async () => {
    db = await createTestDatabase();
    prefix = testPrefix();
  });
  afterEach(async () => {
    for (const e of running.splice(0)) await e.stop();
    await db?.drop();
    await dropPrefix(prefix);
  });

  const start = async (limits: { address: number; username?: number; trustProxy?: string; metrics?: Metrics; redisUrl?: string; log?: Logger }) => {
    const e = await startTestEndpoint(db.url, limits.address, limits.trustProxy, {
      authUsernameFailureLimit: limits.username ?? 1000, metrics: limits.metrics,
      redis: { url: limits.redisUrl ?? REDIS_URL, prefix: `${prefix}:auth` }, ...(limits.log ? { log: limits.log } : {}),
    });
    running.push(e);
    return e;
  };

  it('when 400 wrong secrets arrive at once from one address, then at most the limit are checked (401) and every other gets 429 unchecked', async () => {
    const metrics = new Metrics();
    const e = await start({ address: 10, metrics });
    const wrong = client(e.url, basic('harbor', 'not-the-secret'));
    const statuses = await Promise.all(Array.from({ length: 400 }, () => wrong('/v2/').then((r) => r.status)));
    const count = (s: number) => statuses.filter((x) => x === s).length;
    expect(count(401), 'checked').to.be.at.most(10);
    expect(count(429), 'refused before any check').to.equal(400 - count(401));
    expect(await hashes(metrics), 'scrypt runs').to.be.at.most(10);
  });

  it('when a client opens with a burst of concurrent requests carrying the right credential, then none of them is throttled', async () => {
    const metrics = new Metrics();
    const e = await start({ address: 5, metrics });
    const statuses = await Promise.all(Array.from({ length: 50 }, () => client(e.url)('/v2/').then((r) => r.status)));
    expect(statuses.filter((s) => s !== 200)).to.deep.equal([]);
  });

  it('when a wrong secret follows the right one on the same kept-alive connection, then it is refused, and the right one still works after it', async () => {
    // The configured credential is remembered per connection (adapter/auth.ts): only the
    // very header that verified on it may skip the check.
    const e = await start({ address: 100 });
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const sockets = new Set<unknown>();
    const get = (authorization: string) => new Promise<number>((resolve, reject) => {
      const req = http.get(`${e.url}/v2/`, { agent, headers: { Authorization: authorization } }, (res) => {
        sockets.add(res.socket);
        res.resume();
        res.on('end', () => resolve(res.statusCode!));
      });
      req.on('error', reject);
    });
    try {
      const statuses = [];
      for (const authorization of [basic(USERNAME, PASSWORD), basic(USERNAME, `${PASSWORD}x`), basic('someone', PASSWORD), basic(USERNAME, PASSWORD)]) {
        statuses.push(await get(authorization));
      }
      expect(statuses).to.deep.equal([200, 401, 401, 200]);
      expect(sockets.size, 'one connection').to.equal(1);
    } finally {
      agent.destroy();
    }
  });

  it('when two replicas share Redis, then failures on one count on the other', async () => {
    const a = await start({ address: 6 });
    const b = await start({ address: 6 });
    for (let i = 0; i < 3; i++) expect((await client(a.url, basic('harbor', 'guess'))('/v2/')).status).to.equal(401);
    for (let i = 0; i < 3; i++) expect((await client(b.url, basic('harbor', 'guess'))('/v2/')).status).to.equal(401);
    expect((await client(a.url, basic('harbor', 'guess'))('/v2/')).status).to.equal(429);
    expect((await client(b.url)('/v2/')).status, 'even the right secret, from that address').to.equal(429);
  });

  it('when Harbor logged in on one replica and its address is then flooded with wrong guesses on the other, then Harbor\'s credential still works on the other: the trust is shared through Redis', async () => {
    const a = await start({ address: 3 });
    const b = await start({ address: 3 });
    expect((await client(a.url)('/v2/')).status, 'Harbor logs in on replica a').to.equal(200);
    for (let i = 0; i < 3; i++) expect((await client(b.url, basic('harbor', `guess-${i}`))('/v2/')).status).to.equal(401);
    expect((await client(b.url, basic('harbor', 'guess-3'))('/v2/')).status, 'the address is throttled on b').to.equal(429);
    expect((await client(b.url)('/v2/')).status, 'Harbor, trusted on a, is trusted on b').to.equal(200);
  });

  it('when guesses for one username come from many addresses, then that username is throttled everywhere, except for a client it already succeeded from', async () => {
    const e = await start({ address: 1000, username: 5, trustProxy: 'loopback' });
    const from = (ip: string, auth: string) => fetch(`${e.url}/v2/`, { headers: { Authorization: auth, 'X-Forwarded-For': ip } });
    expect((await from('192.0.2.1', basic())).status, 'Harbor logs in before the attack').to.equal(200);
    for (let i = 0; i < 5; i++) expect((await from(`203.0.113.${i}`, basic('harbor', `guess-${i}`))).status).to.equal(401);
    expect((await from('203.0.113.99', basic('harbor', 'guess-99'))).status).to.equal(429);
    expect((await from('198.51.100.7', basic())).status, 'the right secret from a fresh address').to.equal(429);
    expect((await from('192.0.2.1', basic())).status, 'Harbor, already trusted from its address, keeps working').to.equal(200);
    expect((await from('198.51.100.8', basic('someone-else', 'x'))).status, 'other usernames are not affected').to.equal(401);
  });

  it('when a login fails, then it costs one scrypt whether the username exists or not; the endpoint credential costs none', async () => {
    const metrics = new Metrics();
    const e = await start({ address: 1000, metrics });
    const store = new CredentialStore(db.pool);
    const { username, secret } = await store.create('edge-eu');
    const attempts: [string, string, number, number][] = [
      ['unknown username', basic('nobody', 'x'), 401, 1],
      ['known group username, wrong secret', basic(username, 'wrong'), 401, 1],
      ['endpoint username, wrong secret', basic(USERNAME, 'wrong'), 401, 1],
      ['no colon at all', `Basic ${Buffer.from('just-a-name').toString('base64')}`, 401, 1],
      ['the endpoint credential', basic(USERNAME, PASSWORD), 200, 0],
      ['a group credential, first time', basic(username, secret), 200, 1],
      ['the same group credential again', basic(username, secret), 200, 0],
    ];
    for (const [what, auth, status, cost] of attempts) {
      const before = await hashes(metrics);
      expect((await client(e.url, auth)('/v2/')).status, what).to.equal(status);
      expect((await hashes(metrics)) - before, what).to.equal(cost);
    }
  });

  it('when wrong logins name unknown usernames, then they cost the service as much CPU and time as wrong logins for a known one, so neither tells which usernames exist', async () => {
    const e = await start({ address: 1000 });
    const { username } = await new CredentialStore(db.pool).create('edge-eu');
    expect((await client(e.url, basic('warm-up', 'x'))('/v2/')).status, 'the first unknown name pays for the stand-in hash').to.equal(401);
    // CPU of this process (the endpoint runs in it; scrypt runs on its thread pool, which
    // getrusage counts) for ten sequential wrong logins each: the work done, which other load
    // on the machine does not change the way it changes elapsed time.
    const cost = async (name: (i: number) => string) => {
      const cpu = process.cpuUsage();
      const t0 = performance.now();
      for (let i = 0; i < 10; i++) expect((await client(e.url, basic(name(i), `wrong-${i}`))('/v2/')).status).to.equal(401);
      const used = process.cpuUsage(cpu);
      return { cpuMs: (used.user + used.system) / 1000, wallMs: performance.now() - t0 };
    };
    const known = await cost(() => username);
    const unknown = await cost((i) => `nobody-${i}`);
    const what = `ten wrong logins: known username ${known.cpuMs.toFixed(0)} ms CPU / ${known.wallMs.toFixed(0)} ms, unknown ${unknown.cpuMs.toFixed(0)} ms CPU / ${unknown.wallMs.toFixed(0)} ms`;
    expect(unknown.cpuMs / known.cpuMs, what).to.be.within(0.5, 2);
  });

  it('when Redis is down, then Harbor still pushes, guessing is still throttled (in this process), and a warning says so', async () => {
    const redis = await ownRedis();
    const lines: string[] = [];
    const log = pino({ level: 'info' }, { write: (l: string) => lines.push(l) });
    try {
      const e = await start({ address: 3, redisUrl: redis.url, log });
      await redis.stop();
      const img = image();
      const put = await client(e.url)('/v2/edge-eu/library/alpine/manifests/1', { method: 'PUT', headers: { 'Content-Type': img.manifest.mediaType }, body: img.manifest.bytes });
      expect(put.status).to.equal(201);
      const statuses: number[] = [];
      for (let i = 0; i < 6; i++) statuses.push((await client(e.url, basic('harbor', `g${i}`))('/v2/')).status);
      expect(statuses).to.deep.equal([401, 401, 401, 429, 429, 429]);
      expect(lines.join('')).to.include('login throttle: redis unreachable');
    } finally {
      await redis.stop();
    }
  });
});

describe('the cap on concurrent secret hashing', () => {
  let db: TestDatabase;
  before(async () => {
    db = await createTestDatabase();
  });
  after(async () => db?.drop());

  it('when more logins need scrypt at once than the cap and its queue hold, then the rest get 429 without hashing', async () => {
    const metrics = new Metrics();
    const throttle = new LoginThrottle({ prefix: 'local', addressLimit: 1000, usernameLimit: 1000 });
    const auth = new BasicAuthenticator({ username: USERNAME, password: PASSWORD, throttle, credentials: new CredentialStore(db.pool), hashConcurrency: 1, metrics });
    const results = await Promise.all(Array.from({ length: 40 }, (_, i) =>
      auth.authenticate(basic(`user-${i}`, 'x'), `10.0.0.${i}`).then(() => 'ok', (e: RegistryError) => e.code)));
    const busy = results.filter((r) => r === 'TOOMANYREQUESTS').length;
    expect(results.filter((r) => r === 'UNAUTHORIZED').length + busy).to.equal(40);
    expect(busy, 'refused while 1 hashes and 16 wait').to.equal(40 - 17);
    expect(await hashes(metrics)).to.equal(17);
  });
});
