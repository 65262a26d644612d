import { expect } from 'chai';
import { ConfigError, loadConfig } from '../../core/config.js';
import { redisTarget } from '../../core/redis.js';

describe('configuration of Redis: a URL, or Redis Sentinel', () => {
  it('when REDIS_SENTINELS is set, then every connection is made from the sentinels, the master name and both passwords', () => {
    const target = redisTarget(loadConfig({
      REDIS_SENTINELS: 'sentinel-0.redis:26379, [fd00::1]:26380,10.0.0.3:26381', REDIS_SENTINEL_MASTER: 'harbor-redis',
      REDIS_SENTINEL_PASSWORD: 'sentinel-secret', REDIS_PASSWORD: 'redis-secret',
    }));
    expect(target).to.deep.include({
      sentinels: [{ host: 'sentinel-0.redis', port: 26379 }, { host: 'fd00::1', port: 26380 }, { host: '10.0.0.3', port: 26381 }],
      name: 'harbor-redis', sentinelPassword: 'sentinel-secret', password: 'redis-secret',
    });
    expect(redisTarget(loadConfig({ REDIS_SENTINELS: '127.0.0.1:26379' }))).to.deep.include({ name: 'mymaster' });
  });

  it('when REDIS_PASSWORD is set with REDIS_URL, then it takes the place of the URL\'s password and the rest of the URL is kept', () => {
    expect(redisTarget(loadConfig({ REDIS_URL: 'rediss://queue:old@redis.example:6380/2', REDIS_PASSWORD: 'new-secret' }))).to.deep.equal({
      host: 'redis.example', port: 6380, username: 'queue', password: 'new-secret', db: 2, tls: {},
    });
    expect(redisTarget(loadConfig({ REDIS_URL: 'redis://redis.example:6379' }))).to.equal('redis://redis.example:6379');
  });

  it('when REDIS_SENTINELS is malformed, or set with REDIS_URL, then one error names each problem', () => {
    try {
      loadConfig({ REDIS_SENTINELS: 'a:26379,b,c:99999,', REDIS_URL: 'redis://x:6379' });
      expect.fail('should throw');
    } catch (err) {
      expect(err).to.be.instanceOf(ConfigError);
      const problems = (err as ConfigError).problems;
      expect(problems).to.include('REDIS_SENTINELS item "b" is not host:port');
      expect(problems).to.include('REDIS_SENTINELS item "c:99999" is not host:port');
      expect(problems.join('\n')).to.include('REDIS_URL and REDIS_SENTINELS exclude each other');
    }
    expect(() => loadConfig({ REDIS_SENTINELS: ' , ' })).to.throw(ConfigError, 'REDIS_SENTINELS names no sentinel');
  });

  it('when DATABASE_URL asks for libpq\'s multi-host failover, which node-postgres does not implement, then the error says so instead of connecting to the first host', () => {
    for (const url of ['postgres://satellite@pg-a,pg-b/satellite', 'postgres://satellite@localhost/satellite?host=pg-a,pg-b', 'postgres://satellite@pg-rw/satellite?target_session_attrs=read-write']) {
      expect(() => loadConfig({ DATABASE_URL: url }), url).to.throw(ConfigError, /node-postgres/);
    }
    expect(loadConfig({ DATABASE_URL: 'postgres://satellite@pg-rw:5432/satellite?sslmode=verify-full&sslrootcert=/etc/satellite/pg-ca.crt' }).databaseUrl)
      .to.include('sslmode=verify-full');
  });
});
