// Site benchmark: five edge agents at one site (separate stores and ports, on loopback)
// behind one "WAN": a counting HTTP proxy in front of the Debian docker-registry, which holds
// the images and the group's state (built, signed and published by the real worker from the
// records of a real Postgres, as bench/agent.ts does). The group: BENCH_IMAGES images
// sharing BENCH_BASE_MIB of base layers, BENCH_LAYER_KIB of their own each. Each agent runs
// the bundle as a device would; a run ends when every agent has the group's state applied
// with all its images (`run --once` exits 0, or the gateway's /status says so).
//  (a) no upstreams: the 5 agents started at once, each straight to the WAN: about 5× the
//      group's bytes cross it;
//  (b) one gateway + 4 devices with `upstreams: [<gateway>]`: the gateway (a long-running
//      `satellite agent run`, listening on a fixed loopback port) is started first; once its
//      /status shows the group applied, the 4 devices run `run --once` at once. Only what the
//      gateway fetched should cross the WAN: about 1×, plus each device's poll of the state's
//      tag and whatever the devices fetch before the gateway holds it (none, here);
//  (b') the same 5 agents, fresh stores, all started at once: the devices ask the gateway
//      first; what it does not hold yet but its verified state names, it fetches for them
//      once (agent/serve/pull-through.ts), so about 1× again (2026-12-07: 1.00×; before
//      pull-through, as many WAN bytes as (a)).
// Printed: WAN bytes (response bodies) and requests per kind of path, the time until every
// agent converged, for each run, and (b)/(a). (b) and (b') need the agent's `upstreams`
// option (config.ts); without it they say so and only (a) is measured.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { request, createServer, type IncomingMessage, type Server } from 'node:http';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { AgentConfigError, loadAgentConfig } from '../agent/config/config.js';
import { RegistryClient } from '../core/registry/registry-client.js';
import { startDockerRegistry } from '../harbor-dev/docker-registry.js';
import { pushImage } from '../test/support/agent.js';
import { createTestDatabase } from '../test/support/db.js';
import { image, layer, randomLayer, type Image } from '../test/support/oci.js';
import { freePort } from '../test/support/process.js';
import { record, testBuilder, testKeys, workerConfig } from '../test/support/worker.js';

const IMAGES = Number(process.env.BENCH_IMAGES ?? 50);
const BASE_MIB = Number(process.env.BENCH_BASE_MIB ?? 4);
const LAYER_KIB = Number(process.env.BENCH_LAYER_KIB ?? 512);
const DEVICES = 4;
const GROUP = 'site';
const STATE_REPO = `satellite/group-state/${GROUP}/state`;
const BUNDLE = fileURLToPath(new URL('../satellite-agent.cjs', import.meta.url));
const MiB = 1024 * 1024;
const out = (s = '') => process.stdout.write(`${s}\n`);
const size = (n: number) => (n >= MiB ? `${(n / MiB).toFixed(2)} MiB` : n >= 1024 ? `${(n / 1024).toFixed(1)} KiB` : `${n} B`);
const row = (cells: string[], widths: number[]) => `   ${cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('')}`;

type Kind = 'state manifests' | 'state blobs' | 'image manifests' | 'image blobs' | 'other';
const KINDS: Kind[] = ['state manifests', 'state blobs', 'image manifests', 'image blobs', 'other'];

/** What one run sent over the WAN, per kind of path: requests, and response body bytes. */
type Counts = Record<Kind, { requests: number; bytes: number }>;

function kindOf(path: string): Kind {
  const m = /^\/v2\/(.+)\/(manifests|blobs)\/[^/]+$/.exec(path);
  if (!m) return 'other';
  const state = m[1]!.startsWith('satellite/group-state/');
  return `${state ? 'state' : 'image'} ${m[2] as 'manifests' | 'blobs'}`;
}

/**
 * The "WAN": an HTTP proxy in front of the registry that counts requests and response body
 * bytes per kind of path (the state's repository or the images'; manifests or blobs).
 * Hand-written: counting per path needs the HTTP layer, and forwarding one request is a few
 * lines of node:http.
 */
