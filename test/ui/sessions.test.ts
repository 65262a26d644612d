import { expect } from 'chai';
import { Redis } from 'ioredis';
import { ADMIN, startAdminHarness, type AdminHarness } from '../support/admin.js';
import { dropPrefix, ownRedis, REDIS_URL, testPrefix } from '../support/redis.js';

// The dashboard's sessions as `satellite serve` keeps them: in Redis, shared by every
// replica, so a login on one opens the others and a logout on one ends it on all.
describe('dashboard sessions shared through Redis', function () {
  this.timeout(60_000);
  const replicas: AdminHarness[] = [];
  let redis: Redis;
  let prefix: string;
  beforeEach(async () => {
    redis = new Redis(REDIS_URL);
    prefix = testPrefix();
  });
  afterEach(async () => {
    for (const h of replicas.splice(0)) await h.close();
    await dropPrefix(prefix);
    redis.disconnect();
  });

  const form = (fields: Record<string, string>) => new URLSearchParams(fields).toString();
  const login = (h: AdminHarness, password: string) => fetch(`${h.url}/ui/login`, {
    method: 'POST', redirect: 'manual', headers: { 'Content-Type': 'application/x-www-form-urlencoded', Origin: h.url }, body: form({ username: ADMIN.username, password }),
  });

  it('when an operator logs in on one replica, then the others accept the session; when it logs out on one, then none does; Redis holds no usable id', async () => {
    for (let i = 0; i < 2; i++) replicas.push(await startAdminHarness({}, { throttleRedis: { redis, prefix } }));
    const [a, b] = replicas as [AdminHarness, AdminHarness];
    const wrong = await login(a, 'not-the-password-123');
    expect(wrong.status).to.equal(401);
    expect(wrong.headers.get('set-cookie')).to.equal(null);
    const res = await login(a, ADMIN.password);
    expect(res.status).to.equal(303);
    const setCookie = res.headers.get('set-cookie')!;
    expect(setCookie).to.match(/^satellite_ui_session=[A-Za-z0-9_-]{43}; Max-Age=3600; Path=\/; Expires=.*; HttpOnly; SameSite=Strict$/);
    const id = /satellite_ui_session=([^;]+)/.exec(setCookie)![1]!;
    const cookie = `satellite_ui_session=${id}`;
    expect((await fetch(`${b.url}/api/v1/fleet`, { headers: { Cookie: cookie } })).status, 'the other replica').to.equal(200);
    const keys = await redis.keys(`${prefix}:ui-session:*`);
    expect(keys).to.have.length(1);
    expect(`${keys[0]!} ${(await redis.get(keys[0]!)) ?? ''}`, 'only a hash of the id is stored').to.not.include(id);
    expect(await redis.pttl(keys[0]!)).to.be.within(3_590_000, 3_600_000);

    const page = await (await fetch(`${b.url}/ui/`, { headers: { Cookie: cookie } })).text();
    const csrf = /name="csrf" value="([^"]+)"/.exec(page)![1]!;
    const logout = await fetch(`${b.url}/ui/logout`, {
      method: 'POST', redirect: 'manual', headers: { Cookie: cookie, Origin: b.url, 'Content-Type': 'application/x-www-form-urlencoded' }, body: form({ csrf }),
    });
    expect(logout.status).to.equal(303);
    expect(logout.headers.get('set-cookie')).to.match(/^satellite_ui_session=; Max-Age=0;/);
    expect((await fetch(`${a.url}/api/v1/fleet`, { headers: { Cookie: cookie } })).status, 'ended on the first replica too').to.equal(401);
    expect(await redis.keys(`${prefix}:ui-session:*`)).to.deep.equal([]);
  });

  it('when the login form is posted from another origin, then it is refused and no session opens', async () => {
    replicas.push(await startAdminHarness({}, { throttleRedis: { redis, prefix } }));
    const h = replicas[0]!;
    const res = await fetch(`${h.url}/ui/login`, {
      method: 'POST', redirect: 'manual', headers: { 'Content-Type': 'application/x-www-form-urlencoded', Origin: 'http://elsewhere.example' }, body: form({ username: ADMIN.username, password: ADMIN.password }),
    });
    expect(res.status).to.equal(403);
    expect(res.headers.get('set-cookie')).to.equal(null);
    expect(await redis.keys(`${prefix}:ui-session:*`)).to.deep.equal([]);
  });

  it('when Redis cannot be reached, then the login form and the pages\' API calls answer 503 saying so (never a 500, never a login refused)', async () => {
    const own = await ownRedis();
    const away = new Redis(own.url, { enableOfflineQueue: false, maxRetriesPerRequest: 0, commandTimeout: 500 });
    away.on('error', () => undefined);
    try {
      replicas.push(await startAdminHarness({}, { throttleRedis: { redis: away, prefix } }));
      const h = replicas[0]!;
      await own.stop();
      const res = await login(h, ADMIN.password);
      expect(res.status).to.equal(503);
      expect(await res.text()).to.include('the dashboard&#39;s sessions cannot be reached');
      const api = await fetch(`${h.url}/api/v1/fleet`, { headers: { Cookie: 'satellite_ui_session=whatever' } });
      expect(api.status).to.equal(503);
      expect(((await api.json()) as { errors: { code: string }[] }).errors[0]!.code).to.equal('UNAVAILABLE');
    } finally {
      away.disconnect();
      await own.stop();
    }
  });

  it('when no admin credential is configured, then the dashboard is not served and says why', async () => {
    replicas.push(await startAdminHarness({}, { admin: false }));
    const res = await fetch(`${replicas[0]!.url}/ui/`);
    expect(res.status).to.equal(503);
    expect(await res.text()).to.include('set ADMIN_USERNAME and ADMIN_PASSWORD');
  });

  it('when the request came over TLS (a proxy says so, TRUST_PROXY set), then the cookie is Secure and the public origin is ours; another origin is refused', async () => {
    replicas.push(await startAdminHarness({ TRUST_PROXY: 'loopback' }));
    const h = replicas[0]!;
    const viaProxy = (origin: string) => fetch(`${h.url}/ui/login`, {
      method: 'POST', redirect: 'manual',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded', Origin: origin, 'X-Forwarded-Proto': 'https', 'X-Forwarded-Host': 'satellite.example.com' },
      body: form({ username: ADMIN.username, password: ADMIN.password }),
    });
    const res = await viaProxy('https://satellite.example.com');
    expect(res.status).to.equal(303);
    expect(res.headers.get('set-cookie')).to.match(/; HttpOnly; Secure; SameSite=Strict$/);
    expect((await viaProxy('https://evil.example.com')).status).to.equal(403);
    expect((await viaProxy('null')).status).to.equal(403);
  });
});
