// One state build in a process of its own, so bench:state can report the worker's peak
// memory for it (VmHWM): reads its settings from BENCH_BUILD (JSON), builds the group once
// with the worker's own builder, prints {"ms", "result", "peakRssMiB"} on stdout.
import { readFile } from 'node:fs/promises';
import { loadConfig } from '../core/config.js';
import { createPool } from '../core/db/pool.js';
import { createLogger } from '../core/logger.js';
import { RegistryClient } from '../core/registry/registry-client.js';
import { KeySigner, loadSigningKey } from '../worker/signer.js';
import { makeBuilder } from '../worker/state-worker.js';

interface Settings {
  databaseUrl: string;
  group: string;
  stateRegistry: string;
  stateProject: string;
  keyPath: string;
  keyPassword: string;
}

async function main(): Promise<void> {
  const s = JSON.parse(process.env.BENCH_BUILD ?? '{}') as Settings;
  const config = loadConfig({
    DATABASE_URL: s.databaseUrl, STATE_REGISTRY: s.stateRegistry, STATE_PROJECT: s.stateProject, IMAGE_REGISTRY: 'https://harbor.example.com',
    COSIGN_KEY: s.keyPath, COSIGN_PASSWORD: s.keyPassword, LOG_LEVEL: 'silent',
  });
  const pool = createPool(config.databaseUrl, 4);
  const client = new RegistryClient(config.stateRegistry);
  const key = await loadSigningKey(s.keyPath, s.keyPassword);
  const builder = makeBuilder(config, pool, client, new KeySigner(client, key.key), createLogger('silent'));
  try {
    const t0 = performance.now();
    const result = await builder.build(s.group);
    const ms = performance.now() - t0;
    const status = await readFile('/proc/self/status', 'utf8');
    const peakRssMiB = Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? NaN) / 1024;
    process.stdout.write(`${JSON.stringify({ ms, result, peakRssMiB })}\n`);
  } finally {
    await pool.end();
  }
}

main().then(() => process.exit(0), (err) => {
  process.stderr.write(`${(err as Error).stack ?? err}\n`);
  process.exit(1);
});
