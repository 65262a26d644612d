// State pipeline benchmark (issue 11 items 1-3, issue 21 items 3-5), each figure beside its
// floor measured in the same run:
//  1. latency from the last manifest PUT of a burst to the signed `latest` being pullable,
//     with the default settings, through `satellite serve` and docker-registry (p50/p95
//     over BENCH_BURSTS bursts), how many versions the bursts made, and where the time went
//     (p50/p95 per stage, from the worker's "state published" lines: debounce, queue wait,
//     read, package, sign, push, latest, and the bench's own poll);
//  2. one group of BENCH_SIZES artifacts: build + sign + publish of its first version and
//     of the next one after one change (with its delta layer), each in a worker process of
//     its own (its peak RSS and CPU time reported), beside skopeo pushing the very same
//     artifact (unsigned) from an OCI layout.
//     Where a 100,000-entry first build goes (--cpu-prof on bench/build-once.js, 2026-12-07,
//     2-core shared machine): Postgres's listing ~0.6-0.75 s of backend CPU (tag and child
//     aggregates, hash joins, the sort; JIT stays off in the pool: with it, +1.2-5.8 s of
//     LLVM compilation; 0.45-0.52 s since the tags are kept on each artifact's row,
//     migration 72), the worker ~1.1-1.6 s of CPU (GC 0.6-1.0 s, row parsing ~0.5 s,
//     rendering ~0.4 s, sha256 and gzip of ~26 MB of text). Chunks are hashed and gzip'd
//     as their rows arrive and the next FETCH is in flight while a batch renders; the
//     content and layer digests take one pass. On a machine shared with other work the
//     wall ratios follow the load far more than the code: compare the CPU column.
//     Round 3 (same day, quiet machine, eight runs): the worker holds a kept group as its
//     chunks (text and gzip member), not 100,000 entry strings beside them, and FETCHes
//     1,000 rows at a time (not 5,000): first build peak 232-252 -> 172-183 MiB
//     (10.1-15.1 x skopeo, CPU 0.83-1.25 s); after one change 1.03-1.47 x; a worker that kept
//     nothing (kept package read as base64, its count from the version row, chunks read only
//     at their ends) 4.4-4.7 -> 2.2-3.3 x, 133-144 MiB.
//     Round 4 (2026-12-08, quiet machine, ten runs): rows a cursor's FETCH collected in
//     node-postgres's result were promoted by the scavenger (~30 MB a read) and held until a
//     full collection: they now come through its row events (core/db/pool.ts fetchArrays);
//     a full read cuts chunks straight out of each batch's rendering (no string per entry);
//     the build runs as the launchers start the service (cli/runtime.ts: 8 MiB semi-spaces,
//     two malloc arenas): first build peak 172-183 -> 134-143 MiB (met), CPU 0.82-1.12 s,
//     11.2-16.8 x (the wall is unchanged within the noise: ~0.6 s of it is Postgres before
//     its first row); after one change 1.04-1.59 x (median 1.39); cold next 2.7-3.6 x.
//  3. BENCH_GROUPS dirty groups published by one `satellite worker` with the default
//     settings, beside the signed floor (bench/signed-floor.ts: the minimum requests of a
//     signed publish, no database, no queue, as many at a time as the worker builds) and
//     the same artifacts pushed unsigned over plain HTTP (HEAD each blob, upload the
//     missing, PUT the manifest), 4 at a time; first the requests and bytes of each, per
//     version, counted through a relay (bench/counting-relay.ts) on BENCH_COUNT_GROUPS groups.
//
// The minimum a signed publish needs in the "oci" layout (issue 21 item 4), per version:
//   signature: payload and config blobs, both new bytes (POST + PUT each, no HEAD), and the
//     .sig manifest PUT;                                                        4 + 1
//   state: the layer (and from v2 the delta), new bytes (POST + PUT each, no HEAD); the
//     empty config only into a new repository (POST + PUT), known there afterwards;
//                                              v1: 2 + 2, v2 on: 2 + 2 (layer, delta)
//   the manifest PUT at v<N> (not by digest and then by tag), then at `latest`.  2
// = 11 requests a version (~7 KiB up, ~5 KiB down at 20 entries), against 7-8 for the
// unsigned push (which HEADs every blob). The worker makes exactly these since issue 21
// (before: a HEAD of the config at every version, every blob one after the other); a worker
// that starts HEADs the config once per repository; a group built again unchanged makes one
// HEAD of `latest`. What the formats would allow beyond that and is not done: one POST
// carrying the blob (the spec's single-request upload; docker-registry 2.8 and Harbor's
// distribution answer it with a session, so the bytes would go twice), a constant signature
// config (cosign writes the payloads' diff_ids there, and readers may check them), and the
// version tag and `latest` in one request (the distribution API tags one reference a PUT).
// Findings (2026-12-07, 2-core shared machine, load average 17-21 from five other
// engineers' runs): ours and the signed floor make the same 11 requests and bytes per
// version (counted), and the registry spends the same CPU per state on both (32 vs 29 ms,
// 36 vs 35 ms); 1,000 groups took 101-115 s against the floor's 74-87 s (1.32-1.36) for
// first versions, 121-138 s against 83-84 s (1.44-1.66) after one change (two runs); the
// unsigned push 38-44 s and 56-60 s. The rest is the worker's CPU (10-14 ms per state) and
// Postgres's (8-18 ms per state) on the same two cores. (Postgres's CPU is summed over its
// live processes: a backend that exits during a round makes it low, even negative.) At WORKER_CONCURRENCY=8 (300 groups, floor also 8 at a time): 1.33 and 1.24.
// Round 2 (same day, 300 groups, load average 7-9, against main in alternate runs): the
// worker's Postgres transactions per state 9.95-10.07 (main 11.25-11.64) for first versions,
// 5.60-6.15 (main 8.13-8.40) after one change; ratio to the signed floor after one change
// 1.17 / 1.22 (main 1.68 / 1.51), first versions 0.87 / 1.40 (main 1.22 / 1.61). 1,000
// groups, one run each: 8.13 / 5.30 transactions per state, ratio 1.15 / 1.31 (main 10.51 /
// 7.15, 1.80 / 1.62).
// Latency (part 1, same day, load average 14-19): p50 305 ms, p95 513 ms; p50 / p95 by
// stage: debounce 99 / 188 (BUILD_QUIET_MS is 100), queue 1 / 10, read 19 / 39, package
// 18 / 64, signature 86 / 143 beside blobs + v<N> 107 / 213, latest 25 / 69, the bench's
// poll 20 / 82: the 150 ms p95 target is not met; the debounce takes two thirds of it and
// the registry round trips (now about four deep, from a dozen) most of the rest.
// Round 3 (same day, quiet machine): a CPU profile of the worker over 1,000 groups showed
// gzip'ing a state's few small members on libuv's threads (0.13-0.23 ms of CPU a call
// against 0.02 on the event loop), the content cache summing every kept entry of every
// group at each put, Postgres parsing and planning the same statements for every build,
// and the pruner's two queries per group. Now: small members gzip'd in place, a running
// total, prepared statements, one prune statement for the fleet. 1,000 groups, three runs:
// first versions 1.30 / 1.48 / 1.34 x the signed floor, after one change 1.34 / 1.33 / 1.26;
// transactions per state 6.1-6.7 and 6.1. Then the group's reads: planning them took three
// times as long as running them on a 20-entry group (1.3 ms against 0.3 for a first read,
// 2.8 against 0.9 for the changes since); prepared now where the plan kept cannot hurt a
// large group (see ArtifactStore.snapshot): Postgres per state 5.5-5.8 -> 2.7-3.3 ms, and
// first versions 1.28 / 1.26 x, after one change 1.20 / 1.23 x. Latency p50 167-171 ms,
// p95 183-185 ms (debounce 103).
// BENCH_ONLY=latency,size,groups picks sections.
import { execFile } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { startDockerRegistry, type LocalRegistry } from '../harbor-dev/docker-registry.js';
import { loadConfig } from '../core/config.js';
import { loadPrivateKey } from '../core/cosign/keys.js';
import type { Pool } from '../core/db/pool.js';
import { RegistryClient, RegistryRequestError } from '../core/registry/registry-client.js';
import { DEFAULT_STATE_MAX_MB, layerText, stateLayers } from '../core/state/format.js';
import { StateStore } from '../core/store/state-store.js';
import { createTestDatabase } from '../test/support/db.js';
import { basic } from '../test/support/endpoint.js';
import { blob, image, randomLayer, writeLayout } from '../test/support/oci.js';
import { freePort, spawnSatellite } from '../test/support/process.js';
import { dropPrefix, REDIS_URL, testPrefix } from '../test/support/redis.js';
import { skopeoCopy } from '../test/support/run.js';
import { KEY_PASSWORD, record, testKeys, type TestKeys } from '../test/support/worker.js';
import { seedGroup } from './seed.js';
import { startCountingRelay, type CountingRelay, type Tally } from './counting-relay.js';
import { signedFloor, type FloorPackage } from './signed-floor.js';
import { SERVICE_ENV, SERVICE_NODE_FLAGS } from '../cli/runtime.js';

