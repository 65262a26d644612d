// Ingest benchmark: the same skopeo pushes of N images (several layers each) into the
// Satellite endpoint and into Debian's docker-registry, in one run, printed side by side.
//
//   npm run bench:ingest               N=200 images, 4 layers of 256 KiB, 4 pushes at a time
//   BENCH_IMAGES=500 BENCH_CONCURRENCY=8 npm run bench:ingest
import { readFile, mkdtemp, rm, mkdir, writeFile } from 'node:fs/promises';
import { createConnection, createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startDockerRegistry } from '../harbor-dev/docker-registry.js';
import { createTestDatabase } from '../test/support/db.js';
import { descriptor, image, randomLayer, type Blob } from '../test/support/oci.js';
import { freePort, spawnSatellite } from '../test/support/process.js';
import { skopeoCopy } from '../test/support/run.js';

const N = Number(process.env.BENCH_IMAGES ?? 200);
const LAYERS = Number(process.env.BENCH_LAYERS ?? 4);
const LAYER_BYTES = Number(process.env.BENCH_LAYER_BYTES ?? 256 * 1024);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 4);
const PASSWORD = 'bench-secret-0123456789';

/** A TCP relay that counts the bytes clients send through it. */
async function countingProxy(targetPort: number): Promise<{ port: number; received: () => number; close: () => Promise<void> }> {
  let received = 0;
  const server: Server = createServer((client) => {
    const upstream = createConnection({ host: '127.0.0.1', port: targetPort });
    client.on('data', (d: Buffer) => (received += d.length));
    client.pipe(upstream).pipe(client);
    const end = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on('error', end);
    upstream.on('error', end);
    client.on('close', end);
    upstream.on('close', end);
  });
  const port = await freePort();
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
  return { port, received: () => received, close: () => new Promise((r) => server.close(() => r())) };
}

async function peakRssMiB(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kb = Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? NaN);
  return kb / 1024;
}

async function writeLayout(dir: string): Promise<{ refs: string[]; manifests: Blob[] }> {
  await mkdir(join(dir, 'blobs', 'sha256'), { recursive: true });
  await writeFile(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  const refs: string[] = [];
  const manifests: Blob[] = [];
  const entries: unknown[] = [];
  const put = (b: Blob) => writeFile(join(dir, 'blobs', 'sha256', b.digest.slice(7)), b.bytes);
  for (let i = 0; i < N; i++) {
    const img = image({ layers: Array.from({ length: LAYERS }, () => randomLayer(LAYER_BYTES)) });
    for (const b of [img.manifest, img.config, ...img.layers]) await put(b);
    const ref = `img-${i}`;
    refs.push(ref);
    manifests.push(img.manifest);
    entries.push(descriptor(img.manifest, { annotations: { 'org.opencontainers.image.ref.name': ref } }));
  }
  await writeFile(join(dir, 'index.json'), JSON.stringify({ schemaVersion: 2, manifests: entries }));
  return { refs, manifests };
}

const RAW_ROUNDS = Number(process.env.BENCH_RAW_ROUNDS ?? 10);
const RAW_CONCURRENCY = Number(process.env.BENCH_RAW_CONCURRENCY ?? 16);

/**
 * The server side alone: the manifests skopeo pushed, PUT again under new tags straight
 * over HTTP (keep-alive, RAW_CONCURRENCY at a time); their blobs are already in place.
 */
async function rawPuts(base: string, authorization: string, manifests: Blob[]): Promise<{ seconds: number; p50: number; p99: number; count: number }> {
  const jobs = Array.from({ length: RAW_ROUNDS }, (_, r) => manifests.map((m, i) => ({ m, path: `/v2/bench/library/app${i % 20}/manifests/raw${r}-${i}` }))).flat();
  const latencies: number[] = [];
  let next = 0;
  const started = performance.now();
  await Promise.all(Array.from({ length: RAW_CONCURRENCY }, async () => {
    while (next < jobs.length) {
      const { m, path } = jobs[next++]!;
      const t = performance.now();
      const res = await fetch(base + path, { method: 'PUT', headers: { Authorization: authorization, 'Content-Type': m.mediaType }, body: m.bytes });
      await res.arrayBuffer();
      if (res.status !== 201) throw new Error(`PUT ${path} answered ${res.status}`);
      latencies.push(performance.now() - t);
    }
  }));
  const seconds = (performance.now() - started) / 1000;
  latencies.sort((a, b) => a - b);
  return { seconds, count: jobs.length, p50: latencies[Math.floor(latencies.length * 0.5)]!, p99: latencies[Math.floor(latencies.length * 0.99)]! };
}

async function pushAll(layout: string, refs: string[], host: string, creds: string): Promise<number> {
  const started = process.hrtime.bigint();
  let next = 0;
  await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
    while (next < refs.length) {
      const i = next++;
      await skopeoCopy(`oci:${layout}:${refs[i]}`, `docker://${host}/bench/library/app${i % 20}:${refs[i]}`, creds);
    }
  }));
  return Number(process.hrtime.bigint() - started) / 1e9;
}

