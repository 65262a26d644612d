import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createGzip } from 'node:zlib';
import { STATE_LAYER_TYPE } from '../../core/state/format.js';
import { BUNDLE, pushImage, readAgentState, runBundle, useAgentWorld } from '../support/agent.js';
import { startFaultProxy, type FaultProxy } from '../support/fault-proxy.js';
import { image } from '../support/oci.js';
import { until } from '../support/process.js';

// The agent reads every body it keeps in memory under a cap: manifests 4 MiB (the
// distribution spec's limit), state layers maxStateMb, compressed and decompressed. A
// registry that answers without end (here a proxy in front of the real registry) or a
// signed gzip bomb costs the agent at most the cap: the real bundle's peak RSS (VmHWM) is
// measured against the same agent's peak on a healthy state.

const STATE = 'satellite/group-state/edge/state';
const MiB = 1024 * 1024;
const MANIFEST_CAP = 4 * MiB;
/** maxStateMb in these tests: small, so that the bound below means something. */
const STATE_CAP_MB = 16;
/**
 * The bound on the peak RSS: the healthy run's, plus twice the cap (the body held while it
 * is read, and what the stream buffers around it), plus 64 MiB for the noise of a Node
 * process's peak (GC timing, socket buffers: healthy runs alone vary by ~20 MiB here). A
 * read without a cap holds the whole endless body (the proxy's safety stop, 256 MiB) or
 * the whole bomb (256 MiB), far past it.
 */
const bound = (baselineMiB: number, capBytes: number) => baselineMiB + (2 * capBytes) / MiB + 64;

interface Run {
  peakMiB: number;
  out: string;
  rec: { error?: string; applied?: { version: number }; images: Record<string, { status: string; reason?: string }> };
}

