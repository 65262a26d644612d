import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { pino } from 'pino';
import { loadAgentConfig, type AgentConfig } from '../../agent/config/config.js';
import { startAgent, type RunningAgent } from '../../agent/run.js';
import type { RegistryClient } from '../../core/registry/registry-client.js';
import { createTestDatabase, type TestDatabase } from './db.js';
import { startFaultProxy, type FaultProxy } from './fault-proxy.js';
import { stopChild } from './process.js';
import { image, index, randomLayer, type Image, type Index } from './oci.js';
import { KEY_PASSWORD, record, testBuilder, useRegistryAndKeys, workerConfig } from './worker.js';
import { KeySigner } from '../../worker/signer.js';
import { AgentStateFiles, type AgentStateDoc } from '../../agent/store/state-files.js';
import { loadPrivateKey } from '../../core/cosign/keys.js';

// A small Harbor for the agent's tests: a real docker-registry holds the images (as Harbor's
// registry does) and the states the real worker builds, signs and publishes from the records
// of a real Postgres database; the agent reads both from it.

/** The agent as it ships: one bundled file (`npm run build:agent`). */
export const BUNDLE = 'dist/satellite-agent.cjs';

/**
 * Runs the agent bundle as a device would; resolves with its exit code and output. With
 * `shell`, runs that command line instead, in a mount namespace of its own (for a tmpfs).
 */