/** What the agent and the CLI accept by default for a state's layer. */
const STATE_LIMIT = DEFAULT_STATE_MAX_MB * 1024 * 1024;

const BURSTS = Number(process.env.BENCH_BURSTS ?? 20);
const BURST_SIZE = Number(process.env.BENCH_BURST_SIZE ?? 20);
const SIZES = (process.env.BENCH_SIZES ?? '1000,10000,100000').split(',').map(Number);
const DIRTY_GROUPS = Number(process.env.BENCH_GROUPS ?? 1000);
const GROUP_SIZE = Number(process.env.BENCH_GROUP_SIZE ?? 20);
/** Groups published through the counting relay, for the requests and bytes per version. */
const COUNT_GROUPS = Number(process.env.BENCH_COUNT_GROUPS ?? 20);
const ONLY = new Set((process.env.BENCH_ONLY ?? 'latency,size,groups').split(','));

const out = (s = '') => process.stdout.write(`${s}\n`);
const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.ceil((p / 100) * xs.length) - 1)]!;
const ms = (n: number) => `${n.toFixed(0)} ms`;
const run = promisify(execFile);

async function latency(registryUrl: string, keys: TestKeys): Promise<void> {
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
  /** Per burst: its last PUT and when the bench saw the new latest (epoch ms), and that latest's digest. */
  const bursts: { lastPut: number; seen: number; digest: string }[] = [];
  let racing = 0;
  try {
    let before = (await client.headManifest(repo, 'latest'))?.digest;
    for (let b = 0; b < BURSTS; b++) {
      let last = 0;
      let lastPut = 0;
      for (let i = 0; i < BURST_SIZE; i++) {
        const img = image({ layers: [randomLayer(32)] });
        const res = await fetch(`http://127.0.0.1:${port}/v2/bench/library/app${i}/manifests/b${b}`, {
          method: 'PUT', headers: { Authorization: basic('harbor', password), 'Content-Type': img.manifest.mediaType }, body: img.manifest.bytes,
        });
        if (res.status !== 201) throw new Error(`PUT answered ${res.status}`);
        last = performance.now();
        lastPut = Date.now();
      }
      const deadline = Date.now() + 30_000;
      for (;;) {
        // docker-registry answers an odd 500 to a HEAD that races the worker's tag write (its
        // filesystem driver reads the tag's link file while it is rewritten): a satellite
        // retries at its next poll, so does this loop, and the count is printed.
        const now = await client.headManifest(repo, 'latest').then((m) => m?.digest, (err: unknown) => {
          if (!(err instanceof RegistryRequestError) || err.status < 500) throw err;
          racing++;
          return undefined;
        });
        if (now && now !== before) {
          // Pullable: the manifest and the state blob come back.
          const m = (await client.getManifest(repo, 'latest'))!;
          const full = stateLayers(JSON.parse(m.bytes.toString()) as object)!.full;
          const state = JSON.parse(layerText(await client.getBlob(repo, full.digest, STATE_LIMIT), full.mediaType));
          const inBurst = state.artifacts.filter((a: { tag: string[] }) => a.tag.includes(`b${b}`)).length;
          if (inBurst === BURST_SIZE) {
            samples.push(performance.now() - last);
            bursts.push({ lastPut, seen: Date.now(), digest: now });
            before = now;
            break;
          }
        }
        if (Date.now() > deadline) throw new Error('state did not appear');
        await new Promise((r) => setTimeout(r, 5));
      }
    }
    const { rows } = await db.pool.query<{ n: number }>("SELECT count(*)::int AS n FROM state_versions WHERE group_name = 'bench' AND status = 'published'");
    out(`1. last PUT of a burst (${BURST_SIZE} PUTs back to back) → signed latest pullable, ${BURSTS} bursts, default settings`);
    out(`   p50 ${ms(pct(samples, 50))}   p95 ${ms(pct(samples, 95))}   min ${ms(Math.min(...samples))}   max ${ms(Math.max(...samples))}`
      + `   versions published: ${rows[0]!.n} for ${BURSTS} bursts (one per burst is the floor)`
      + (racing ? `   (docker-registry answered ${racing} polling HEADs with 500 as latest moved)` : ''));
    printStages(serve.output(), bursts);
  } finally {
    serve.child.kill('SIGTERM');
    await serve.exited;
    await db.drop();
    await dropPrefix(prefix);
  }
}

