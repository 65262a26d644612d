import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { createServer, type Server } from 'node:net';
import { createTestDatabase, type TestDatabase } from '../support/db.js';
import { PASSWORD } from '../support/endpoint.js';
import { freePort } from '../support/process.js';
import { dropPrefix, REDIS_URL, testPrefix } from '../support/redis.js';

// The real `satellite serve`/`adapter`/`worker` started on a port another process holds: the
// operator reads one line naming the variable to change, and the process is gone.

describe('satellite on a port already in use', function () {
  this.timeout(60_000);
  let db: TestDatabase;
  let prefix: string;
  let holder: Server;
  let held: number;
  before(async () => (db = await createTestDatabase()));
  after(async () => db.drop());
  beforeEach(async () => {
    prefix = testPrefix();
    holder = createServer();
    await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve));
    held = (holder.address() as { port: number }).port;
  });
  afterEach(async () => {
    await new Promise((r) => holder.close(r));
    await dropPrefix(prefix);
  });

  const run = async (command: string, env: Record<string, string>) => {
    const child = spawn(process.execPath, ['dist/cli/main.js', command], {
      env: {
        ...process.env, DATABASE_URL: db.url, REDIS_URL, QUEUE_PREFIX: prefix, HOST: '127.0.0.1', METRICS_HOST: '127.0.0.1',
        ENDPOINT_PASSWORD: PASSWORD, LOG_LEVEL: 'warn', ...env,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
    clearTimeout(timer);
    return { code, stderr };
  };

  it('when PORT is taken, then `satellite adapter` exits non-zero with one line naming PORT', async () => {
    const { code, stderr } = await run('adapter', { PORT: String(held), METRICS_PORT: String(await freePort()) });
    expect(code).to.equal(1);
    expect(stderr.trim().split('\n'), stderr).to.deep.equal([
      `satellite: PORT=${held} (HOST=127.0.0.1): cannot listen: the port is already in use (choose another, or stop what listens there)`,
    ]);
  });

  it('when METRICS_PORT is taken, then `satellite adapter` exits non-zero with one line naming METRICS_PORT', async () => {
    const { code, stderr } = await run('adapter', { PORT: String(await freePort()), METRICS_PORT: String(held) });
    expect(code).to.equal(1);
    expect(stderr.trim().split('\n'), stderr).to.deep.equal([
      `satellite: METRICS_PORT=${held} (METRICS_HOST=127.0.0.1): cannot listen: the port is already in use (choose another, or stop what listens there)`,
    ]);
  });
});