export function runBundle(args: string[], opts: { shell?: string } = {}): Promise<{ code: number | null; out: string }> {
  const child = opts.shell
    ? spawn('unshare', ['-m', '--propagation', 'private', 'sh', '-c', opts.shell], { stdio: ['ignore', 'pipe', 'pipe'] })
    : spawn(process.execPath, [BUNDLE, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  return new Promise((resolve) => child.on('exit', (code) => resolve({ code, out })));
}

/**
 * An agent's status document as `satellite agent status` reads it: the snapshot
 * (agent-state.json) with its journal replayed; `{ groups: {} }` before the agent wrote any.
 */
export async function readAgentState(store: string): Promise<AgentStateDoc> {
  return new AgentStateFiles(store).load('test');
}

/** Pushes an image's blobs and manifest into a real registry, by digest and (optionally) by tag. */
export async function pushImage(client: RegistryClient, repository: string, img: Image, tag?: string): Promise<void> {
  for (const b of [img.config, ...img.layers]) await client.pushBlob(repository, b.bytes);
  await client.putManifest(repository, img.manifest.digest, img.manifest.bytes, img.manifest.mediaType);
  if (tag) await client.putManifest(repository, tag, img.manifest.bytes, img.manifest.mediaType);
}

export async function pushIndex(client: RegistryClient, repository: string, idx: Index, tag?: string): Promise<void> {
  for (const c of idx.children) await pushImage(client, repository, c);
  await client.putManifest(repository, idx.manifest.digest, idx.manifest.bytes, idx.manifest.mediaType);
  if (tag) await client.putManifest(repository, tag, idx.manifest.bytes, idx.manifest.mediaType);
}

export interface AgentWorld {
  readonly db: TestDatabase;
  readonly registryUrl: string;
  readonly registryHost: string;
  readonly publicPem: string;
  /** What the worker uses: record what Harbor replicated, then build a group's state. */
  publish(group: string, imageRegistry?: string): Promise<{ version: number; digest: string; result: string }>;
  record(group: string, repository: string, img: Image, tag: string | null): Promise<void>;
  client(): RegistryClient;
  /** Signs a manifest digest with the group's key, as the worker would. */
  sign(repository: string, digest: string): Promise<void>;
  /** An agent configuration (YAML written to a temp dir, loaded as the agent would). */
  config(overrides?: Record<string, unknown>, group?: Record<string, unknown>): Promise<AgentConfig>;
  configFile(overrides?: Record<string, unknown>, group?: Record<string, unknown>): Promise<string>;
  /** Starts an agent in this process (`random`: the jitter's draws, Math.random by default). */
  start(config: AgentConfig, opts?: { random?: () => number }): Promise<RunningAgent>;
  /** A temp dir removed after the tests. */
  dir(): Promise<string>;
}

/** Registry, keys and database for a describe block; a fresh database per test. */
export function useAgentWorld(): AgentWorld {
  const shared = useRegistryAndKeys();
  const dirs: string[] = [];
  const running: RunningAgent[] = [];
  let db: TestDatabase;
  beforeEach(async () => {
    db = await createTestDatabase();
  });
  afterEach(async () => {
    for (const a of running.splice(0)) await a.stop();
    await db?.drop();
    for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
  });
  const builder = (imageRegistry = shared.registry.url) =>
    testBuilder(workerConfig({ STATE_REGISTRY: shared.registry.url, IMAGE_REGISTRY: imageRegistry, COSIGN_KEY: shared.keys.keyPath }), db.pool, shared.keys);
  const dir = async () => {
    const d = await mkdtemp(join(tmpdir(), 'satellite-agent-'));
    dirs.push(d);
    return d;
  };
  const configFile = async (overrides: Record<string, unknown> = {}, group: Record<string, unknown> = {}) => {
    const d = await dir();
    const doc = {
      registry: shared.registry.url,
      groups: [{ name: 'edge', state: 'satellite/group-state/edge/state', publicKey: shared.keys.publicPem, ...group }],
      platforms: ['linux/amd64'],
      store: join(d, 'store'),
      listen: '127.0.0.1:0',
      interval: '1h',
      logLevel: 'silent',
      ...overrides,
    };
    const path = join(d, 'agent.yaml');
    await writeFile(path, stringify(doc));
    return path;
  };
  return {
    get db() {
      return db;
    },
    get registryUrl() {
      return shared.registry.url;
    },
    get registryHost() {
      return shared.registry.host;
    },
    get publicPem() {
      return shared.keys.publicPem;
    },
    async publish(group, imageRegistry) {
      const r = await builder(imageRegistry).builder.build(group);
      return { version: r.version, digest: r.digest, result: r.result };
    },
    record: (group, repository, img, tag) => record(db.pool, group, repository, img, tag),
    client: () => builder().client,
    async sign(repository, digest) {
      const client = builder().client;
      await new KeySigner(client, loadPrivateKey(shared.keys.privatePem, KEY_PASSWORD)).sign(repository, digest);
    },
    configFile,
    async config(overrides, group) {
      return loadAgentConfig(await configFile(overrides, group), {});
    },
    async start(config, opts = {}) {
      const a = await startAgent(config, pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' }), opts);
      running.push(a);
      return a;
    },
    dir,
  };
}

/**
 * Group `edge` with a two-platform index (library/multi:1) and two images sharing a layer
 * (library/app:2, library/tool:3), pushed to the world's registry, recorded, and published
 * and signed by the real worker: what the export tests archive.
 */
export async function publishTwoPlatformGroup(world: AgentWorld) {
  const client = world.client();
  const multi = index([{ os: 'linux', architecture: 'amd64' }, { os: 'linux', architecture: 'arm64' }]);
  await pushIndex(client, 'library/multi', multi, '1');
  for (const c of multi.children) await world.record('edge', 'library/multi', c, null);
  await world.record('edge', 'library/multi', { manifest: multi.manifest, config: multi.manifest, layers: [] }, '1');
  const shared = randomLayer(4096);
  const app = image({ layers: [shared, randomLayer()] });
  const tool = image({ layers: [shared, randomLayer()] });
  await pushImage(client, 'library/app', app, '2');
  await pushImage(client, 'library/tool', tool, '3');
  await world.record('edge', 'library/app', app, '2');
  await world.record('edge', 'library/tool', tool, '3');
  const published = await world.publish('edge');
  return { multi, app, tool, shared, published };
}

/**
 * A site's two links to the registry, each a fault proxy that counts and breaks on demand:
 * the gateway's (`gwWan`) and a device's (`devWan`), new for every test; and the config of
 * an agent reaching the registry (states and images) through one of them.
 */
export function useSiteLinks(world: AgentWorld, stateRepository: string) {
  const links = {} as { gwWan: FaultProxy; devWan: FaultProxy };
  beforeEach(async () => {
    links.gwWan = await startFaultProxy(world.registryUrl);
    links.devWan = await startFaultProxy(world.registryUrl);
  });
  afterEach(async () => {
    await links.gwWan.close();
    await links.devWan.close();
  });
  const agentConfig = (wan: FaultProxy, extra: Record<string, unknown> = {}): Promise<AgentConfig> =>
    world.config(
      // A generous upstream timeout (the machine is shared) except where a test is about it.
      { registry: wan.url, registryAliases: { [world.registryUrl]: wan.url }, concurrency: 2, timeout: '30s', upstreamTimeout: '10s', ...extra },
      // The worker signs naming the registry it published to, not the proxy's name.
      { identity: `${world.registryHost}/${stateRepository}` },
    );
  return { links, agentConfig };
}

/**
 * The agent as a device runs it (the bundle's `run`), reaching the registry through a
 * counting fault proxy made for each test (`proxy()`), beside the agent world; `start` runs
 * it with a config file and gathers what it logs. Both are stopped after each test.
 */
export function useBundledAgent() {
  let proxy: FaultProxy | undefined;
  let child: ChildProcess | undefined;
  // Registered before the world's hooks, which remove the store's directory.
  afterEach(async () => {
    await stopChild(child);
    child = undefined;
    await proxy?.close();
    proxy = undefined;
  });
  const world = useAgentWorld();
  beforeEach(async () => {
    proxy = await startFaultProxy(world.registryUrl);
  });
  return {
    world,
    proxy: (): FaultProxy => proxy!,
    start(configFile: string): { log: () => string } {
      let log = '';
      child = spawn(process.execPath, [BUNDLE, 'run', '--config', configFile], { stdio: ['ignore', 'pipe', 'pipe'] });
      child.stdout!.on('data', (d: Buffer) => (log += d.toString()));
      child.stderr!.on('data', (d: Buffer) => (log += d.toString()));
      return { log: () => log };
    },
  };
}