/**
 * Where the time from a burst's last PUT to its signed `latest` went, from the worker's
 * "state published" lines (the job's queuedAt and waitedMs, the build's stage marks) and the
 * bench's own clock (same machine, epoch ms): p50 and p95 of each stage over the bursts.
 */
function printStages(log: string, bursts: { lastPut: number; seen: number; digest: string }[]): void {
  const published = new Map<string, { queuedAt: number; waitedMs: number; ms: Record<string, number> }>();
  for (const line of log.split('\n')) {
    if (!line.includes('"state published"')) continue;
    try {
      const l = JSON.parse(line) as { digest: string; queuedAt: number; waitedMs: number; ms: Record<string, number> };
      published.set(l.digest, l);
    } catch {
      // not a log line
    }
  }
  const stages: Record<string, number[]> = {};
  const add = (name: string, v: number) => (stages[name] ??= []).push(v);
  for (const b of bursts) {
    const p = published.get(b.digest);
    if (!p?.ms?.latest) continue;
    add('debounce (last PUT → job queued)', p.queuedAt - b.lastPut);
    add('queue (queued → worker took it)', p.waitedMs);
    add('read (the changes)', p.ms.read!);
    add('package (version, render, gzip)', p.ms.packaged! - p.ms.read!);
    add('sign (signature uploaded, its manifest put)', p.ms.signed! - p.ms.packaged!);
    add('push (blobs beside the signature, then v<N>)', p.ms.tagged! - p.ms.packaged!);
    add('latest (still current? then PUT latest)', p.ms.latest - p.ms.tagged!);
    add('seen (latest put → bench pulled it: its 5 ms poll)', b.seen - (p.queuedAt + p.waitedMs + p.ms.latest));
  }
  out(`   where the time went, over ${bursts.length} bursts (sign runs beside push; the rest one after the other):`);
  for (const [name, xs] of Object.entries(stages)) {
    out(`     ${name.padEnd(52)} p50 ${xs.length ? pct(xs, 50).toFixed(1) : '-'} ms   p95 ${xs.length ? pct(xs, 95).toFixed(1) : '-'} ms`);
  }
}

