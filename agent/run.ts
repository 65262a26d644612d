import type { Server } from 'node:http';
import type { RegistryClient } from '../core/registry/registry-client.js';
import { pino, type Logger } from 'pino';
import { Agent, type SyncSummary } from './sync/agent.js';
import type { AgentConfig } from './config/config.js';
import { AgentMetrics } from './metrics.js';
import { checkContainerdConfig, writeMirrorFiles } from './runtime/mirrors.js';
import { sendReport } from './sync/report.js';
import { agentApp, listen, localUrl } from './serve/server.js';
import { lockStore } from './store/lock.js';

// Running the agent: one process per store (store/lock.ts), the local server first (what was
// applied before is served at once, online or not), then the sync loop: a jittered interval,
// exponential backoff while the registry is unreachable or the store is full, SIGHUP for a
// sync now, SIGTERM to stop. While the store is full its free space is looked at every
// interval (a statfs, no request), and the sync resumes as soon as room appears.

const MAX_BACKOFF_MS = 10 * 60 * 1000;

/**
 * When to poll next: the interval, doubled for each pass in a row that could not reach the
 * registry or found the store full (up to 10 minutes, never below the interval), and spread
 * ±10 % so a fleet restarted together does not poll in step.
 */
export function nextDelay(intervalMs: number, unreachablePasses: number, random = Math.random()): number {
  const base = unreachablePasses > 0 ? Math.max(intervalMs, Math.min(intervalMs * 2 ** unreachablePasses, MAX_BACKOFF_MS)) : intervalMs;
  return base * (0.9 + random * 0.2);
}

export function agentLogger(config: AgentConfig): Logger {
  return pino({ name: 'satellite-agent', level: config.logLevel, base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime });
}

export interface RunningAgent {
  agent: Agent;
  url: string;
  server: Server;
  /** Resolves with the first sync's summary. */
  firstSync: Promise<SyncSummary>;
  stop(): Promise<void>;
}

export async function startAgent(config: AgentConfig, log: Logger = agentLogger(config), opts: { once?: boolean; only?: string; random?: () => number; source?: RegistryClient } = {}): Promise<RunningAgent> {
  const metrics = new AgentMetrics();
  const agent = new Agent(config, log, metrics);
  agent.source = opts.source;
  await agent.store.init();
  const unlock = await lockStore(config.store);
  try {
    await agent.open();
  } catch (err) {
    await unlock();
    throw err;
  }
  // --once serves nothing, but the mirror files it writes name where the long-running agent
  // will listen (`listen`), so a device provisioned with one sync is ready for its runtime.
  const { server, url } = opts.once ? { server: undefined as unknown as Server, url: localUrl(config.listen.host, config.listen.port) } : await listen(agentApp(agent), config.listen.host, config.listen.port, config.server.idleTimeoutMs);
  if (!opts.once) log.info({ url, groups: config.groups.map((g) => g.name), platforms: config.platforms }, 'serving the local store');

  let timer: NodeJS.Timeout | undefined;
  let roomWatch: NodeJS.Timeout | undefined;
  let stopped = false;
  let running: Promise<SyncSummary> | undefined;
  let failures = 0;
  const mirror = { url, location: url.replace(/^https?:\/\//, ''), insecure: url.startsWith('http://') };

  const pass = async (scheduled: boolean): Promise<SyncSummary> => {
    const summary = await agent.syncOnce(opts.only, { scheduled });
    await afterSync(agent, config, mirror, log);
    if (config.report) await sendReport(agent, config, log);
    return summary;
  };
  const schedule = (summary: SyncSummary | undefined) => {
    if (stopped || opts.once) return;
    const outcomes = Object.values(summary?.groups ?? {});
    const unreachable = outcomes.length > 0 && outcomes.every((o) => o === 'unreachable');
    failures = unreachable || summary?.storeFull ? failures + 1 : 0;
    timer = setTimeout(() => void tick(true), nextDelay(config.intervalMs, failures, (opts.random ?? Math.random)()));
    if (summary?.storeFull) {
      roomWatch = setInterval(() => {
        void agent.space.roomAgain().then((room) => {
          if (!room || stopped) return;
          log.info({ bytesFree: agent.space.record()?.bytesFree }, 'space freed in the store: syncing now');
          void tick(true).catch(() => undefined);
        });
      }, config.intervalMs);
    }
  };
  /** `scheduled`: by the interval (failed images wait for their backoff), not asked for. */
  const tick = async (scheduled = false) => {
    if (running) return running;
    clearTimeout(timer);
    clearInterval(roomWatch);
    running = pass(scheduled);
    try {
      const s = await running;
      schedule(s);
      return s;
    } catch (err) {
      log.error({ err: (err as Error).message }, 'sync failed');
      metrics.failures.inc({ where: 'sync' });
      schedule(undefined);
      throw err;
    } finally {
      running = undefined;
    }
  };
  const onHup = () => {
    log.info('SIGHUP: syncing now');
    void tick().catch(() => undefined);
  };
  if (!opts.once) process.on('SIGHUP', onHup);

  const firstSync = tick();
  return {
    agent,
    url,
    server,
    firstSync,
    async stop() {
      stopped = true;
      clearTimeout(timer);
      clearInterval(roomWatch);
      process.off('SIGHUP', onHup);
      await running?.catch(() => undefined);
      if (server) {
        server.closeAllConnections();
        await new Promise((r) => server.close(r));
      }
      await unlock();
    },
  };
}

/** After each pass: the runtime mirror files, and containerd's config check for the status. */
async function afterSync(agent: Agent, config: AgentConfig, mirror: { url: string; location: string; insecure: boolean }, log: Logger): Promise<void> {
  try {
    const changed = await writeMirrorFiles(config, agent.registryOrigins(), mirror);
    for (const path of changed) log.info({ path }, 'mirror configuration written');
  } catch (err) {
    agent.metrics.failures.inc({ where: 'mirror' });
    log.error({ err: (err as Error).message }, 'cannot write the mirror configuration');
  }
  if (config.mirrors.containerd) {
    const problem = await checkContainerdConfig(config.mirrors.containerdConfig, config.mirrors.containerd);
    const before = agent.doc.runtime?.containerd;
    agent.doc.runtime = { containerd: problem ?? 'reads the mirror entries' };
    if (problem && problem !== before) log.warn({ hint: problem }, 'containerd will not use the local mirror');
    await agent.files.save(agent.doc);
  }
}
