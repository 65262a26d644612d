import { expect } from 'chai';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, loadConfig, requireEndpointPassword, SECRET_VARIABLES, type Config } from '../../core/config.js';

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

  it('when an integer setting is one above its maximum, then start-up fails naming it and its range; at the maximum it is taken', () => {
    const above = { PORT: '65536', WORKER_CONCURRENCY: '257', STATE_MAX_MB: '4097', AUTH_HASH_CONCURRENCY: '65' };
    try {
      loadConfig(above);
      expect.fail('should throw');
    } catch (err) {
      expect(err).to.be.instanceOf(ConfigError);
      expect((err as ConfigError).problems).to.include.members([
        'PORT="65536" must be an integer from 0 to 65535',
        'WORKER_CONCURRENCY="257" must be an integer from 1 to 256',
        'STATE_MAX_MB="4097" must be an integer from 1 to 4096',
        'AUTH_HASH_CONCURRENCY="65" must be an integer from 1 to 64',
      ]);
    }
    expect(loadConfig({ PORT: '65535', WORKER_CONCURRENCY: '256', STATE_MAX_MB: '4096', AUTH_HASH_CONCURRENCY: '64' })).to.include({ port: 65535, workerConcurrency: 256, stateMaxMb: 4096, authHashConcurrency: 64 });
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

  describe('secrets from files (<NAME>_FILE)', () => {
    let dir: string;
    beforeEach(() => (dir = mkdtempSync(join(tmpdir(), 'satellite-secrets-'))));
    afterEach(() => rmSync(dir, { recursive: true, force: true }));
    const file = (name: string, content: string) => {
      const path = join(dir, name);
      writeFileSync(path, content, { mode: 0o600 });
      return path;
    };
    /** A value of the right shape for each secret, 12 characters or more, each distinct. */
    const valueFor = (name: string) =>
      name === 'DATABASE_URL' ? 'postgres://satellite:s3cret-from-file@db.example:5432/satellite'
        : name === 'REDIS_URL' ? 'redis://:s3cret-from-file@cache.example:6379'
          : `${name.toLowerCase()}-from-a-file`;
    const field: Record<(typeof SECRET_VARIABLES)[number], keyof Config> = {
      ENDPOINT_PASSWORD: 'endpointPassword', ADMIN_PASSWORD: 'adminPassword', HARBOR_PASSWORD: 'harborPassword',
      STATE_REGISTRY_PASSWORD: 'stateRegistryPassword', COSIGN_PASSWORD: 'cosignPassword', DATABASE_URL: 'databaseUrl', REDIS_URL: 'redisUrl',
      REDIS_PASSWORD: 'redisPassword', REDIS_SENTINEL_PASSWORD: 'redisSentinelPassword',
    };

    it('when each secret is given as <NAME>_FILE, then the service uses the file\'s content, without its trailing newline', () => {
      const env: Record<string, string> = { STATE_REGISTRY_USERNAME: 'robot$push' };
      for (const name of SECRET_VARIABLES) env[`${name}_FILE`] = file(name, `${valueFor(name)}\n`);
      const c = loadConfig(env);
      for (const name of SECRET_VARIABLES) expect(c[field[name]], name).to.equal(valueFor(name));
      // A file written on Windows, or with several newlines at the end, gives the same value.
      expect(loadConfig({ ENDPOINT_PASSWORD_FILE: file('crlf', 'a-secret-from-windows\r\n\n') }).endpointPassword).to.equal('a-secret-from-windows');
      // Spaces are part of a secret: only line ends are dropped.
      expect(loadConfig({ ENDPOINT_PASSWORD_FILE: file('spaces', ' spaced secret value \n') }).endpointPassword).to.equal(' spaced secret value ');
    });

    it('when a secret and its _FILE are both set, then start-up fails with one error naming both', () => {
      for (const name of SECRET_VARIABLES) {
        const env = { [name]: valueFor(name), [`${name}_FILE`]: file(name, valueFor(name)) };
        expect(() => loadConfig(env), name).to.throw(ConfigError, `${name} and ${name}_FILE are both set`);
      }
    });

    it('when a _FILE names a missing or empty file, then start-up fails naming the variable and the path, and no file content is shown', () => {
      const missing = join(dir, 'not-there');
      expect(() => loadConfig({ ADMIN_PASSWORD_FILE: missing })).to.throw(ConfigError, `ADMIN_PASSWORD_FILE="${missing}" cannot be read: ENOENT`);
      const empty = file('empty', '\n');
      expect(() => loadConfig({ HARBOR_PASSWORD_FILE: empty })).to.throw(ConfigError, `HARBOR_PASSWORD_FILE="${empty}" is empty`);
      // The value read is checked like the variable itself, and named by the variable.
      try {
        loadConfig({ ENDPOINT_PASSWORD_FILE: file('short', 'short\n'), DATABASE_URL_FILE: file('db', 'mysql://u:hunter2-secret@x/db\n') });
        expect.fail('should throw');
      } catch (err) {
        const message = (err as Error).message;
        expect(message).to.include('ENDPOINT_PASSWORD must be at least 12 characters').and.include('DATABASE_URL must be a postgres: or postgresql: URL');
        expect(message).not.to.include('hunter2');
      }
    });
  });
});