interface Phase {
  phase: string;
  ms: number;
  /** The worker process's CPU time during the build (zlib's threads included). */
  cpuMs?: number;
  peakRssMiB: number;
  result?: { result: string; version: number; artifacts: number; read: string };
}

/** bench/build-once.ts: three builds of `group` in a process of its own. */
async function buildSeries(settings: object): Promise<Phase[]> {
  // With the V8 flags and environment the service's launchers give the worker (cli/runtime.ts).
  const { stdout } = await run(process.execPath, [...SERVICE_NODE_FLAGS, 'dist/bench/build-once.js'], { env: { ...process.env, ...SERVICE_ENV, BENCH_BUILD: JSON.stringify(settings) }, maxBuffer: 1 << 20 });
  return stdout.trim().split('\n').map((l) => JSON.parse(l) as Phase);
}

/** skopeo pushing version `version` as published (read back from the registry), unsigned, to a new repository. */
async function skopeoFloor(registry: LocalRegistry, work: string, repository: string, version: number, target: string): Promise<{ ms: number; bytes: number }> {
  const client = new RegistryClient(registry.url);
  const m = (await client.getManifest(repository, `v${version}`))!;
  const doc = JSON.parse(m.bytes.toString()) as { config: { digest: string }; layers: { digest: string }[] };
  const blobs = await Promise.all([doc.config, ...doc.layers].map((d) => client.getBlob(repository, d.digest, STATE_LIMIT)));
  const dir = join(work, `${target.replaceAll('/', '-')}`);
  await writeLayout(dir, 'state', blob('application/vnd.oci.image.manifest.v1+json', m.bytes), blobs.map((b) => blob('application/octet-stream', b)));
  const t = performance.now();
  await skopeoCopy(`oci:${dir}:state`, `docker://${registry.host}/${target}:latest`, 'any:any');
  return { ms: performance.now() - t, bytes: blobs.reduce((n, b) => n + b.length, 0) };
}

