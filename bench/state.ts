// State pipeline benchmark, printed in one run:
//  1. latency from the last manifest PUT of a burst to the signed `latest` being pullable
//     (p50/p95 over BENCH_BURSTS bursts, through `satellite serve` and docker-registry);
//  2. build + sign + publish time for groups of 100, 1,000 and 10,000 artifacts, beside the
//     time skopeo (a stock client, no signing) takes to push the same state artifact;
//  3. states published per second when 200 groups are dirty at once.
import { mkdtemp, rm } from 'node:fs/promises';
import { layerText, stateLayers } from '../core/state/format.js';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startDockerRegistry } from '../harbor-dev/docker-registry.js';
import { createLogger } from '../core/logger.js';
import { Metrics } from '../core/metrics.js';
import { RegistryClient } from '../core/registry/registry-client.js';
import { buildState, renderState } from '../core/state/render.js';
import { ArtifactStore } from '../core/store/artifact-store.js';
import { packageState } from '../worker/state-artifact.js';
import { loadSigningKey } from '../worker/signer.js';
import { startWorker } from '../worker/state-worker.js';
import { createTestDatabase, type TestDatabase } from '../test/support/db.js';
import { basic } from '../test/support/endpoint.js';
import { blob, image, randomLayer, writeLayout, type Blob } from '../test/support/oci.js';
import { freePort, spawnSatellite } from '../test/support/process.js';
import { dropPrefix, REDIS_URL, testPrefix } from '../test/support/redis.js';
import { skopeoCopy } from '../test/support/run.js';
import { KEY_PASSWORD, record, testBuilder, testKeys, workerConfig } from '../test/support/worker.js';

const BURSTS = Number(process.env.BENCH_BURSTS ?? 20);
const BURST_SIZE = Number(process.env.BENCH_BURST_SIZE ?? 20);
const SIZES = (process.env.BENCH_SIZES ?? '100,1000,10000').split(',').map(Number);
const DIRTY_GROUPS = Number(process.env.BENCH_GROUPS ?? 200);

const out = (s = '') => process.stdout.write(`${s}\n`);
const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.ceil((p / 100) * xs.length) - 1)]!;
const ms = (n: number) => `${n.toFixed(0)} ms`;

async function seed(db: TestDatabase, group: string, n: number): Promise<void> {
  // Distinct small images; one shared layer keeps seeding quick.
  const layer = randomLayer(64);
  await Promise.all(Array.from({ length: 8 }, async (_, w) => {
    for (let i = w; i < n; i += 8) await record(db.pool, group, `library/app${i % 100}`, image({ layers: [layer], architecture: `arch${i}` }), `v${i}`);
  }));
}

async function latency(registryUrl: string, keys: Awaited<ReturnType<typeof testKeys>>): Promise<number[]> {
  const db = await createTestDatabase();
  const prefix = testPrefix();
  const port = await freePort();
  const password = 'bench-state-secret-1';
  const serve = await spawnSatellite(['serve'], {
    DATABASE_URL: db.url, REDIS_URL, QUEUE_PREFIX: prefix, HOST: '127.0.0.1', PORT: String(port), METRICS_PORT: '0',
    ENDPOINT_PASSWORD: password, STATE_REGISTRY: registryUrl, COSIGN_KEY: keys.keyPath, COSIGN_PASSWORD: KEY_PASSWORD, LOG_LEVEL: 'info',
  }, 'worker started');
  const client = new RegistryClient(registryUrl);
  const repo = 'satellite/group-state/bench/state';
  const samples: number[] = [];
  try {
    let before = (await client.headManifest(repo, 'latest'))?.digest;
    for (let b = 0; b < BURSTS; b++) {
      let last = 0;
      for (let i = 0; i < BURST_SIZE; i++) {
        const img = image({ layers: [randomLayer(32)] });
        const res = await fetch(`http://127.0.0.1:${port}/v2/bench/library/app${i}/manifests/b${b}`, {
          method: 'PUT', headers: { Authorization: basic('harbor', password), 'Content-Type': img.manifest.mediaType }, body: img.manifest.bytes,
        });
        if (res.status !== 201) throw new Error(`PUT answered ${res.status}`);
        last = performance.now();
      }
      const deadline = Date.now() + 30_000;
      for (;;) {
        const now = (await client.headManifest(repo, 'latest'))?.digest;
        if (now && now !== before) {
          // Pullable: the manifest and the state blob come back.
          const m = (await client.getManifest(repo, 'latest'))!;
          const full = stateLayers(JSON.parse(m.bytes.toString()) as object)!.full;
          const state = JSON.parse(layerText(await client.getBlob(repo, full.digest), full.mediaType));
          const inBurst = state.artifacts.filter((a: { tag: string[] }) => a.tag.includes(`b${b}`)).length;
          if (inBurst === BURST_SIZE) {
            samples.push(performance.now() - last);
            before = now;
            break;
          }
        }
        if (Date.now() > deadline) throw new Error('state did not appear');
        await new Promise((r) => setTimeout(r, 5));
      }
    }
  } finally {
    serve.child.kill('SIGTERM');
    await serve.exited;
    await db.drop();
    await dropPrefix(prefix);
  }
  return samples;
}

