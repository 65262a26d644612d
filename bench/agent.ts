// Edge agent benchmark: each figure beside a peer measured in the same run, against the
// same Debian docker-registry, with states built, signed and published by the real worker.
//  1. an unchanged poll: the agent's pass (one HEAD of state:latest) against what a Harbor
//     Satellite satellite does every 30 s: pull the whole state (its manifest and layer);
//  2. syncing N images that share base layers into the agent's store (the bundle, `run
//     --once`), against skopeo copying the same set by digest: `skopeo sync` into dir/, and
//     `skopeo copy` per image into one OCI layout (which shares blobs like the agent's store);
//     2b. memory: the agent's peak RSS syncing them and its RSS idle after, beside `node -e 0`
//     and skopeo's peaks (GNU time's maxrss; /proc for the idle process);
//     2c. CPU (user + sys): an unchanged poll inside a running agent, and a whole `run --once`
//     start on the synced store, beside `skopeo inspect --raw` of the same state manifest;
//  3. bytes fetched again after the process is SIGKILLed in the middle of a large blob and
//     started again: the agent resumes with a Range request, skopeo starts the blob over;
//  4. bytes per state change, one entry changed in a state of BENCH_ENTRIES entries: the whole
//     JSON, its compressed layer, and what the agent's state reader fetched (the delta);
//  5. a group of BENCH_GROUP_ENTRIES (20,000) images, each a manifest and a config of its own:
//     the first sync's and an unchanged pass's peak RSS and CPU, the idle RSS after.
// The agent runs as the Debian package installs it: deploy/debian/satellite-agent, whose V8
// flags are part of what is measured (2b shows the bundle under plain `node` beside it).
//
// Where the agent's memory goes (2026-12-07, 2-core shared machine; --heap-prof, heap
// snapshots, /proc/<pid>/smaps, and bundles built with one part left out):
//  - the runtime: `node -e 0` is 39 MiB, 30 of them the node binary's own pages; an agent
//    that has made an HTTP request touches 37-39 MiB of them. That part is not ours to cut.
//  - the bundle at start: +35 MiB over `node -e 0` before any work. 6 MiB of it were undici,
//    evaluated only to give fetch a dispatcher for caFile (now imported when a CA is set), and
//    3 MiB the source held twice as wide as needed (a ’ in a comment makes V8 keep the whole
//    3 MB file as a two-byte string; agent/bundle.mjs escapes it). What stays, roughly: V8
//    bytecode 4 MiB, the source 3 MiB, express 4-6 MiB, ajv and its compiled schemas 1-2 MiB
//    (and about 30 % of a `run --once` start's CPU: compiling the config and state schemas
//    at every start; a validator precompiled at build time would save both), yaml 1-2, pino
//    and prom-client 1-2, OpenSSL's state some 3 MiB of malloc.
//  - a sync: fetch (Node's built-in undici) parses HTTP with llhttp compiled to WebAssembly;
//    V8 compiles it with Liftoff, then again with TurboFan in the background: that second
//    compilation alone raised the peak by about 30 MiB (--liftoff-only). The young generation
//    (16 MiB semi-spaces by default) let each pull's garbage, chunks of bodies included, pile
//    up for another 20-30 MiB (--max-semi-space-size=1). The buffers in flight are small
//    (a few MiB at concurrency 4: each blob is streamed to its file, with backpressure).
//  - TurboFan for JavaScript and V8's background threads: about 8 MiB idle (--no-opt,
//    --optimize-for-size, --single-threaded). The agent's work is I/O, hashing (native) and
//    JSON (native); its CPU per sync stayed the same within the noise of this machine.
// Where the CPU of a start goes (--cpu-prof of `run --once`, unchanged): compiling the bundle
// (the CJS loader reading and compiling 3 MB: about 30 %), ajv compiling the schemas (about
// 30 %), the rest module initialisation, the store, the HEAD.
// Bytes are counted on the wire (both directions, headers included) by a TCP relay in front
// of the registry, except in 3, which counts the blob's body bytes at the throttling proxy.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, copyFile, mkdir, mkdtemp, readdir, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pLimit from 'p-limit';
import { pino } from 'pino';
import { stringify } from 'yaml';
import { Agent } from '../agent/sync/agent.js';
import { loadAgentConfig } from '../agent/config/config.js';
import { AgentMetrics } from '../agent/metrics.js';
import { readState } from '../agent/sync/state-reader.js';
import { RegistryClient } from '../core/registry/registry-client.js';
import { jsonDigest } from '../core/state/delta.js';
import { DEFAULT_STATE_MAX_MB, layerText, stateLayers } from '../core/state/format.js';
import { startDockerRegistry, type LocalRegistry } from '../harbor-dev/docker-registry.js';
import { pushImage } from '../test/support/agent.js';
import { createTestDatabase, type TestDatabase } from '../test/support/db.js';
import { startFaultProxy } from '../test/support/fault-proxy.js';
import { blob, descriptor, image, layer, randomLayer, type Image } from '../test/support/oci.js';
import { freePort } from '../test/support/process.js';
import { record, testBuilder, testKeys, workerConfig, type TestKeys } from '../test/support/worker.js';