async function sizes(registry: LocalRegistry, keys: TestKeys, work: string): Promise<void> {
  out('2. one group: build + sign + publish (ours, one worker process) beside skopeo pushing the same artifact unsigned');
  out('   first: the group\'s first version (read whole); next: after 1 change, with what the first build kept in memory;');
  out('   cold next: after 1 change, by a worker that kept nothing (just started, or another replica): it takes up the published version\'s package');
  out('   (ours CPU: the worker process\'s CPU time during the build; Postgres\'s own is not in it)');
  out(`   ${'artifacts'.padEnd(10)}${'build'.padEnd(12)}${'ours'.padStart(10)}${'skopeo'.padStart(10)}${'ratio'.padStart(7)}${'ours CPU'.padStart(10)}${'layers'.padStart(12)}${'peak RSS'.padStart(11)}   read`);
  for (const n of SIZES) {
    const db = await createTestDatabase();
    try {
      await seedGroup(db.pool, 'big', n);
      await db.pool.query('ANALYZE');
      const settings = { databaseUrl: db.url, group: 'big', stateRegistry: registry.url, stateProject: `size${n}`, keyPath: keys.keyPath, keyPassword: KEY_PASSWORD };
      const phases = [...await buildSeries({ ...settings, phases: 'first,next' }), ...await buildSeries({ ...settings, phases: 'cold-next' })];
      for (const p of phases) {
        if (!p.result) {
          out(`   ${String(n).padEnd(10)}${'(process)'.padEnd(12)}${''.padStart(49)}${`${p.peakRssMiB.toFixed(0)} MiB`.padStart(11)}`);
          continue;
        }
        if (p.result.result !== 'published' || p.result.artifacts < n) throw new Error(`${p.phase}: ${JSON.stringify(p.result)}`);
        const floor = await skopeoFloor(registry, work, `size${n}/group-state/big/state`, p.result.version, `peer/size${n}/${p.phase}`);
        out(`   ${String(n).padEnd(10)}${p.phase.padEnd(12)}${ms(p.ms).padStart(10)}${ms(floor.ms).padStart(10)}${(p.ms / floor.ms).toFixed(2).padStart(7)}${ms(p.cpuMs ?? NaN).padStart(10)}`
          + `${`${(floor.bytes / 1024).toFixed(0)} KiB`.padStart(12)}${`${p.peakRssMiB.toFixed(0)} MiB`.padStart(11)}   ${p.result.read}`);
      }
    } finally {
      await db.drop();
    }
  }
}

