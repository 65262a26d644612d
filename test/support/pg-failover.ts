import { execFile } from 'node:child_process';
import { chown, mkdtemp, readdir, rm } from 'node:fs/promises';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { freePort, until } from './process.js';

const exec = promisify(execFile);

// A Postgres primary and a streaming standby of the test's own (Debian's binaries, run as
// the postgres user, on free ports in a temporary directory), with synchronous replication
// so a commit the primary acknowledged is on the standby too. The service reaches them
// through one address, a TCP forwarder standing for what production puts there (a
// Kubernetes Service of CloudNativePG or Patroni, HAProxy, a cloud's writer endpoint):
// a failover crashes the primary, promotes the standby and points the address at it.

export interface PgPair {
  /** postgres://…@<the address>/<database> */
  url(database: string): string;
  /** A client straight to the server that is primary now. */
  primaryUrl(database: string): string;
  failover(): Promise<void>;
  stop(): Promise<void>;
}

async function bin(): Promise<string> {
  const versions = (await readdir('/usr/lib/postgresql')).sort((a, b) => Number(b) - Number(a));
  if (!versions.length) throw new Error('no PostgreSQL server binaries in /usr/lib/postgresql');
  return `/usr/lib/postgresql/${versions[0]}/bin`;
}

export async function startPgPair(): Promise<PgPair> {
  const dir = await mkdtemp(join(tmpdir(), 'satellite-pg-pair-'));
  const { stdout } = await exec('id', ['-u', 'postgres']);
  const [uid, gid] = [Number(stdout.trim()), Number((await exec('id', ['-g', 'postgres'])).stdout.trim())];
  await chown(dir, uid, gid);
  const b = await bin();
  const asPostgres = (cmd: string, args: string[]) => exec('runuser', ['-u', 'postgres', '--', `${b}/${cmd}`, ...args], { cwd: dir });
  const [primaryPort, standbyPort] = [await freePort(), await freePort()];
  // The primary waits for the standby on every commit; the standby, once promoted, has no
  // standby of its own to wait for.
  const options = (port: number, sync: boolean) => [
    `-p ${port}`, '-c listen_addresses=127.0.0.1', `-c unix_socket_directories=${dir}`, '-c wal_level=replica',
    '-c max_wal_senders=4', ...(sync ? ["-c synchronous_standby_names='*'"] : []), '-c fsync=off', '-c shared_buffers=16MB', '-c max_connections=60',
  ].join(' ');
  const primary = join(dir, 'primary');
  const standby = join(dir, 'standby');
  await asPostgres('initdb', ['-D', primary, '-U', 'postgres', '-A', 'trust', '-E', 'UTF8', '--no-sync']);
  await asPostgres('pg_ctl', ['-D', primary, '-l', join(dir, 'primary.log'), '-w', '-o', options(primaryPort, true), 'start']);
  await asPostgres('pg_basebackup', ['-h', '127.0.0.1', '-p', String(primaryPort), '-U', 'postgres', '-D', standby, '-R', '-X', 'stream', '--no-sync']);
  await asPostgres('pg_ctl', ['-D', standby, '-l', join(dir, 'standby.log'), '-w', '-o', options(standbyPort, false), 'start']);
  const direct = (port: number, database: string) => `postgres://postgres@127.0.0.1:${port}/${database}`;
  const query = async (port: number, sql: string) => {
    const c = new pg.Client({ connectionString: direct(port, 'postgres') });
    await c.connect();
    try {
      return (await c.query(sql)).rows;
    } finally {
      await c.end();
    }
  };
  await until('the standby to replicate synchronously', async () =>
    ((await query(primaryPort, "SELECT 1 FROM pg_stat_replication WHERE sync_state = 'sync'")).length === 1 ? true : undefined), 30_000);

  // The address: new connections go to `target`; a failover cuts the open ones.
  let target = primaryPort;
  const sockets = new Set<Socket>();
  const address: Server = createServer((client) => {
    const upstream = connect(target, '127.0.0.1');
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => {
        sockets.delete(s);
        client.destroy();
        upstream.destroy();
      });
      s.on('error', () => undefined);
    }
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((r) => address.listen(0, '127.0.0.1', r));
  const addressPort = (address.address() as { port: number }).port;

  let stopped = false;
  return {
    url: (database) => `postgres://postgres@127.0.0.1:${addressPort}/${database}`,
    primaryUrl: (database) => direct(target, database),
    async failover() {
      // The primary crashes: no shutdown checkpoint, its connections gone.
      await asPostgres('pg_ctl', ['-D', primary, '-m', 'immediate', 'stop']);
      for (const s of sockets) s.destroy();
      await asPostgres('pg_ctl', ['-D', standby, '-w', 'promote']);
      target = standbyPort;
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      for (const s of sockets) s.destroy();
      await new Promise((r) => address.close(r));
      for (const data of [primary, standby]) await asPostgres('pg_ctl', ['-D', data, '-m', 'immediate', 'stop']).catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
    },
  };
}