async function countingProxy(target: string): Promise<{ url: string; counts: () => Counts; reset: () => void; close: () => Promise<void> }> {
  const to = new URL(target);
  let counts = emptyCounts();
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0]!;
    const c = counts[kindOf(path)];
    c.requests++;
    const upstream = request({ host: to.hostname, port: to.port, method: req.method, path: req.url, headers: { ...req.headers, host: to.host } }, (answer: IncomingMessage) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      answer.on('data', (d: Buffer) => (c.bytes += d.length));
      answer.pipe(res);
    });
    upstream.on('error', (err) => {
      if (!res.headersSent) res.writeHead(502).end(err.message);
      else res.destroy(err);
    });
    req.pipe(upstream);
  });
  const port = await freePort();
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${port}`,
    counts: () => counts,
    reset: () => void (counts = emptyCounts()),
    close: async () => {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
}

function emptyCounts(): Counts {
  return Object.fromEntries(KINDS.map((k) => [k, { requests: 0, bytes: 0 }])) as Counts;
}

const total = (c: Counts, what: 'requests' | 'bytes') => KINDS.reduce((n, k) => n + c[k][what], 0);

/** N images sharing two base layers, each with one layer of its own (bench/agent.ts's set). */
function imageSet(): Image[] {
  const base = [layer([{ name: 'base-a.bin', content: randomBytes(Math.ceil((BASE_MIB * MiB) / 2)) }]), layer([{ name: 'base-b.bin', content: randomBytes(Math.floor((BASE_MIB * MiB) / 2)) }])];
  return Array.from({ length: IMAGES }, () => image({ layers: [...base, randomLayer(LAYER_KIB * 1024)] }));
}

/** Runs the bundle; resolves with its exit code and the end of its output. */
function runOnce(config: string): { child: ChildProcess; done: Promise<{ code: number | null; ms: number; err: string }> } {
  const t0 = performance.now();
  const child = spawn(process.execPath, [BUNDLE, 'run', '--once', '--config', config], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-4000)));
  return { child, done: new Promise((resolve) => child.on('exit', (code) => resolve({ code, ms: performance.now() - t0, err }))) };
}

/** Polls the long-running gateway's /status until the group is applied at `version` with every image present. */
async function converged(url: string, version: number, child: ChildProcess, timeoutMs = 600_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`the gateway exited ${child.exitCode}`);
    const doc = await fetch(`${url}/status`).then((r) => (r.ok ? r.json() : undefined), () => undefined) as
      { groups?: Record<string, { applied?: { version: number }; images?: Record<string, { status: string }> }> } | undefined;
    const g = doc?.groups?.[GROUP];
    const images = Object.values(g?.images ?? {});
    if (g?.applied?.version === version && images.length === IMAGES && images.every((i) => i.status === 'present')) return;
    if (Date.now() > deadline) throw new Error('timed out waiting for the gateway to converge');
    await new Promise((r) => setTimeout(r, 25));
  }
}

async function main(): Promise<void> {
  const registry = await startDockerRegistry();
  const keys = await testKeys();
  const db = await createTestDatabase();
  const work = await mkdtemp(join(tmpdir(), 'satellite-bench-site-'));
  const wan = await countingProxy(registry.url);
  const running = new Set<ChildProcess>();
  try {
    const images = imageSet();
    const client = new RegistryClient(registry.url);
    for (const [i, img] of images.entries()) {
      await pushImage(client, `bench/app${i}`, img);
      await record(db.pool, GROUP, `bench/app${i}`, img, '1');
    }
    // The state names the images at the WAN's address: every agent pulls them through it.
    const published = await testBuilder(workerConfig({ STATE_REGISTRY: registry.url, IMAGE_REGISTRY: wan.url, COSIGN_KEY: keys.keyPath }), db.pool, keys).builder.build(GROUP);
    if (published.result !== 'published') throw new Error(`the state: ${published.result}`);
    const unique = new Map<string, number>();
    for (const img of images) for (const b of [img.manifest, img.config, ...img.layers]) unique.set(b.digest, b.size);
    const groupBytes = [...unique.values()].reduce((a, b) => a + b, 0);

    let n = 0;
    /** A fresh agent: its own store and port; `upstreams` given, the site's gateway first. */
    const agentConfig = async (extra: Record<string, unknown> = {}, port?: number): Promise<string> => {
      const dir = join(work, `agent${++n}`);
      await mkdir(dir, { recursive: true });
      const path = join(dir, 'agent.yaml');
      await writeFile(path, stringify({
        registry: wan.url,
        // The worker signs the state under the registry's own host; the agents read it through the WAN.
        groups: [{ name: GROUP, state: STATE_REPO, publicKey: keys.pubPath, identity: `${registry.host}/${STATE_REPO}` }],
        platforms: ['linux/amd64'],
        store: join(dir, 'store'),
        listen: `127.0.0.1:${port ?? 0}`,
        interval: '1h',
        logLevel: 'warn',
        mirrors: { containerd: join(dir, 'certs.d'), containerdConfig: join(dir, 'none', 'config.toml') },
        ...extra,
      }));
      return path;
    };

    // (a) 5 agents, no upstreams, started at once.
    wan.reset();
    const t0 = performance.now();
    const plain = await Promise.all(Array.from({ length: DEVICES + 1 }, async () => runOnce(await agentConfig())));
    for (const p of plain) running.add(p.child);
    for (const r of await Promise.all(plain.map((p) => p.done))) if (r.code !== 0) throw new Error(`(a) an agent exited ${r.code}: ${r.err}`);
    const a = { counts: wan.counts(), ms: performance.now() - t0 };

    // (b) needs `upstreams` (the site's gateway, tried before the registry).
    const probe = await agentConfig({ upstreams: ['http://127.0.0.1:9'] });
    let upstreamsMissing: string | undefined;
    try {
      loadAgentConfig(probe, {});
    } catch (err) {
      // Only the option's absence is expected here; any other problem is the bench's own.
      const named = err instanceof AgentConfigError ? err.problems.find((p) => p.includes('upstreams')) : undefined;
      if (!named) throw err;
      upstreamsMissing = named;
    }

    /** One gateway and 4 devices naming it; `together`: all started at once, else the gateway converged first. */
    const site = async (together: boolean) => {
      const port = await freePort();
      const gwUrl = `http://127.0.0.1:${port}`;
      const gwConfig = await agentConfig({ server: { pullThrough: true } }, port);
      const devices = await Promise.all(Array.from({ length: DEVICES }, () => agentConfig({ upstreams: [gwUrl] })));
      wan.reset();
      const start = performance.now();
      const gw = spawn(process.execPath, [BUNDLE, 'run', '--config', gwConfig], { stdio: ['ignore', 'ignore', 'inherit'] });
      running.add(gw);
      let gatewayMs = NaN;
      const gatewayDone = converged(gwUrl, published.version, gw).then(() => (gatewayMs = performance.now() - start));
      if (!together) await gatewayDone;
      const runs = devices.map((d) => runOnce(d));
      for (const r of runs) running.add(r.child);
      for (const r of await Promise.all(runs.map((x) => x.done))) if (r.code !== 0) throw new Error(`a device exited ${r.code}: ${r.err}`);
      await gatewayDone;
      const ms = performance.now() - start;
      const counts = wan.counts();
      gw.kill('SIGTERM');
      await new Promise((r) => (gw.exitCode !== null ? r(undefined) : gw.once('exit', r)));
      return { counts, ms, gatewayMs };
    };
    const b = upstreamsMissing ? undefined : await site(false);
    const together = upstreamsMissing ? undefined : await site(true);

    out(`site: ${DEVICES + 1} agents at one site, one group of ${IMAGES} images (${BASE_MIB} MiB of shared base layers + ${LAYER_KIB} KiB each): ${size(groupBytes)} of images`);
    out('WAN = a counting HTTP proxy in front of the registry; bytes are response bodies; time = until every agent converged');
    out();
    const runs: [string, { counts: Counts; ms: number } | undefined][] = [
      [`(a) ${DEVICES + 1} agents, no upstreams, at once`, a],
      [`(b) gateway first, then ${DEVICES} devices with upstreams`, b],
      [`(b') gateway and ${DEVICES} devices started at once`, together],
    ];
    const w = [48, 14, 12, 12];
    out(row(['', 'WAN bytes', 'requests', 'time'], w));
    for (const [name, r] of runs) {
      out(row([name, r ? size(total(r.counts, 'bytes')) : '—', r ? String(total(r.counts, 'requests')) : '—', r ? `${(r.ms / 1000).toFixed(1)} s` : '—'], w));
    }
    if (b) out(row(['   (b): of which the gateway alone, converging', '', '', `${(b.gatewayMs / 1000).toFixed(1)} s`], w));
    out();
    out('per kind of path (requests / bytes)');
    const wk = [18, 26, 26, 26];
    out(row(['', '(a)', '(b)', '(b\')'], wk));
    for (const k of KINDS) {
      out(row([k, ...runs.map(([, r]) => (r ? `${r.counts[k].requests} / ${size(r.counts[k].bytes)}` : '—'))], wk));
    }
    out();
    const ratio = (r: { counts: Counts }) => (total(r.counts, 'bytes') / groupBytes).toFixed(2);
    out(`WAN bytes / the group's image bytes: (a) ${ratio(a)}×${b ? `, (b) ${ratio(b)}×` : ''}${together ? `, (b') ${ratio(together)}×` : ''}`);
    if (b) out(`(b) / (a): ${(total(b.counts, 'bytes') / total(a.counts, 'bytes')).toFixed(3)} of the bytes, ${(b.ms / a.ms).toFixed(2)} of the time`);
    if (upstreamsMissing) out(`(b) and (b') not measured: this agent has no \`upstreams\` option (the configuration says: ${upstreamsMissing})`);
  } finally {
    for (const c of running) if (c.exitCode === null) c.kill('SIGKILL');
    await wan.close();
    await db.drop();
    await registry.stop();
    await rm(keys.dir, { recursive: true, force: true });
    await rm(work, { recursive: true, force: true });
  }
}

// Output piped into `head` must not kill the run before it stops its registry and drops its database.
process.stdout.on('error', () => undefined);
main().then(() => process.exit(0), (err) => {
  process.stderr.write(`${(err as Error).stack ?? err}\n`);
  process.exit(1);
});