async function cpuMs(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

/** CPU ms of every running process called `name` (Postgres: the postmaster and its backends). */
async function cpuOfNamed(name: string): Promise<number> {
  let total = 0;
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = await readFile(`/proc/${entry}/stat`, 'utf8');
      if (stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')')) === name) total += await cpuMs(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return total;
}

/** The published packages of `version`, read before any floor runs (the floors use no database). */
async function publishedPackages(pool: Pool, version: number): Promise<FloorPackage[]> {
  const { rows } = await pool.query<{ group_name: string; version: number; manifest: Buffer; blobs: Buffer[] }>(
    "SELECT group_name, version, manifest, blobs FROM state_versions WHERE status = 'published' AND manifest IS NOT NULL AND version = $1", [version]);
  return rows.map((r) => ({ group: r.group_name, version: r.version, manifest: r.manifest, blobs: r.blobs }));
}

/** The packages pushed unsigned over HTTP `concurrency` at a time, as a plain client would (HEAD each blob, upload the missing, PUT the manifest). */
async function plainPushes(packages: FloorPackage[], registryUrl: string, namespace: string, concurrency: number): Promise<number> {
  const client = new RegistryClient(registryUrl);
  let next = 0;
  const t = performance.now();
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < packages.length) {
      const r = packages[next++]!;
      const repo = `${namespace}/${r.group}/state`;
      for (const b of r.blobs) await client.pushBlob(repo, b);
      await client.putManifest(repo, 'latest', r.manifest, 'application/vnd.oci.image.manifest.v1+json');
    }
  }));
  return performance.now() - t;
}

interface Round {
  label: string;
  seconds: number;
  cpu: number;
  registryCpu: number;
  postgresCpu: number;
  /** Transactions the worker committed in the group's database (pg_stat_database), the bench's own taken out. */
  xacts: number;
  /** The signed floor, same concurrency as the worker: its seconds and the registry's CPU. */
  signed: number;
  signedRegistryCpu: number;
  /** The unsigned push, 4 at a time. */
  floor: number;
  floorRegistryCpu: number;
  /** Through the counting relay only: what each made of the registry. */
  tallies?: { ours: Tally; signed: Tally; unsigned: Tally };
}

/**
 * `n` dirty groups published by one `satellite worker` (round 1 their first versions, round
 * 2 one change each), each round followed by the signed floor and the unsigned push of the
 * very packages it published. `relay`: everything goes through it and is counted.
 */