async function main(): Promise<void> {
  const registry = await startDockerRegistry();
  const keys = await testKeys();
  const work = await mkdtemp(join(tmpdir(), 'satellite-bench-state-'));
  try {
    out(`1. last PUT of a burst (${BURST_SIZE} manifests) → signed latest pullable, ${BURSTS} bursts, BUILD_DEBOUNCE_MS=500 (default)`);
    const lat = await latency(registry.url, keys);
    out(`   p50 ${ms(pct(lat, 50))}   p95 ${ms(pct(lat, 95))}   min ${ms(Math.min(...lat))}   max ${ms(Math.max(...lat))}`);
    out();

    out('2. one group: build + sign + publish (ours) beside the same artifact pushed by skopeo (no signing)');
    out(`   ${'artifacts'.padEnd(10)}${'render CPU'.padStart(12)}${'state JSON'.padStart(12)}${'ours: total'.padStart(14)}${'skopeo push'.padStart(14)}`);
    for (const n of SIZES) {
      const db = await createTestDatabase();
      try {
        await seed(db, 'big', n);
        const config = workerConfig({ STATE_REGISTRY: registry.url, COSIGN_KEY: keys.keyPath, STATE_PROJECT: `size${n}` });
        const { builder } = testBuilder(config, db.pool, keys);
        const cpu0 = process.cpuUsage();
        const rows = await new ArtifactStore(db.pool).listGroup('big', 168);
        const json = Buffer.from(renderState(buildState('big', config.imageRegistry, rows), 1));
        const cpu = process.cpuUsage(cpu0);
        const t0 = performance.now();
        const result = await builder.build('big');
        const total = performance.now() - t0;
        if (result.artifacts !== n) throw new Error(`built ${result.artifacts} of ${n}`);
        // The peer: skopeo pushing the same package from an OCI layout.
        const pkg = packageState('oci', json, new Date());
        const top: Blob = { ...blob('application/vnd.oci.image.manifest.v1+json', pkg.manifest) };
        const blobs = pkg.blobs.map((b) => blob('application/octet-stream', b.bytes));
        await writeLayout(join(work, `s${n}`), 'state', top, blobs);
        const t1 = performance.now();
        await skopeoCopy(`oci:${join(work, `s${n}`)}:state`, `docker://${registry.host}/peer/size${n}/state:latest`, 'any:any');
        const peer = performance.now() - t1;
        out(`   ${String(n).padEnd(10)}${ms((cpu.user + cpu.system) / 1000).padStart(12)}${`${(json.length / 1024).toFixed(0)} KiB`.padStart(12)}${ms(total).padStart(14)}${ms(peer).padStart(14)}`);
      } finally {
        await db.drop();
      }
    }
    out();

    out(`3. ${DIRTY_GROUPS} dirty groups at once, one worker process (WORKER_CONCURRENCY=4)`);
    const db = await createTestDatabase();
    const prefix = testPrefix();
    try {
      const layer = randomLayer(64);
      for (let g = 0; g < DIRTY_GROUPS; g++) await record(db.pool, `g${g}`, 'library/app', image({ layers: [layer], architecture: `a${g}` }), '1');
      const config = workerConfig({ STATE_REGISTRY: registry.url, COSIGN_KEY: keys.keyPath, REDIS_URL, QUEUE_PREFIX: prefix, BUILD_DEBOUNCE_MS: '0', STATE_PROJECT: 'many' });
      const t0 = performance.now();
      const worker = await startWorker({ config, pool: db.pool, log: createLogger('silent'), metrics: new Metrics(), signingKey: await loadSigningKey(keys.keyPath, KEY_PASSWORD) });
      for (;;) {
        const { rows } = await db.pool.query<{ n: number }>("SELECT count(*)::int AS n FROM state_versions WHERE status = 'published'");
        if (rows[0]!.n >= DIRTY_GROUPS) break;
        await new Promise((r) => setTimeout(r, 20));
      }
      const seconds = (performance.now() - t0) / 1000;
      await worker.stop();
      out(`   ${DIRTY_GROUPS} states signed and published in ${seconds.toFixed(2)} s: ${(DIRTY_GROUPS / seconds).toFixed(1)} states/s`);
    } finally {
      await db.drop();
      await dropPrefix(prefix);
    }
  } finally {
    await registry.stop();
    await rm(keys.dir, { recursive: true, force: true });
    await rm(work, { recursive: true, force: true });
  }
}

main().then(() => process.exit(0), (err) => {
  process.stderr.write(`${(err as Error).stack ?? err}\n`);
  process.exit(1);
});