describe('the edge agent: bounded reads', function () {
  this.timeout(120_000);
  const world = useAgentWorld();
  let proxy: FaultProxy;
  beforeEach(async () => {
    proxy = await startFaultProxy(world.registryUrl);
  });
  afterEach(async () => proxy?.close());

  /**
   * Runs the agent bundle (as a device would) until its status file shows `done` for the
   * group; then reads its peak RSS from /proc, stops it, and answers both with its output.
   */
  async function runUntil(configFile: string, store: string, done: (rec: Run['rec']) => boolean): Promise<Run> {
    const child = spawn(process.execPath, [BUNDLE, 'run', '--config', configFile], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise((resolve) => child.on('exit', resolve));
    try {
      const rec = await until('the agent\'s first sync to end', async () => {
        const doc = (await readAgentState(store)) as unknown as { groups: Record<string, Run['rec']> };
        const r = doc.groups.edge;
        return r && done(r) ? r : undefined;
      }, 90_000).catch((err: Error) => {
        throw new Error(`${err.message}; the agent said:\n${out}`);
      });
      const status = await readFile(`/proc/${child.pid}/status`, 'utf8');
      return { peakMiB: Number(/VmHWM:\s+(\d+) kB/.exec(status)![1]) / 1024, out, rec };
    } finally {
      child.kill('SIGTERM');
      await exited;
    }
  }

  /** A healthy state with one image, and the agent's peak RSS applying it. */
  async function baseline(extra: Record<string, unknown> = {}): Promise<{ peakMiB: number; img: ReturnType<typeof image> }> {
    const img = image();
    await pushImage(world.client(), 'library/app', img);
    await world.record('edge', 'library/app', img, '1');
    await world.publish('edge');
    const store = join(await world.dir(), 'store');
    const file = await world.configFile({ store, logLevel: 'info', ...extra });
    const run = await runUntil(file, store, (r) => r.applied !== undefined && Object.values(r.images).every((i) => i.status === 'present'));
    return { peakMiB: run.peakMiB, img };
  }

  /** An agent reading through the proxy, its own store; signatures name the registry itself. */
  async function proxiedConfig(extra: Record<string, unknown> = {}): Promise<{ file: string; store: string }> {
    const store = join(await world.dir(), 'store');
    const file = await world.configFile({ registry: proxy.url, store, logLevel: 'info', ...extra }, { identity: `${world.registryHost}/${STATE}` });
    return { file, store };
  }

  it('when the registry answers the state manifest with an endless body, then the agent drops it at 4 MiB, refuses the state naming the URL and the cap, and its memory stays bounded', async () => {
    const healthy = await baseline();
    const { digest } = await world.publish('edge'); // unchanged content: the same digest
    proxy.rules.push({ method: 'GET', path: new RegExp(`/v2/${STATE}/manifests/sha256:`), fault: 'endless', prefix: '{"schemaVersion":2,"x":"', times: 1_000 });
    const { file, store } = await proxiedConfig();
    const run = await runUntil(file, store, (r) => r.error !== undefined);
    const limit = bound(healthy.peakMiB, MANIFEST_CAP);
    console.log(`      peak RSS: healthy ${healthy.peakMiB.toFixed(1)} MiB, endless manifest ${run.peakMiB.toFixed(1)} MiB (bound ${limit.toFixed(1)} MiB)`);
    expect(run.peakMiB, 'peak RSS').to.be.at.most(limit);

    const url = `${proxy.url}/v2/${STATE}/manifests/${digest}`;
    expect(run.rec.error).to.match(/^state refused \(too-large\)/);
    expect(run.rec.error).to.include(url).and.include('4 MiB');
    expect(run.rec.applied, 'nothing applied').to.equal(undefined);
    expect(run.out, 'the log names the URL and the cap').to.match(/state refused; nothing applied/).and.include(url).and.include('more than 4 MiB');
    const sent = proxy.answers.find((a) => a.request === `GET /v2/${STATE}/manifests/${digest}`);
    expect(sent, 'the endless answer was made').to.not.equal(undefined);
    expect(sent!.bytes, 'the agent hung up long before the safety stop').to.be.below(MANIFEST_CAP + 32 * MiB);
    console.log(`      ${(sent!.bytes / MiB).toFixed(1)} MiB sent before the agent hung up`);

    const once = await runBundle(['--once', '--config', file]);
    expect(once.code, once.out).to.equal(1);
    const status = await runBundle(['status', '--json', '--config', file]);
    expect(JSON.parse(status.out.slice(status.out.indexOf('{'))).groups[0].error).to.include(url).and.include('4 MiB');
  });

  it('when the registry answers the state layer with an endless body, then the agent drops it at maxStateMb and refuses the state, its memory bounded', async () => {
    const healthy = await baseline({ maxStateMb: STATE_CAP_MB });
    const latest = JSON.parse((await world.client().getManifest(STATE, 'latest'))!.bytes.toString()) as { layers: { digest: string }[] };
    const layer = latest.layers[0]!.digest;
    proxy.rules.push({ method: 'GET', path: new RegExp(`/v2/${STATE}/blobs/${layer}$`), fault: 'endless', times: 1_000 });
    const { file, store } = await proxiedConfig({ maxStateMb: STATE_CAP_MB });
    const run = await runUntil(file, store, (r) => r.error !== undefined);
    const limit = bound(healthy.peakMiB, STATE_CAP_MB * MiB);
    console.log(`      peak RSS: healthy ${healthy.peakMiB.toFixed(1)} MiB, endless state layer ${run.peakMiB.toFixed(1)} MiB (bound ${limit.toFixed(1)} MiB)`);
    expect(run.peakMiB, 'peak RSS').to.be.at.most(limit);

    const url = `${proxy.url}/v2/${STATE}/blobs/${layer}`;
    expect(run.rec.error).to.match(/^state refused \(too-large\)/);
    expect(run.rec.error).to.include(url).and.include(`${STATE_CAP_MB} MiB`);
    expect(run.rec.applied).to.equal(undefined);
    const sent = proxy.answers.find((a) => a.request === `GET /v2/${STATE}/blobs/${layer}`);
    expect(sent!.bytes, 'the agent hung up long before the safety stop').to.be.below(STATE_CAP_MB * MiB + 32 * MiB);
  });

  it('when a signed state\'s layer is a gzip bomb, then the agent stops decompressing at maxStateMb and refuses the state, its memory bounded', async () => {
    const healthy = await baseline({ maxStateMb: STATE_CAP_MB });
    const client = world.client();
    const good = JSON.parse((await client.getManifest(STATE, 'latest'))!.bytes.toString()) as { layers: Record<string, unknown>[] };
    // 256 MiB of zeros, gzip'd as it is made (255 KiB): small on the wire, huge once read.
    const gz = createGzip({ level: 9 });
    const parts: Buffer[] = [];
    gz.on('data', (c: Buffer) => parts.push(c));
    const ended = new Promise((r) => gz.on('end', r));
    const zeros = Buffer.alloc(MiB);
    for (let i = 0; i < 256; i++) if (!gz.write(zeros)) await new Promise((r) => gz.once('drain', r));
    gz.end();
    await ended;
    const bomb = Buffer.concat(parts);
    const bombDigest = await client.pushBlob(STATE, bomb);
    const manifest = Buffer.from(JSON.stringify({ ...good, layers: [{ ...good.layers[0], mediaType: STATE_LAYER_TYPE, digest: bombDigest, size: bomb.length }] }));
    const digest = await client.putManifest(STATE, 'latest', manifest, 'application/vnd.oci.image.manifest.v1+json');
    await world.sign(STATE, digest); // by the group's own key: only the cap stands in the way
    const store = join(await world.dir(), 'store');
    const file = await world.configFile({ store, logLevel: 'info', maxStateMb: STATE_CAP_MB });
    const run = await runUntil(file, store, (r) => r.error !== undefined);
    const limit = bound(healthy.peakMiB, STATE_CAP_MB * MiB);
    console.log(`      peak RSS: healthy ${healthy.peakMiB.toFixed(1)} MiB, gzip bomb (${(bomb.length / 1024).toFixed(0)} KiB → 256 MiB) ${run.peakMiB.toFixed(1)} MiB (bound ${limit.toFixed(1)} MiB)`);
    expect(run.peakMiB, 'peak RSS').to.be.at.most(limit);

    expect(run.rec.error).to.match(/^state refused \(too-large\)/);
    expect(run.rec.error).to.include(`${world.registryUrl}/v2/${STATE}/blobs/${bombDigest}`).and.include(`decompresses to more than ${STATE_CAP_MB} MiB`);
    expect(run.rec.applied).to.equal(undefined);
  });

  it('when the registry answers an image manifest with an endless body, then that image fails naming the URL and the cap, the state is applied, and memory stays bounded', async () => {
    const healthy = await baseline();
    const img = image();
    await pushImage(world.client(), 'library/other', img);
    await world.record('edge', 'library/other', img, '2');
    await world.publish('edge', proxy.url); // images are pulled through the proxy too
    proxy.rules.push({ method: 'GET', path: new RegExp(`/v2/library/other/manifests/${img.manifest.digest}$`), fault: 'endless', times: 1_000 });
    const { file, store } = await proxiedConfig();
    const run = await runUntil(file, store, (r) => Object.values(r.images).some((i) => i.status === 'failed'));
    const limit = bound(healthy.peakMiB, MANIFEST_CAP);
    console.log(`      peak RSS: healthy ${healthy.peakMiB.toFixed(1)} MiB, endless image manifest ${run.peakMiB.toFixed(1)} MiB (bound ${limit.toFixed(1)} MiB)`);
    expect(run.peakMiB, 'peak RSS').to.be.at.most(limit);

    const url = `${proxy.url}/v2/library/other/manifests/${img.manifest.digest}`;
    expect(run.rec.applied, 'the state itself is fine').to.not.equal(undefined);
    const failed = run.rec.images[`library/other@${img.manifest.digest}`]!;
    expect(failed.status).to.equal('failed');
    expect(failed.reason).to.include(url).and.include('more than 4 MiB, the cap for a manifest');
    expect(run.out).to.match(/image not made available/).and.include(url);
    const sent = proxy.answers.find((a) => a.request === `GET /v2/library/other/manifests/${img.manifest.digest}`);
    expect(sent!.bytes, 'the agent hung up long before the safety stop').to.be.below(MANIFEST_CAP + 32 * MiB);
  });
});
