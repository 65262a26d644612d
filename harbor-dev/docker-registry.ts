import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

// Debian's docker-registry (distribution 2.8) on loopback, with its own storage directory:
// the real OCI registry that stands in for Harbor's registry in tests and benchmarks.

export interface LocalRegistry {
  url: string;
  host: string;
  pid: number;
  process: ChildProcess;
  stop(): Promise<void>;
}

/**
 * TEST_PORTS="lo-hi": the ports tests and benchmarks may listen on (beside other work that
 * owns other ports); undefined when unset (any port the kernel picks).
 */
export function portRange(env: NodeJS.ProcessEnv = process.env): { lo: number; hi: number } | undefined {
  const v = env.TEST_PORTS;
  if (!v) return undefined;
  const m = /^(\d+)-(\d+)$/.exec(v);
  const lo = Number(m?.[1]);
  const hi = Number(m?.[2]);
  if (!m || lo < 1024 || hi > 65535 || lo > hi) throw new Error(`TEST_PORTS=${JSON.stringify(v)}: expected a range such as 40000-40999 (1024-65535)`);
  return { lo, hi };
}

function tryListen(port: number): Promise<number | undefined> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(undefined));
    s.listen(port, '127.0.0.1', () => {
      const { port: got } = s.address() as { port: number };
      s.close(() => resolve(got));
    });
  });
}

/** A TCP port nothing listens on right now, on loopback (within TEST_PORTS when set). */
export async function freePort(): Promise<number> {
  const range = portRange();
  if (!range) {
    const port = await tryListen(0);
    if (port === undefined) throw new Error('no free port on 127.0.0.1');
    return port;
  }
  // From a random start, so that concurrent callers rarely pick the same one.
  const size = range.hi - range.lo + 1;
  const start = Math.floor(Math.random() * size);
  for (let i = 0; i < size; i++) {
    const port = await tryListen(range.lo + ((start + i) % size));
    if (port !== undefined) return port;
  }
  throw new Error(`no free port in TEST_PORTS=${range.lo}-${range.hi}`);
}

export async function startDockerRegistry(binary = 'docker-registry'): Promise<LocalRegistry> {
  const dir = await mkdtemp(join(tmpdir(), 'satellite-registry-'));
  const port = await freePort();
  const config = join(dir, 'config.yml');
  await writeFile(config, [
    'version: 0.1',
    'log:',
    '  level: error',
    '  accesslog:',
    '    disabled: true',
    'storage:',
    '  filesystem:',
    `    rootdirectory: ${join(dir, 'data')}`,
    '  delete:',
    '    enabled: true',
    'http:',
    `  addr: 127.0.0.1:${port}`,
    '',
  ].join('\n'));
  const child = spawn(binary, ['serve', config], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 15_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`docker-registry exited: ${stderr}`);
    try {
      const res = await fetch(`${url}/v2/`);
      if (res.status === 200) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`docker-registry did not answer on ${url}: ${stderr}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    url,
    host: `127.0.0.1:${port}`,
    pid: child.pid!,
    process: child,
    async stop() {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        await exited;
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}
