import { expect } from 'chai';
import { ConfigError, loadConfig, requireEndpointPassword } from '../../core/config.js';

describe('configuration', () => {
  it('when nothing is set, then the documented defaults apply and no password is invented', () => {
    const c = loadConfig({});
    expect(c).to.include({ port: 8080, databaseUrl: 'postgres://postgres@127.0.0.1:5432/satellite', redisUrl: 'redis://127.0.0.1:6379', endpointUsername: 'harbor', logLevel: 'info' });
    expect(c.endpointPassword).to.equal(undefined);
    expect(() => requireEndpointPassword(c)).to.throw(ConfigError, /ENDPOINT_PASSWORD is not set/);
  });

  it('when several values are bad, then one error names each of them', () => {
    try {
      loadConfig({ PORT: 'eighty', DATABASE_URL: 'mysql://x', LOG_LEVEL: 'loud', ENDPOINT_PASSWORD: 'short', REDIS_URL: 'not a url' });
      expect.fail('should throw');
    } catch (err) {
      expect(err).to.be.instanceOf(ConfigError);
      const problems = (err as ConfigError).problems.join('\n');
      for (const key of ['PORT', 'DATABASE_URL', 'LOG_LEVEL', 'ENDPOINT_PASSWORD', 'REDIS_URL']) expect(problems).to.include(key);
    }
  });

  it('when IMAGE_REGISTRY is unset, then states name the registry they are published to', () => {
    expect(loadConfig({ STATE_REGISTRY: 'https://harbor.example.com/' }).imageRegistry).to.equal('https://harbor.example.com');
    expect(loadConfig({ STATE_REGISTRY: 'https://a.example', IMAGE_REGISTRY: 'https://b.example' }).imageRegistry).to.equal('https://b.example');
  });

  it('when only the endpoint secret is set, then there is no admin credential: it never falls back to the endpoint\'s', async () => {
    const { adminCredential } = await import('../../core/config.js');
    expect(adminCredential(loadConfig({ ENDPOINT_PASSWORD: 'endpoint-secret-123' }))).to.equal(undefined);
    expect(adminCredential(loadConfig({ ADMIN_USERNAME: 'operator', ADMIN_PASSWORD: 'admin-secret-123' }))).to.deep.equal({ username: 'operator', password: 'admin-secret-123' });
    for (const [env, problem] of [[{ ADMIN_USERNAME: 'o', ADMIN_PASSWORD: 'short' }, 'at least 12'],
      [{ REGISTRATION_TOKEN_HOURS: '0' }, 'REGISTRATION_TOKEN_HOURS'], [{ HARBOR_RECONCILE_INTERVAL_SECONDS: 'often' }, 'HARBOR_RECONCILE_INTERVAL_SECONDS']] as const) {
      expect(() => loadConfig(env as Record<string, string>)).to.throw(ConfigError, problem);
    }
  });
});