async function main(): Promise<void> {
  const work = await mkdtemp(join(tmpdir(), 'satellite-bench-'));
  const db = await createTestDatabase();
  const registry = await startDockerRegistry();
  const port = await freePort();
  const endpoint = await spawnSatellite(['adapter'], {
    DATABASE_URL: db.url, PORT: String(port), HOST: '127.0.0.1', ENDPOINT_PASSWORD: PASSWORD, LOG_LEVEL: 'info',
  }, 'endpoint listening');
  try {
    process.stdout.write(`building ${N} images of ${LAYERS} layers x ${LAYER_BYTES} bytes...\n`);
    const layout = join(work, 'layout');
    const { refs, manifests } = await writeLayout(layout);
    const viaEndpoint = await countingProxy(port);
    const viaRegistry = await countingProxy(Number(registry.host.split(':')[1]));

    process.stdout.write(`pushing with skopeo, ${CONCURRENCY} at a time...\n`);
    const endpointSeconds = await pushAll(layout, refs, `127.0.0.1:${viaEndpoint.port}`, `harbor:${PASSWORD}`);
    const registrySeconds = await pushAll(layout, refs, `127.0.0.1:${viaRegistry.port}`, 'any:any');

    const { rows } = await db.pool.query<{ n: string }>('SELECT count(*) AS n FROM artifacts');
    if (Number(rows[0]!.n) !== N) throw new Error(`endpoint recorded ${rows[0]!.n} manifests, expected ${N}`);

    const row = (label: string, a: string, b: string) => process.stdout.write(`${label.padEnd(30)}${a.padStart(18)}${b.padStart(20)}\n`);
    const mib = (n: number) => `${(n / 1024 / 1024).toFixed(2)} MiB`;
    process.stdout.write('\n');
    row(`ingest: ${N} images, skopeo x${CONCURRENCY}`, 'satellite endpoint', 'docker-registry 2.8');
    row('wall time', `${endpointSeconds.toFixed(2)} s`, `${registrySeconds.toFixed(2)} s`);
    row('manifests per second', (N / endpointSeconds).toFixed(1), (N / registrySeconds).toFixed(1));
    row('bytes received', mib(viaEndpoint.received()), mib(viaRegistry.received()));
    row('peak RSS', `${(await peakRssMiB(endpoint.child.pid!)).toFixed(1)} MiB`, `${(await peakRssMiB(registry.pid)).toFixed(1)} MiB`);
    row('layer bytes pushed by clients', mib(0), mib(N * LAYERS * LAYER_BYTES));

    const ours = await rawPuts(`http://127.0.0.1:${port}`, `Basic ${Buffer.from(`harbor:${PASSWORD}`).toString('base64')}`, manifests);
    const theirs = await rawPuts(registry.url, 'Basic ' + Buffer.from('any:any').toString('base64'), manifests);
    process.stdout.write('\n');
    row(`manifest PUTs over HTTP, x${RAW_CONCURRENCY}`, 'satellite endpoint', 'docker-registry 2.8');
    row('PUTs per second', `${(ours.count / ours.seconds).toFixed(0)}`, `${(theirs.count / theirs.seconds).toFixed(0)}`);
    row('latency p50 / p99', `${ours.p50.toFixed(1)} / ${ours.p99.toFixed(1)} ms`, `${theirs.p50.toFixed(1)} / ${theirs.p99.toFixed(1)} ms`);
    row('peak RSS after', `${(await peakRssMiB(endpoint.child.pid!)).toFixed(1)} MiB`, `${(await peakRssMiB(registry.pid)).toFixed(1)} MiB`);
    await viaEndpoint.close();
    await viaRegistry.close();
  } finally {
    endpoint.child.kill('SIGTERM');
    await endpoint.exited;
    await registry.stop();
    await db.drop();
    await rm(work, { recursive: true, force: true });
  }
}

main().catch((err) => {
  process.stderr.write(`${(err as Error).stack ?? err}\n`);
  process.exit(1);
});
