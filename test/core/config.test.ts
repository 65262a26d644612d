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
});
