import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { freePort, until } from './process.js';

// A highly available Redis of the test's own, in a temporary directory on free ports: a
// master, a replica of it, and three Debian `redis-sentinel`s watching them (quorum 2), all
// with passwords. The master can be killed; the sentinels then promote the replica.

export const MASTER_NAME = 'satellite-test';

export interface SentinelSet {
  /** REDIS_SENTINELS' value. */
  sentinels: string;
  password: string;
  sentinelPassword: string;
  masterPort: number;
  replicaPort: number;
  /** The master's port as the sentinels name it now. */
  currentMasterPort(): Promise<number>;
  /** SIGKILLs the master (no persistence: what it held that the replica had not is gone). */
  killMaster(): Promise<void>;
  stop(): Promise<void>;
}

export async function startSentinels(): Promise<SentinelSet> {
  const dir = await mkdtemp(join(tmpdir(), 'satellite-sentinel-'));
  const password = 'redis-password-for-tests';
  const sentinelPassword = 'sentinel-password-for-tests';
  const [masterPort, replicaPort] = [await freePort(), await freePort()];
  const sentinelPorts = [await freePort(), await freePort(), await freePort()];
  const children = new Map<string, ChildProcess>();
  const start = (name: string, command: string, args: string[]) => {
    const child = spawn(command, args, { stdio: 'ignore', cwd: dir });
    children.set(name, child);
  };
  const server = (port: number, extra: string[]) => [
    '--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--maxmemory-policy', 'noeviction',
    '--requirepass', password, '--masterauth', password, '--dir', dir, '--dbfilename', `dump-${port}.rdb`, ...extra,
  ];
  const answers = (port: number, auth: string) => until(`redis on ${port}`, async () => {
    const r = new Redis(port, '127.0.0.1', { password: auth, maxRetriesPerRequest: 0, lazyConnect: true, retryStrategy: () => null });
    r.on('error', () => undefined);
    try {
      await r.connect();
      return (await r.ping()) === 'PONG' ? true : undefined;
    } finally {
      r.disconnect();
    }
  }, 10_000);

  start('master', 'redis-server', server(masterPort, []));
  start('replica', 'redis-server', server(replicaPort, ['--replicaof', '127.0.0.1', String(masterPort)]));
  await answers(masterPort, password);
  await answers(replicaPort, password);
  for (const port of sentinelPorts) {
    const conf = join(dir, `sentinel-${port}.conf`);
    await writeFile(conf, [
      `port ${port}`, 'bind 127.0.0.1', 'daemonize no', `dir ${dir}`, `requirepass ${sentinelPassword}`,
      `sentinel monitor ${MASTER_NAME} 127.0.0.1 ${masterPort} 2`,
      `sentinel auth-pass ${MASTER_NAME} ${password}`,
      `sentinel down-after-milliseconds ${MASTER_NAME} 1000`,
      `sentinel failover-timeout ${MASTER_NAME} 5000`,
      `sentinel parallel-syncs ${MASTER_NAME} 1`,
      '',
    ].join('\n'));
    start(`sentinel-${port}`, 'redis-sentinel', [conf]);
  }
  for (const port of sentinelPorts) await answers(port, sentinelPassword);

  const ask = async <T>(port: number, fn: (r: Redis) => Promise<T>): Promise<T> => {
    const r = new Redis(port, '127.0.0.1', { password: sentinelPassword, maxRetriesPerRequest: 0, lazyConnect: true, retryStrategy: () => null });
    r.on('error', () => undefined);
    try {
      await r.connect();
      return await fn(r);
    } finally {
      r.disconnect();
    }
  };
  // Ready when every sentinel knows the replica and the two other sentinels (a failover
  // needs a majority of them to agree).
  await until('the sentinels to know each other and the replica', async () => {
    for (const port of sentinelPorts) {
      const ok = await ask(port, async (r) => {
        const others = (await r.call('SENTINEL', 'SENTINELS', MASTER_NAME)) as unknown[];
        const replicas = (await r.call('SENTINEL', 'REPLICAS', MASTER_NAME)) as unknown[];
        return others.length === 2 && replicas.length === 1;
      }).catch(() => false);
      if (!ok) return undefined;
    }
    return true;
  }, 30_000);

  const stopChild = async (child: ChildProcess | undefined) => {
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGKILL');
    await exited;
  };
  return {
    sentinels: sentinelPorts.map((p) => `127.0.0.1:${p}`).join(','),
    password,
    sentinelPassword,
    masterPort,
    replicaPort,
    async currentMasterPort() {
      const [, port] = (await ask(sentinelPorts[0]!, (r) => r.call('SENTINEL', 'GET-MASTER-ADDR-BY-NAME', MASTER_NAME))) as [string, string];
      return Number(port);
    },
    killMaster: () => stopChild(children.get('master')),
    async stop() {
      for (const child of children.values()) await stopChild(child);
      await rm(dir, { recursive: true, force: true });
    },
  };
}
