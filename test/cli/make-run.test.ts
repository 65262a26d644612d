import { expect } from 'chai';
import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { createTestDatabase, type TestDatabase } from '../support/db.js';
import { PASSWORD } from '../support/endpoint.js';
import { freePort, until } from '../support/process.js';
import { dropPrefix, ownRedis, testPrefix, type OwnRedis } from '../support/redis.js';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

// The whole `make run` (make, harbor-dev/run.sh, deps.sh, the local docker-registry, `satellite
// serve`) as a newcomer runs it, then stopped with one SIGTERM to make, as `kill` or a
// process supervisor sends it: every process it started must be gone, even with Redis away.

/** The processes of a process group still alive (zombies are gone already). */
function groupMembers(pgid: number): { pid: number; command: string }[] {
  const out: { pid: number; command: string }[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      // pid (comm) state ppid pgrp …; comm may hold spaces and parentheses.
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(fields[2]) !== pgid || fields[0] === 'Z') continue;
      out.push({ pid: Number(entry), command: readFileSync(`/proc/${entry}/cmdline`, 'utf8').replace(/\0/g, ' ').trim() });
    } catch {
      // gone while we looked
    }
  }
  return out;
}

interface MakeRun {
  pgid: number;
  output: () => string;
  /** Every byte of its output read. */
  closed: Promise<unknown>;
  port: number;
  registryPort: number;
}

describe('make run, stopped with a signal', function () {
  this.timeout(240_000);
  let dir: string;
  let db: TestDatabase;
  let redis: OwnRedis;
  let prefix: string;
  const groups: number[] = [];
  before(async () => {
    db = await createTestDatabase();
    dir = await mkdtemp(join(tmpdir(), 'satellite-make-run-'));
    prefix = testPrefix();
  });
  beforeEach(async () => (redis = await ownRedis()));
  afterEach(async () => {
    for (const pgid of groups.splice(0)) {
      for (const { pid } of groupMembers(pgid)) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
    }
    await redis.start();
    await dropPrefix(prefix, redis.url);
    await redis.stop();
  });
  after(async () => {
    await db.drop();
    await rm(dir, { recursive: true, force: true });
  });

  /** `make run` in a process group of its own, as a terminal or a supervisor gives it, up to its worker's start. */
  const startMakeRun = async (): Promise<MakeRun> => {
    const [port, metricsPort, registryPort] = [await freePort(), await freePort(), await freePort()];
    const passwordFile = join(dir, 'endpoint-password');
    await writeFile(passwordFile, `${PASSWORD}\n`, { mode: 0o600 });
    const env: NodeJS.ProcessEnv = {
      ...process.env, DATABASE_URL: db.url, REDIS_URL: redis.url, QUEUE_PREFIX: prefix, HOST: '127.0.0.1', PORT: String(port),
      METRICS_PORT: String(metricsPort), LOCAL_REGISTRY_PORT: String(registryPort), ENDPOINT_PASSWORD_FILE: passwordFile,
      // For another key: run.sh signs with its own .dev key and that key's password file.
      COSIGN_PASSWORD: 'not-the-dev-key-password', LOG_LEVEL: 'info', MAKEFLAGS: '',
    };
    for (const v of ['STATE_REGISTRY', 'COSIGN_KEY', 'COSIGN_PASSWORD_FILE', 'ENDPOINT_PASSWORD']) delete env[v]; // run.sh's own defaults
    const make = spawn('make', ['--no-print-directory', 'run'], { env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    make.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    make.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    const pgid = make.pid!;
    groups.push(pgid);
    const closed = new Promise((resolve) => make.on('close', resolve));

    await until('the worker to start under make run', async () => (out.includes('repeatable jobs registered') ? true : undefined), 120_000)
      .catch((err: Error) => { throw new Error(`${err.message}:\n${out}`); });
    expect(out).to.include(`docker-registry for states on http://127.0.0.1:${registryPort}`);
    expect(out).to.include(`Secret:     (in ${passwordFile})`);
    const v2 = await fetch(`http://127.0.0.1:${port}/v2/`, { headers: { Authorization: `Basic ${Buffer.from(`harbor:${PASSWORD}`).toString('base64')}` } });
    expect(v2.status, 'the endpoint takes the secret of ENDPOINT_PASSWORD_FILE').to.equal(200);
    expect((await fetch(`http://127.0.0.1:${registryPort}/v2/`)).status, 'the local registry on LOCAL_REGISTRY_PORT').to.equal(200);
    const started = groupMembers(pgid).map((p) => p.command);
    expect(started.some((c) => c.includes('docker-registry serve')), started.join('\n')).to.equal(true);
    expect(started.some((c) => c.includes('dist/cli/main.js serve')), started.join('\n')).to.equal(true);
    return { pgid, output: () => out, closed, port, registryPort };
  };

  /** Kills the test's Redis and waits until the service has noticed. */
  const redisGoesAway = async (run: MakeRun) => {
    await redis.stop();
    const before = run.output().length;
    await until('the service to notice Redis is gone', async () => (/redis connection error|worker error/.test(run.output().slice(before)) ? true : undefined));
  };

  /** Seconds until no process of the group is left; fails after 10. */
  const allGone = async (run: MakeRun, t0: number, what: string): Promise<number> => {
    const left = await until('every process of make run to be gone', async () => {
      const alive = groupMembers(run.pgid);
      return alive.length === 0 ? [] : Date.now() - t0 > 10_000 ? alive : undefined;
    }, 15_000);
    expect(left.map((p) => `${p.pid} ${p.command}`), `still running 10 s after ${what}; output:\n${run.output().slice(-3000)}`).to.deep.equal([]);
    const seconds = (Date.now() - t0) / 1000;
    await run.closed;
    await fetch(`http://127.0.0.1:${run.registryPort}/v2/`).then(() => expect.fail('the registry still answers'), () => undefined);
    console.log(`      (every process gone ${seconds.toFixed(1)} s after ${what})`);
    return seconds;
  };

  it('when Redis has gone away and make gets SIGTERM, then make, run.sh, the service and the registry it started are all gone within seconds', async () => {
    const run = await startMakeRun();
    await redisGoesAway(run);
    const t0 = Date.now();
    process.kill(run.pgid, 'SIGTERM'); // make alone, not its group, as `kill` or a supervisor sends it
    expect(await allGone(run, t0, 'SIGTERM')).to.be.below(10);
    expect(run.output(), 'the service stopped on the signal').to.include('shutting down');
  });

  it('when Redis has gone away and Ctrl-C reaches every process of make run, then all are gone within seconds and the service stops once', async () => {
    const run = await startMakeRun();
    await redisGoesAway(run);
    const t0 = Date.now();
    process.kill(-run.pgid, 'SIGINT'); // the whole group, as the terminal sends it
    expect(await allGone(run, t0, 'Ctrl-C')).to.be.below(10);
    expect(run.output().match(/shutting down/g), 'one shutdown, though the signal came twice (the terminal\'s, and run.sh passing it on)').to.have.length(1);
  });
});
