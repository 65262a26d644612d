import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';
import { ADMIN_URL } from '../support/db.js';
import { freePort } from '../support/process.js';
import { ownRedis } from '../support/redis.js';

const exec = promisify(execFile);

/** Runs a command; its exit code and everything it printed, never a throw. */
async function run(file: string, args: string[], env: Record<string, string>): Promise<{ code: number; out: string }> {
  try {
    const { stdout, stderr } = await exec(file, args, { env: { ...process.env, ...env }, timeout: 60_000 });
    return { code: 0, out: stdout + stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : -1, out: `${e.stdout ?? ''}${e.stderr ?? ''}` };
  }
}

// What a newcomer meets around `make run`: harbor-dev/deps.sh looks where DATABASE_URL and
// REDIS_URL point, and the CLI says the same thing whether a database host refuses or does
// not exist.

describe('harbor-dev/deps.sh and DATABASE_URL / REDIS_URL', function () {
  this.timeout(90_000);
  const DEPS = 'harbor-dev/deps.sh';
  const localhostDatabase = () => {
    const u = new URL(ADMIN_URL);
    u.hostname = 'localhost'; // the running server, spelt another way
    return u.toString();
  };

  it('when REDIS_URL names a Redis on another port that has stopped, then deps.sh status says it is down, though one answers on 6379', async () => {
    const redis = await ownRedis();
    try {
      const url = `redis://localhost:${redis.port}`;
      const env = { DATABASE_URL: localhostDatabase(), REDIS_URL: url };
      expect((await run(DEPS, ['status'], env)).out).to.include(`redis: up (localhost:${redis.port})`).and.include('postgres: up (localhost:');
      await redis.stop();
      expect((await run(DEPS, ['status'], env)).out).to.include(`redis: down (localhost:${redis.port})`);
    } finally {
      await redis.stop();
    }
  });

  it('when REDIS_URL names a free loopback port, then deps.sh up starts Redis there', async () => {
    const port = await freePort();
    const { code, out } = await run(DEPS, ['up'], { DATABASE_URL: localhostDatabase(), REDIS_URL: `redis://localhost:${port}` });
    const redis = new Redis(port, '127.0.0.1', { maxRetriesPerRequest: 1, lazyConnect: true, retryStrategy: () => null });
    redis.on('error', () => undefined);
    try {
      expect(code, out).to.equal(0);
      expect(out).to.include(`starting Redis on 127.0.0.1:${port}`);
      await redis.connect();
      expect(await redis.ping()).to.equal('PONG');
    } finally {
      // The test's own: stopped again, whatever the assertions said.
      if (redis.status !== 'ready') await redis.connect().catch(() => undefined);
      await redis.call('SHUTDOWN', 'NOSAVE').catch(() => undefined);
      redis.disconnect();
    }
  });

  it('when DATABASE_URL names a PostgreSQL that does not answer, then deps.sh up fails naming DATABASE_URL and its address, without the password, and starts nothing', async () => {
    const port = await freePort();
    const { code, out } = await run(DEPS, ['up'], { DATABASE_URL: `postgres://satellite:pa55word-not-shown@127.0.0.1:${port}/satellite` });
    expect(code).to.equal(1);
    expect(out).to.include(`nothing answers at DATABASE_URL (127.0.0.1:${port})`);
    expect(out).not.to.include('pa55word-not-shown');
    expect(out).not.to.include('starting PostgreSQL');
  });

  it('when the database host does not exist, then `satellite migrate` gives the same hint as when it refuses', async () => {
    const refused = await run(process.execPath, ['dist/cli/main.js', 'migrate'], { DATABASE_URL: `postgres://postgres@127.0.0.1:${await freePort()}/x` });
    const unknown = await run(process.execPath, ['dist/cli/main.js', 'migrate'], { DATABASE_URL: 'postgres://postgres@db.invalid:5432/x' });
    const hint = '(is the service at DATABASE_URL / REDIS_URL / the registry running?)';
    expect(refused.code).to.equal(1);
    expect(unknown.code).to.equal(1);
    expect(refused.out.trim(), 'refused').to.match(/^satellite: .*ECONNREFUSED.*/).and.include(hint);
    expect(unknown.out.trim(), 'unknown host').to.match(/^satellite: .*ENOTFOUND db\.invalid/).and.include(hint);
  });
});
