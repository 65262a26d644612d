import { expect } from 'chai';
import { rm } from 'node:fs/promises';
import { Redis } from 'ioredis';
import { testKeys } from '../support/worker.js';
import { startAdminHarness, type AdminHarness } from '../support/admin.js';
import { dropPrefix, REDIS_URL, testPrefix } from '../support/redis.js';

describe('the admin API\'s throttles across replicas', function () {
  this.timeout(30_000);
  let redis: Redis;
  let prefix: string;
  const replicas: AdminHarness[] = [];
  beforeEach(async () => {
    redis = new Redis(REDIS_URL);
    prefix = testPrefix();
  });
  afterEach(async () => {
    for (const r of replicas.splice(0)) await r.close();
    redis.disconnect();
    await dropPrefix(prefix);
  });

  it('when registrations are tried on two replicas, then they count together and the limit holds across both', async () => {
    const keys = await testKeys();
    try {
      for (let i = 0; i < 2; i++) replicas.push(await startAdminHarness({ REGISTRATION_RATE_LIMIT: '4', COSIGN_PUBLIC_KEY: keys.pubPath }, { throttleRedis: { redis, prefix } }));
    } finally {
      await rm(keys.dir, { recursive: true, force: true });
    }
    const [a, b] = replicas as [AdminHarness, AdminHarness];
    const register = (r: AdminHarness) => r.api('/api/v1/satellites/register', { method: 'POST', body: { token: 'not-a-token-0123456789abcdef' }, auth: null });
    const statuses = [await register(a), await register(b), await register(a), await register(b), await register(a), await register(b)].map((x) => x.status);
    expect(statuses.slice(0, 4), 'four attempts in all are judged').to.deep.equal([401, 401, 401, 401]);
    expect(statuses.slice(4), 'then both replicas refuse').to.deep.equal([429, 429]);
  });

  it('when wrong admin credentials are tried on two replicas, then the failures count together', async () => {
    for (let i = 0; i < 2; i++) replicas.push(await startAdminHarness({}, { throttleRedis: { redis, prefix } }));
    const [a, b] = replicas as [AdminHarness, AdminHarness];
    const wrong = `Basic ${Buffer.from('operator:wrong-password').toString('base64')}`;
    const seen: number[] = [];
    for (let i = 0; i < 1100; i += 1) {
      const r = i % 2 === 0 ? a : b;
      const res = await r.api('/api/v1/groups', { auth: wrong });
      seen.push(res.status);
      if (res.status === 429) break;
    }
    // The harness allows 1,000 failures per address: reached only by counting both replicas'.
    expect(seen.at(-1)).to.equal(429);
    expect(seen.length).to.be.within(1000, 1002);
  });
});