async function groupRounds(registry: LocalRegistry, keys: TestKeys, n: number, project: string, relay?: CountingRelay): Promise<{ rounds: Round[]; concurrency: number }> {
  const db = await createTestDatabase();
  const prefix = testPrefix();
  const registryUrl = relay?.url ?? registry.url;
  const env = {
    DATABASE_URL: db.url, REDIS_URL, QUEUE_PREFIX: prefix, METRICS_PORT: '0', STATE_REGISTRY: registryUrl, STATE_PROJECT: project,
    IMAGE_REGISTRY: 'https://harbor.example.com', COSIGN_KEY: keys.keyPath, COSIGN_PASSWORD: KEY_PASSWORD, LOG_LEVEL: 'info',
    ...(process.env.BENCH_WORKER_CONCURRENCY ? { WORKER_CONCURRENCY: process.env.BENCH_WORKER_CONCURRENCY } : {}),
  };
  const concurrency = loadConfig(env).workerConcurrency;
  const key = loadPrivateKey(keys.privatePem, KEY_PASSWORD);
  const publishedVersions = async (version: number) => (await db.pool.query<{ n: number }>(
    "SELECT count(*)::int AS n FROM state_versions WHERE status = 'published' AND version = $1", [version])).rows[0]!.n;
  // Every statement the worker sends outside a transaction block commits one transaction:
  // the database's count (flushed by each backend within a second of going idle) less the
  // bench's own queries is the worker's round trips to Postgres. Postgres's CPU above is the
  // whole machine's (other databases' too); this count is the worker's alone.
  const committed = async () => Number((await db.pool.query<{ n: string }>(
    'SELECT xact_commit::text AS n FROM pg_stat_database WHERE datname = current_database()')).rows[0]!.n);
  const rounds: Round[] = [];
  try {
    for (let g = 0; g < n; g++) await seedGroup(db.pool, `g${g}`, GROUP_SIZE, 5);
    await db.pool.query('ANALYZE');
    const worker = await spawnSatellite(['worker'], env, 'worker started');
    try {
      // Round 1: every group's first version. Round 2: one change in every group (a delta each).
      for (const version of [1, 2]) {
        if (version === 2) {
          // The changes are recorded with the worker stopped (SIGSTOP), so that, as in round 1,
          // the clock runs from all groups dirty to all published, and the bench's own writes
          // (the endpoint's part) do not share the machine with the publishing.
          worker.child.kill('SIGSTOP');
          try {
            const layer = randomLayer(16);
            for (let g = 0; g < n; g++) await record(db.pool, `g${g}`, 'library/app0', image({ layers: [layer], architecture: `x${g}` }), 'changed');
            await new Promise((r) => setTimeout(r, 1500)); // the bench's writes counted before x0
          } finally {
            worker.child.kill('SIGCONT');
          }
        }
        relay?.reset();
        const x0 = await committed();
        let own = 1; // x0's own query
        const cpu0 = await cpuMs(worker.child.pid!);
        const reg0 = await cpuMs(registry.pid);
        const pg0 = await cpuOfNamed('postgres');
        const t0 = performance.now();
        while ((own++, await publishedVersions(version)) < n) await new Promise((r) => setTimeout(r, 20));
        const seconds = (performance.now() - t0) / 1000;
        const cpu = (await cpuMs(worker.child.pid!)) - cpu0;
        const registryCpu = (await cpuMs(registry.pid)) - reg0;
        const postgresCpu = (await cpuOfNamed('postgres')) - pg0;
        const ours = relay?.tally();
        // The floors: the very packages just published (round 2 into the repositories the
        // floor's round 1 filled, as a registry client would find them).
        const packages = await publishedPackages(db.pool, version);
        own++;
        relay?.reset();
        const signedReg0 = await cpuMs(registry.pid);
        const signed = (await signedFloor(registryUrl, key, `${project}-signed-floor`, packages, concurrency, version === 1)) / 1000;
        const signedRegistryCpu = (await cpuMs(registry.pid)) - signedReg0;
        const signedTally = relay?.tally();
        relay?.reset();
        const floorReg0 = await cpuMs(registry.pid);
        const floor = (await plainPushes(packages, registryUrl, `${project}-plain`, 4)) / 1000;
        const floorRegistryCpu = (await cpuMs(registry.pid)) - floorReg0;
        const unsigned = relay?.tally();
        const xacts = (await committed()) - x0 - own;
        rounds.push({
          label: version === 1 ? 'first versions' : 'after 1 change each', seconds, cpu, registryCpu, postgresCpu, xacts,
          signed, signedRegistryCpu, floor, floorRegistryCpu, ...(ours ? { tallies: { ours, signed: signedTally!, unsigned: unsigned! } } : {}),
        });
      }
    } finally {
      worker.child.kill('SIGTERM');
      await worker.exited;
    }
    if ((await new StateStore(db.pool).staleGroups(168)).length > 0) throw new Error('groups left stale');
    return { rounds, concurrency };
  } finally {
    await db.drop();
    await dropPrefix(prefix);
  }
}