/** What the agent and the CLI accept by default for a state's layer. */
const STATE_LIMIT = DEFAULT_STATE_MAX_MB * 1024 * 1024;

const IMAGES = Number(process.env.BENCH_IMAGES ?? 50);
const BASE_MIB = Number(process.env.BENCH_BASE_MIB ?? 4);
const LAYER_KIB = Number(process.env.BENCH_LAYER_KIB ?? 512);
const BIG_MIB = Number(process.env.BENCH_BIG_MIB ?? 32);
const ENTRIES = Number(process.env.BENCH_ENTRIES ?? 10_000);
const POLLS = Number(process.env.BENCH_POLLS ?? 20);
const GROUP_ENTRIES = Number(process.env.BENCH_GROUP_ENTRIES ?? 20_000);
/** Whole-process runs whose CPU is summed and divided (GNU time counts in 10 ms steps). */
const CPU_RUNS = Number(process.env.BENCH_CPU_RUNS ?? 10);

const BUNDLE = fileURLToPath(new URL('../satellite-agent.cjs', import.meta.url));
const DEB_LAUNCHER = fileURLToPath(new URL('../../deploy/debian/satellite-agent', import.meta.url));
const MiB = 1024 * 1024;
const out = (s = '') => process.stdout.write(`${s}\n`);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const ms = (n: number) => `${n < 10 ? n.toFixed(2) : n.toFixed(0)} ms`;
const size = (n: number) => (n >= MiB ? `${(n / MiB).toFixed(2)} MiB` : n >= 1024 ? `${(n / 1024).toFixed(1)} KiB` : `${n} B`);
const row = (cells: string[], widths: number[]) => `   ${cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('')}`;
const stateRepo = (group: string) => `satellite/group-state/${group}/state`;

/**
 * A TCP relay that counts every byte in both directions, headers included: what a poll
 * costs on the wire. Hand-written: a byte count below HTTP is a few lines of node:net.
 */
