// State builds in a process of their own, so bench:state can report the worker's memory:
// reads its settings from BENCH_BUILD (JSON) and, with the worker's own builder, builds
// (BENCH_BUILD.phases "first,next"):
//   first      the group's first version (nothing kept: the whole group read);
//   next       the next version after one change, with what the first build kept;
// or ("cold-next"), in a process of its own:
//   cold-next  the version after one change, by a worker that kept nothing (just started):
//              the published version's kept package taken up, the changes since read.
// Prints one JSON line per build: {"phase", "ms", "cpuMs", "result", "peakRssMiB"} (this
// process's CPU time and peak RSS sampled during that build), then {"phase":"process","peakRssMiB"} (VmHWM).
import { readFile } from 'node:fs/promises';
import { loadConfig, type Config } from '../core/config.js';
import { createPool, type Pool } from '../core/db/pool.js';
import { createLogger } from '../core/logger.js';
import { parseManifest } from '../core/oci/manifest.js';
import { RegistryClient } from '../core/registry/registry-client.js';
import { ArtifactStore } from '../core/store/artifact-store.js';
import { image, randomLayer } from '../test/support/oci.js';
import { KeySigner, loadSigningKey, type SigningKey } from '../worker/signer.js';
import { makeBuilder } from '../worker/state-worker.js';

interface Settings {
  databaseUrl: string;
  group: string;
  stateRegistry: string;
  stateProject: string;
  keyPath: string;
  keyPassword: string;
  phases: string;
}

const builder = (config: Config, pool: Pool, key: SigningKey) => {
  const client = new RegistryClient(config.stateRegistry);
  return makeBuilder(config, pool, client, new KeySigner(client, key.key), createLogger('silent'));
};

async function change(pool: Pool, group: string): Promise<void> {
  const img = image({ layers: [randomLayer(64)] });
  await new ArtifactStore(pool).recordManifest({ group, repository: 'library/app0' }, parseManifest(img.manifest.bytes, img.manifest.mediaType), `one-more-${Date.now()}`);
}

async function timed(phase: string, fn: () => Promise<unknown>): Promise<void> {
  let peak = process.memoryUsage().rss;
  const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 5);
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const result = await fn();
  const ms = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  clearInterval(sampler);
  peak = Math.max(peak, process.memoryUsage().rss);
  process.stdout.write(`${JSON.stringify({ phase, ms, cpuMs: (cpu.user + cpu.system) / 1000, result, peakRssMiB: peak / 1024 / 1024 })}\n`);
}

async function main(): Promise<void> {
  const s = JSON.parse(process.env.BENCH_BUILD ?? '{}') as Settings;
  const config = loadConfig({
    DATABASE_URL: s.databaseUrl, STATE_REGISTRY: s.stateRegistry, STATE_PROJECT: s.stateProject, IMAGE_REGISTRY: 'https://harbor.example.com',
    COSIGN_KEY: s.keyPath, COSIGN_PASSWORD: s.keyPassword, LOG_LEVEL: 'silent',
  });
  const pool = createPool(config.databaseUrl, 4);
  const key = await loadSigningKey(s.keyPath, s.keyPassword);
  try {
    const b = builder(config, pool, key);
    if (s.phases === 'cold-next') {
      await change(pool, s.group);
      await timed('cold-next', () => b.build(s.group));
    } else {
      await timed('first', () => b.build(s.group));
      await change(pool, s.group);
      await timed('next', () => b.build(s.group));
    }
    const status = await readFile('/proc/self/status', 'utf8');
    process.stdout.write(`${JSON.stringify({ phase: 'process', peakRssMiB: Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? NaN) / 1024 })}\n`);
  } finally {
    await pool.end();
  }
}

main().then(() => process.exit(0), (err) => {
  process.stderr.write(`${(err as Error).stack ?? err}\n`);
  process.exit(1);
});