/** "4 POST upload, 4 PUT upload, 3 PUT manifest = 11 requests, 5.2 KiB up, 1.9 KiB down", per version. */
function perVersion(t: Tally, n: number): string {
  const kinds = Object.entries(t.requests).sort(([a], [b]) => a.localeCompare(b));
  const total = kinds.reduce((m, [, c]) => m + c!, 0);
  const each = (c: number) => (Number.isInteger(c / n) ? String(c / n) : (c / n).toFixed(2));
  return `${kinds.map(([k, c]) => `${each(c!)} ${k}`).join(', ')} = ${each(total)} requests, ${(t.sent / n / 1024).toFixed(1)} KiB up, ${(t.received / n / 1024).toFixed(1)} KiB down`;
}

async function groups(registry: LocalRegistry, keys: TestKeys): Promise<void> {
  // First the requests and bytes, counted through a relay on a few groups (the relay's own
  // CPU would weigh on the timed run); then the timed run, straight to the registry.
  const relay = await startCountingRelay(registry.url);
  let counted: Round[];
  try {
    counted = (await groupRounds(registry, keys, COUNT_GROUPS, 'counted', relay)).rounds;
  } finally {
    await relay.close();
  }
  const { rounds, concurrency } = await groupRounds(registry, keys, DIRTY_GROUPS, 'many');
  out(`3. ${DIRTY_GROUPS} dirty groups of ${GROUP_SIZE} artifacts, one \`satellite worker\` (WORKER_CONCURRENCY=${concurrency}${process.env.BENCH_WORKER_CONCURRENCY ? '' : ', the default'}),`);
  out(`   beside the signed floor (bench/signed-floor.ts: the minimum requests a signed publish needs, no database, no queue, ${concurrency} at a time)`);
  out('   and the same packages pushed unsigned over HTTP, 4 at a time (HEAD each blob, upload the missing, PUT the manifest)');
  out(`   registry requests per version, counted through a relay on ${COUNT_GROUPS} groups:`);
  for (const r of counted) {
    out(`     ${r.label.padEnd(20)} ours          ${perVersion(r.tallies!.ours, COUNT_GROUPS)}`);
    out(`     ${''.padEnd(20)} signed floor  ${perVersion(r.tallies!.signed, COUNT_GROUPS)}`);
    out(`     ${''.padEnd(20)} unsigned      ${perVersion(r.tallies!.unsigned, COUNT_GROUPS)}`);
  }
  for (const r of rounds) {
    out(`   ${r.label.padEnd(22)} ours ${r.seconds.toFixed(2)} s (${(DIRTY_GROUPS / r.seconds).toFixed(0)} states/s)`
      + `   signed floor ${r.signed.toFixed(2)} s   ratio ${(r.seconds / r.signed).toFixed(2)}`
      + `   unsigned push ${r.floor.toFixed(2)} s   ratio ${(r.seconds / r.floor).toFixed(2)}`);
    out(`   ${''.padEnd(22)} Postgres transactions of the worker: ${(r.xacts / DIRTY_GROUPS).toFixed(2)} per state`);
    out(`   ${''.padEnd(22)} CPU: worker ${(r.cpu / 1000).toFixed(1)} s, Postgres ${(r.postgresCpu / 1000).toFixed(1)} s, registry ${(r.registryCpu / 1000).toFixed(1)} s`
      + ` (${(r.registryCpu / DIRTY_GROUPS).toFixed(1)} ms per state; signed floor ${(r.signedRegistryCpu / DIRTY_GROUPS).toFixed(1)} ms; unsigned ${(r.floorRegistryCpu / DIRTY_GROUPS).toFixed(1)} ms per push)`);
  }
}

async function main(): Promise<void> {
  const registry = await startDockerRegistry();
  const keys = await testKeys();
  const work = await mkdtemp(join(tmpdir(), 'satellite-bench-state-'));
  try {
    if (ONLY.has('latency')) {
      await latency(registry.url, keys);
      out();
    }
    if (ONLY.has('size')) {
      await sizes(registry, keys, work);
      out();
    }
    if (ONLY.has('groups')) await groups(registry, keys);
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