async function byteCounter(targetHost: string): Promise<{ url: string; host: string; bytes: () => number; reset: () => void; close: () => Promise<void> }> {
  const [host, port] = targetHost.split(':') as [string, string];
  let bytes = 0;
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    const upstream = createConnection({ host, port: Number(port) });
    sockets.add(client).add(upstream);
    client.on('data', (d: Buffer) => (bytes += d.length));
    upstream.on('data', (d: Buffer) => (bytes += d.length));
    client.pipe(upstream).pipe(client);
    const end = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    for (const s of [client, upstream]) {
      s.on('error', end);
      s.on('close', end);
    }
  });
  const listenPort = await freePort();
  await new Promise<void>((r) => server.listen(listenPort, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${listenPort}`,
    host: `127.0.0.1:${listenPort}`,
    bytes: () => bytes,
    reset: () => void (bytes = 0),
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}

/**
 * Runs a command under GNU time (Debian's `time`, installed by harbor-dev/deps.sh); resolves
 * with its exit code, wall time and peak RSS in MiB (the kernel's maxrss of the process).
 */
function timed(command: string, args: string[]): Promise<{ code: number | null; ms: number; err: string; peakMiB: number; cpuMs: number }> {
  const t0 = performance.now();
  const child = spawn('/usr/bin/time', ['-f', '\nbench-maxrss-kib=%M bench-cpu=%U+%S', command, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-4000)));
  return new Promise((resolve) => child.on('exit', (code) => {
    const kib = Number(/bench-maxrss-kib=(\d+)/.exec(err)?.[1] ?? NaN);
    const cpu = /bench-cpu=([\d.]+)\+([\d.]+)/.exec(err);
    resolve({ code, ms: performance.now() - t0, err, peakMiB: kib / 1024, cpuMs: cpu ? (Number(cpu[1]) + Number(cpu[2])) * 1000 : NaN });
  }));
}

/** A running process's resident memory now and at its peak, in MiB (from /proc). */
async function rssOf(pid: number): Promise<{ now: number; peak: number }> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kib = (field: string) => Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(status)?.[1] ?? NaN);
  return { now: kib('VmRSS') / 1024, peak: kib('VmHWM') / 1024 };
}

/**
 * The agent as the Debian package installs it: its launcher (deploy/debian/satellite-agent,
 * with its V8 flags) in bin/, the bundle in lib/satellite-agent/. Returns the command.
 */
async function debianLayout(work: string): Promise<string> {
  const root = join(work, 'deb-root');
  await mkdir(join(root, 'bin'), { recursive: true });
  await mkdir(join(root, 'lib', 'satellite-agent'), { recursive: true });
  await copyFile(DEB_LAUNCHER, join(root, 'bin', 'satellite-agent'));
  await chmod(join(root, 'bin', 'satellite-agent'), 0o755);
  await symlink(BUNDLE, join(root, 'lib', 'satellite-agent', 'satellite-agent.cjs'));
  return join(root, 'bin', 'satellite-agent');
}

/**
 * CPU (user + sys) of one run of a command, in ms: `runs` runs in a row under one GNU time
 * (which sums its children), divided; a run that fails fails the measure.
 */
async function cpuPerRun(runs: number, command: string, args: string[]): Promise<number> {
  const loop = 'n=$1; shift; i=0; while [ $i -lt $n ]; do "$@" >/dev/null 2>&1 || exit 1; i=$((i+1)); done';
  const r = await timed('sh', ['-c', loop, 'sh', String(runs), command, ...args]);
  must(r, `${runs} runs of ${command}`);
  return r.cpuMs / runs;
}

function must(r: { code: number | null; err: string }, what: string): void {
  if (r.code !== 0) throw new Error(`${what} exited ${r.code}: ${r.err}`);
}

/** Total bytes of the files under `dir`. */
async function treeBytes(dir: string): Promise<number> {
  let n = 0;
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true }).catch(() => [])) {
    if (e.isFile()) n += await stat(join(e.parentPath, e.name)).then((s) => s.size, () => 0);
  }
  return n;
}

async function waitFor(what: string, fn: () => Promise<boolean>, timeoutMs = 120_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await fn())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

interface World {
  registry: LocalRegistry;
  keys: TestKeys;
  db: TestDatabase;
  work: string;
  /** Builds, signs and publishes a group's state, its images named at `imageRegistry`. */
  publish(group: string, imageRegistry: string): Promise<{ version: number; digest: string }>;
  /** An agent configuration file reading states from `stateRegistry` (a relay in front of the registry). */
  agentConfig(name: string, group: string, stateRegistry: string): Promise<string>;
}

async function world(): Promise<World & { close(): Promise<void> }> {
  const registry = await startDockerRegistry();
  const keys = await testKeys();
  const db = await createTestDatabase();
  const work = await mkdtemp(join(tmpdir(), 'satellite-bench-agent-'));
  return {
    registry, keys, db, work,
    async publish(group, imageRegistry) {
      const config = workerConfig({ STATE_REGISTRY: registry.url, IMAGE_REGISTRY: imageRegistry, COSIGN_KEY: keys.keyPath });
      const r = await testBuilder(config, db.pool, keys).builder.build(group);
      if (r.result !== 'published') throw new Error(`state of ${group}: ${r.result}`);
      return { version: r.version, digest: r.digest };
    },
    async agentConfig(name, group, stateRegistry) {
      const dir = join(work, name);
      await mkdir(dir, { recursive: true });
      const path = join(dir, 'agent.yaml');
      await writeFile(path, stringify({
        registry: stateRegistry,
        // The worker signs the state under the registry's own host; the agent reads it through a relay.
        groups: [{ name: group, state: stateRepo(group), publicKey: keys.pubPath, identity: `${registry.host}/${stateRepo(group)}` }],
        platforms: ['linux/amd64'],
        store: join(dir, 'store'),
        listen: '127.0.0.1:0',
        interval: '1h',
        logLevel: 'silent',
      }));
      return path;
    },
    async close() {
      await db.drop();
      await registry.stop();
      await rm(keys.dir, { recursive: true, force: true });
      await rm(work, { recursive: true, force: true });
    },
  };
}

/** N images sharing two base layers, each with one layer of its own. */
function imageSet(): Image[] {
  const base = [layer([{ name: 'base-a.bin', content: randomBytes(Math.ceil((BASE_MIB * MiB) / 2)) }]), layer([{ name: 'base-b.bin', content: randomBytes(Math.floor((BASE_MIB * MiB) / 2)) }])];
  return Array.from({ length: IMAGES }, () => image({ layers: [...base, randomLayer(LAYER_KIB * 1024)] }));
}

const uniqueBytes = (images: Image[]) => {
  const seen = new Map<string, number>();
  for (const img of images) for (const b of [img.manifest, img.config, ...img.layers]) seen.set(b.digest, b.size);
  return [...seen.values()].reduce((a, b) => a + b, 0);
};

/**
 * Pushes `n` images into the registry (one shared layer per repository, a config and a
 * manifest each) and records them in group "huge" as Harbor's replication would. Returns n.
 */
async function bigGroup(w: World, n: number): Promise<number> {
  const client = new RegistryClient(w.registry.url);
  const shared = randomLayer(256);
  const repos = 100;
  for (let r = 0; r < repos; r++) await client.pushBlob(`huge/app${r}`, shared.bytes);
  const slots = pLimit(16);
  await Promise.all(Array.from({ length: n }, (_, i) => slots(async () => {
    const config = blob('application/vnd.oci.image.config.v1+json', Buffer.from(JSON.stringify({
      architecture: 'amd64', os: 'linux', config: { Labels: { entry: String(i) } }, rootfs: { type: 'layers', diff_ids: [shared.diffId] },
    })));
    const manifest = blob('application/vnd.oci.image.manifest.v1+json', Buffer.from(JSON.stringify({
      schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', config: descriptor(config), layers: [descriptor(shared)],
    })));
    const repository = `huge/app${i % repos}`;
    await client.pushBlob(repository, config.bytes, { isNew: true, digest: config.digest });
    await client.putManifest(repository, `v${i}`, manifest.bytes, manifest.mediaType);
    await record(w.db.pool, 'huge', repository, { manifest, config, layers: [shared] }, `v${i}`);
  })));
  return n;
}

const mib = (n: number): string => n.toFixed(1);

async function main(): Promise<void> {
  const w = await world();
  const relay = await byteCounter(w.registry.host);
  try {
    // The synced group: N images in the registry, recorded as Harbor would replicate them.
    const images = imageSet();
    const client = new RegistryClient(w.registry.url);
    for (const [i, img] of images.entries()) {
      await pushImage(client, `bench/app${i}`, img);
      await record(w.db.pool, 'fleet', `bench/app${i}`, img, '1');
    }
    await w.publish('fleet', relay.url);
    const unique = uniqueBytes(images);
    const total = images.reduce((n, img) => n + [img.manifest, img.config, ...img.layers].reduce((a, b) => a + b.size, 0), 0);

    // 2 first: the agent's store it fills is the one polled in 1.
    const fleetConfig = await w.agentConfig('fleet', 'fleet', relay.url);
    const AGENT = await debianLayout(w.work);
    relay.reset();
    const agentRun = await timed(AGENT, ['run', '--once', '--config', fleetConfig]);
    must(agentRun, 'the agent');
    const agentBytes = relay.bytes();

    const yamlPath = join(w.work, 'sync.yaml');
    await writeFile(yamlPath, stringify({ [relay.host]: { 'tls-verify': false, images: Object.fromEntries(images.map((img, i) => [`bench/app${i}`, [img.manifest.digest]])) } }));
    relay.reset();
    const syncRun = await timed('skopeo', ['--insecure-policy', 'sync', '--src', 'yaml', '--dest', 'dir', '--retry-times', '0', yamlPath, join(w.work, 'skopeo-sync')]);
    must(syncRun, 'skopeo sync');
    const syncBytes = relay.bytes();

    relay.reset();
    const t0 = performance.now();
    const copyRuns: number[] = [];
    for (const [i, img] of images.entries()) {
      must(await timed('skopeo', ['--insecure-policy', 'copy', '--src-tls-verify=false', '--retry-times', '0', `docker://${relay.host}/bench/app${i}@${img.manifest.digest}`, `oci:${join(w.work, 'skopeo-oci')}:app${i}`]).then((r) => (copyRuns.push(r.peakMiB), r)), 'skopeo copy');
    }
    const copyMs = performance.now() - t0;
    const copyBytes = relay.bytes();
    const copyPeakMiB = Math.max(...copyRuns);

    // The same sync by the bundle under plain `node` (no launcher flags), into a store of its own.
    const plainRun = await timed(process.execPath, [BUNDLE, 'run', '--once', '--config', await w.agentConfig('fleet-plain', 'fleet', relay.url)]);
    must(plainRun, 'the agent under plain node');

    // The agent idle: the long-running agent on the store it just filled, after its first
    // (unchanged) pass and a few seconds; beside it, the runtime alone (`node -e 0`).
    const idleOf = async (command: string, args: string[]) => {
      const idle = spawn(command, [...args, 'run', '--config', fleetConfig], { stdio: 'ignore' });
      await new Promise((r) => setTimeout(r, 5000));
      const rss = await rssOf(idle.pid!);
      idle.kill('SIGTERM');
      await new Promise((r) => idle.once('exit', r));
      return rss;
    };
    const idleRss = await idleOf(AGENT, []);
    const plainIdle = await idleOf(process.execPath, [BUNDLE]);
    const nodeOnly = await timed(process.execPath, ['-e', '0']);
    const nodeCpu = await cpuPerRun(CPU_RUNS, process.execPath, ['-e', '0']);

    // CPU of a start: `run --once` on the synced store (unchanged: one HEAD, the store checked,
    // nothing pulled), against `skopeo inspect --raw` of the same state manifest (its whole
    // process: a HEAD would be less, but skopeo has no lighter command).
    const onceCpu = await cpuPerRun(CPU_RUNS, AGENT, ['run', '--once', '--config', fleetConfig]);
    const onceRun = await timed(AGENT, ['run', '--once', '--config', fleetConfig]);
    must(onceRun, 'the agent, unchanged');
    const inspectArgs = ['inspect', '--raw', '--tls-verify=false', `docker://${relay.host}/${stateRepo('fleet')}:latest`];
    const inspectCpu = await cpuPerRun(CPU_RUNS, 'skopeo', inspectArgs);
    const inspectRun = await timed('skopeo', inspectArgs);
    must(inspectRun, 'skopeo inspect');

    // 1. The agent's unchanged pass on the store it just filled, in process (what each interval runs).
    const agent = new Agent(loadAgentConfig(fleetConfig, {}), pino({ level: 'silent' }), new AgentMetrics());
    await agent.open();
    const pollMs: number[] = [];
    const pollCpuMs: number[] = [];
    relay.reset();
    for (let i = 0; i < POLLS; i++) {
      const t = performance.now();
      const c = process.cpuUsage();
      const s = await agent.syncOnce();
      const used = process.cpuUsage(c);
      pollCpuMs.push((used.user + used.system) / 1000);
      pollMs.push(performance.now() - t);
      if (s.groups.fleet !== 'unchanged') throw new Error(`a poll of an unchanged state was ${s.groups.fleet}`);
    }
    const pollBytes = relay.bytes() / POLLS;
    // The HEAD alone, as the agent's registry client sends it.
    const headClient = new RegistryClient(relay.url);
    const headMs: number[] = [];
    relay.reset();
    for (let i = 0; i < POLLS; i++) {
      const t = performance.now();
      await headClient.headManifest(stateRepo('fleet'), 'latest');
      headMs.push(performance.now() - t);
    }
    const headBytes = relay.bytes() / POLLS;

    // The 10k-entry group of 4, published now so that 1 can pull it too.
    const shared = randomLayer(64);
    const many: Image[] = [];
    for (let i = 0; i < ENTRIES; i++) many.push(image({ layers: [shared], architecture: `arch${i}` }));
    await Promise.all(Array.from({ length: 8 }, async (_, k) => {
      for (let i = k; i < ENTRIES; i += 8) await record(w.db.pool, 'big', `library/app${i % 100}`, many[i]!, `v${i}`);
    }));
    const v1 = await w.publish('big', w.registry.url);

    /** What a Harbor Satellite satellite does every interval: the state's manifest, then its whole layer. */
    const satellitePoll = async (group: string) => {
      const samples: number[] = [];
      relay.reset();
      for (let i = 0; i < POLLS; i++) {
        const t = performance.now();
        const m = await fetch(`${relay.url}/v2/${stateRepo(group)}/manifests/latest`, { headers: { Accept: 'application/vnd.oci.image.manifest.v1+json' } });
        const full = stateLayers(JSON.parse(await m.text()) as object)!.full;
        await (await fetch(`${relay.url}/v2/${stateRepo(group)}/blobs/${full.digest}`)).arrayBuffer();
        samples.push(performance.now() - t);
      }
      return { ms: median(samples), bytes: relay.bytes() / POLLS };
    };
    const peerFleet = await satellitePoll('fleet');
    const peerBig = await satellitePoll('big');

    out(`1. unchanged poll (median of ${POLLS}; bytes on the wire, both directions, headers included)`);
    const w1 = [56, 12, 12];
    out(row(['', 'time', 'bytes'], w1));
    out(row(['agent: HEAD state:latest (any state size)', ms(median(headMs)), size(headBytes)], w1));
    out(row(['agent: its whole pass (HEAD, store scan, status saved)', ms(median(pollMs)), size(pollBytes)], w1));
    out(row([`Harbor Satellite: GET whole state, ${IMAGES} entries`, ms(peerFleet.ms), size(peerFleet.bytes)], w1));
    out(row([`Harbor Satellite: GET whole state, ${ENTRIES} entries`, ms(peerBig.ms), size(peerBig.bytes)], w1));
    out(`   (the peer is given our gzip'd state layer; each 30 s poll costs it that much, the agent ${size(pollBytes)})`);
    out();

    out(`2. sync ${IMAGES} images by digest, ${BASE_MIB} MiB of shared base layers + ${LAYER_KIB} KiB each: ${size(unique)} unique, ${size(total)} counting shared layers per image`);
    const w2 = [52, 12, 14];
    out(row(['', 'wall time', 'bytes'], w2));
    out(row(['agent, run --once (verifies the state first)', ms(agentRun.ms), size(agentBytes)], w2));
    out(row(['skopeo sync --src yaml --dest dir (by digest)', ms(syncRun.ms), size(syncBytes)], w2));
    out(row([`skopeo copy ×${IMAGES} by digest into one OCI layout`, ms(copyMs), size(copyBytes)], w2));
    out();
    out('2b. memory: peak RSS (the kernel\'s maxrss, GNU time) and the idle agent\'s RSS (/proc)');
    const w2b = [52, 12];
    out(row(['', 'MiB'], w2b));
    out(row([`agent, run --once, syncing ${IMAGES} images: peak`, mib(agentRun.peakMiB)], w2b));
    out(row(['agent, run, idle after its first pass: now', mib(idleRss.now)], w2b));
    out(row(['agent, run, idle after its first pass: peak', mib(idleRss.peak)], w2b));
    out(row(['node -e 0 (the runtime alone): peak', mib(nodeOnly.peakMiB)], w2b));
    out(row(['skopeo sync: peak', mib(syncRun.peakMiB)], w2b));
    out(row([`skopeo copy ×${IMAGES}: the largest peak of one`, mib(copyPeakMiB)], w2b));
    out(row([`agent bundle under plain node (no launcher flags), syncing: peak`, mib(plainRun.peakMiB)], w2b));
    out(row(['agent bundle under plain node, idle: now', mib(plainIdle.now)], w2b));
    out(`   (the agent runs through the Debian package's launcher, deploy/debian/satellite-agent, and its V8 flags)`);
    out();
    out(`2c. CPU (user + sys) on the synced store; whole processes: mean of ${CPU_RUNS} runs`);
    const w2c = [60, 12, 12];
    out(row(['', 'CPU', 'peak RSS'], w2c));
    out(row(['agent: one unchanged poll in a running agent (in process)', ms(pollCpuMs.reduce((a, b) => a + b, 0) / pollCpuMs.length), ''], w2c));
    out(row(['agent: run --once, unchanged (start, HEAD, store, exit)', ms(onceCpu), `${mib(onceRun.peakMiB)} MiB`], w2c));
    out(row(['skopeo inspect --raw of the same state manifest', ms(inspectCpu), `${mib(inspectRun.peakMiB)} MiB`], w2c));
    out(row(['node -e 0', ms(nodeCpu), `${mib(nodeOnly.peakMiB)} MiB`], w2c));
    out();

    // 3. Killed in the middle of a large blob, then started again.
    const proxy = await startFaultProxy(w.registry.url);
    try {
      const big = layer([{ name: 'big.bin', content: randomBytes(BIG_MIB * MiB) }]);
      const bigImage = image({ layers: [big] });
      await pushImage(client, 'bench/big', bigImage);
      await record(w.db.pool, 'resume', 'bench/big', bigImage, '1');
      await w.publish('resume', proxy.url);
      const rate = Math.max(64 * 1024, Math.floor(big.size / 4)); // about 4 s for the whole blob
      const blobBytes = () => proxy.answers.filter((a) => a.request.endsWith(big.digest)).reduce((n, a) => n + a.bytes, 0);
      const throttle = () => proxy.rules.push({ method: 'GET', path: new RegExp(`/blobs/${big.digest}$`), fault: 'throttle', times: 1, bytesPerSecond: rate });

      const resumeConfig = await w.agentConfig('resume', 'resume', w.registry.url);
      const store = join(w.work, 'resume', 'store');
      throttle();
      const first = spawn(process.execPath, [BUNDLE, 'run', '--once', '--config', resumeConfig], { stdio: 'ignore' });
      const partial = join(store, 'ingest', `sha256-${big.digest.slice(7)}.partial`);
      await waitFor('half the blob in the agent\'s store', async () => ((await stat(partial).catch(() => undefined))?.size ?? 0) > big.size / 2);
      first.kill('SIGKILL');
      await new Promise((r) => first.once('exit', r));
      const agentKept = (await stat(partial)).size;
      proxy.answers.length = 0;
      must(await timed(process.execPath, [BUNDLE, 'run', '--once', '--config', resumeConfig]), 'the agent, restarted');
      const agentAgain = blobBytes();

      const dest = join(w.work, 'skopeo-resume');
      await mkdir(dest, { recursive: true });
      const args = ['--insecure-policy', 'copy', '--src-tls-verify=false', '--retry-times', '0', `docker://${proxy.host}/bench/big@${bigImage.manifest.digest}`, `oci:${dest}:big`];
      proxy.answers.length = 0;
      throttle();
      const skopeo = spawn('skopeo', args, { stdio: 'ignore' });
      await waitFor('half the blob in skopeo\'s layout', async () => (await treeBytes(dest)) > big.size / 2);
      skopeo.kill('SIGKILL');
      await new Promise((r) => skopeo.once('exit', r));
      await waitFor('the first transfer recorded', async () => proxy.answers.some((a) => a.request.endsWith(big.digest)), 10_000);
      const skopeoFirst = blobBytes();
      proxy.answers.length = 0;
      must(await timed('skopeo', args), 'skopeo, restarted');
      const skopeoAgain = blobBytes();

      out(`3. killed (SIGKILL) in the middle of a ${size(big.size)} blob, then started again: the blob's bytes fetched the second time`);
      const w3 = [30, 22, 22, 10];
      out(row(['', 'had before the kill', 'fetched again', 'of blob'], w3));
      out(row(['agent (Range from the partial)', size(agentKept), size(agentAgain), `${((100 * agentAgain) / big.size).toFixed(0)} %`], w3));
      out(row(['skopeo copy', `${size(skopeoFirst)} received`, size(skopeoAgain), `${((100 * skopeoAgain) / big.size).toFixed(0)} %`], w3));
      out();
    } finally {
      await proxy.close();
    }

    // 4. One entry changed in the big state: a tag added to one image.
    await record(w.db.pool, 'big', 'library/app0', many[0]!, 'moved');
    const v2 = await w.publish('big', w.registry.url);
    const reader = new RegistryClient(relay.url);
    const stateClient = new RegistryClient(w.registry.url);
    const m1 = stateLayers(JSON.parse((await stateClient.getManifest(stateRepo('big'), v1.digest))!.bytes.toString()) as object)!;
    const json1 = layerText(await stateClient.getBlob(stateRepo('big'), m1.full.digest, STATE_LIMIT), m1.full.mediaType);
    const m2 = stateLayers(JSON.parse((await stateClient.getManifest(stateRepo('big'), v2.digest))!.bytes.toString()) as object)!;
    const json2 = layerText(await stateClient.getBlob(stateRepo('big'), m2.full.digest, STATE_LIMIT), m2.full.mediaType);
    const group = loadAgentConfig(await w.agentConfig('big', 'big', relay.url), {}).groups[0]!;
    relay.reset();
    const t4 = performance.now();
    const head = await reader.headManifest(stateRepo('big'), 'latest');
    const read = await readState(reader, group, head!.digest, { stateDigest: jsonDigest(json1), json: json1 }, STATE_LIMIT);
    const readMs = performance.now() - t4;
    const wire = relay.bytes();
    if (read.via !== 'delta' || read.state.version !== v2.version) throw new Error(`the agent read version ${read.state.version} via ${read.via}`);
    const deltaText = m2.delta ? layerText(await stateClient.getBlob(stateRepo('big'), m2.delta.descriptor.digest, STATE_LIMIT), m2.delta.descriptor.mediaType) : '';

    out(`4. one entry changed (a tag added) in a state of ${ENTRIES} entries, version ${v1.version} → ${v2.version}`);
    const w4 = [52, 14];
    out(row(['whole state JSON, uncompressed', size(Buffer.byteLength(json2))], w4));
    out(row(['whole state layer, gzip (what a full read fetches)', size(m2.full.size)], w4));
    out(row([`delta layer, gzip (${size(Buffer.byteLength(deltaText))} uncompressed)`, size(m2.delta?.descriptor.size ?? 0)], w4));
    out(row([`agent on the wire: HEAD, manifest, signature, delta`, size(wire)], w4));
    out(`   the agent rebuilt version ${read.state.version} from the delta in ${ms(readMs)} (signature checked, digest of the result matched)`);

    // 5. A group of GROUP_ENTRIES entries: images of one shared layer, each with a config of
    // its own (so each is a manifest and a config to fetch), in 100 repositories.
    const entries = await bigGroup(w, GROUP_ENTRIES);
    await w.publish('huge', w.registry.url);
    const hugeConfig = await w.agentConfig('huge', 'huge', w.registry.url);
    const hugeFirst = await timed(AGENT, ['run', '--once', '--config', hugeConfig]);
    must(hugeFirst, `the agent syncing ${entries} entries`);
    const hugeAgain = await timed(AGENT, ['run', '--once', '--config', hugeConfig]);
    must(hugeAgain, `the agent, ${entries} entries unchanged`);
    const hugeIdleProc = spawn(AGENT, ['run', '--config', hugeConfig], { stdio: 'ignore' });
    await new Promise((r) => setTimeout(r, 8000));
    const hugeIdle = await rssOf(hugeIdleProc.pid!);
    hugeIdleProc.kill('SIGTERM');
    await new Promise((r) => hugeIdleProc.once('exit', r));
    const hugeState = await readFile(join(w.work, 'huge', 'store', 'agent-state.json')).then((b) => b.length, () => 0);

    out();
    out(`5. a group of ${entries} entries (each image a manifest and a config of its own, one shared layer), the agent through its launcher`);
    const w5 = [52, 12, 12, 12];
    out(row(['', 'wall time', 'CPU', 'peak RSS'], w5));
    out(row(['first sync, run --once into an empty store', ms(hugeFirst.ms), ms(hugeFirst.cpuMs), `${mib(hugeFirst.peakMiB)} MiB`], w5));
    out(row(['unchanged pass, run --once again', ms(hugeAgain.ms), ms(hugeAgain.cpuMs), `${mib(hugeAgain.peakMiB)} MiB`], w5));
    out(row(['run, idle after its first (unchanged) pass: now', '', '', `${mib(hugeIdle.now)} MiB`], w5));
    out(row(['node -e 0', '', ms(nodeCpu), `${mib(nodeOnly.peakMiB)} MiB`], w5));
    out(`   (agent-state.json after the sync: ${size(hugeState)})`);
  } finally {
    await relay.close();
    await w.close();
  }
}

// Output piped into `head` must not kill the run before it stops its registry and drops its database.
process.stdout.on('error', () => undefined);
main().then(() => process.exit(0), (err) => {
  process.stderr.write(`${(err as Error).stack ?? err}\n`);
  process.exit(1);
});
