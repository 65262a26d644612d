import { expect } from 'chai';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { statusTable } from '../../agent/cli/status.js';
import { loadAgentConfig, AgentConfigError, type AgentConfig } from '../../agent/config/config.js';
import { startAgent, type RunningAgent } from '../../agent/run.js';
import { pushImage, pushIndex, useAgentWorld, useSiteLinks } from '../support/agent.js';
import { createServer } from 'node:http';
import { startFaultProxy, type FaultProxy } from '../support/fault-proxy.js';
import { forward, listenLocal } from '../support/forward.js';
import { image, index, randomLayer, type Image } from '../support/oci.js';

// Site upstreams (agent/sync/upstreams.ts): a device names its site's gateway agent as an
// upstream. Each agent reaches the registry through a counting proxy of its own (its "WAN"),
// the device reaches the gateway through another (which also breaks it on demand). Real
// docker-registry, real signed states from the worker, real agents.

const STATE = 'satellite/group-state/edge/state';

describe('the edge agent: site upstreams (one download per site)', function () {
  this.timeout(60_000);
  const world = useAgentWorld();
  /** The gateway's link to the registry, the device's link to the registry (links), the device's link to the gateway. */
  const { links, agentConfig } = useSiteLinks(world, STATE);
  let gwFront: FaultProxy | undefined;
  afterEach(async () => {
    await gwFront?.close();
    gwFront = undefined;
  });

  /** Images with a few layers each, recorded and published as a signed state. */
  async function publishImages(n: number, from = 0): Promise<{ images: Image[]; version: number }> {
    const images: Image[] = [];
    for (let i = from; i < from + n; i++) {
      const img = image({ layers: [randomLayer(96 * 1024), randomLayer(64 * 1024)] });
      await pushImage(world.client(), `library/app${i}`, img);
      await world.record('edge', `library/app${i}`, img, '1');
      images.push(img);
    }
    const { version } = await world.publish('edge');
    return { images, version };
  }

  /** The gateway: an agent serving on loopback, synced; and a proxy in front of its server. */
  async function gateway(): Promise<RunningAgent> {
    const gw = await world.start(await agentConfig(links.gwWan));
    expect((await gw.firstSync).groups.edge).to.equal('applied');
    gwFront = await startFaultProxy(gw.url);
    return gw;
  }

  const blobGets = (p: FaultProxy) => p.log.filter((l) => /^GET \/v2\/.+\/blobs\//.test(l));
  const manifestGets = (p: FaultProxy) => p.log.filter((l) => /^GET \/v2\/.+\/manifests\//.test(l));
  const metrics = async (a: RunningAgent) => (await fetch(`${a.url}/metrics`)).text();

  async function expectServes(device: RunningAgent, images: Image[]): Promise<void> {
    for (const [i, img] of images.entries()) {
      expect((await fetch(`${device.url}/v2/library/app${i}/manifests/1`)).status, `app${i}`).to.equal(200);
      for (const l of img.layers) {
        const stored = await readFile(join(device.agent.config.store, 'blobs', 'sha256', l.digest.slice(7)));
        expect(stored.equals(l.bytes), `app${i} ${l.digest} stored intact`).to.equal(true);
      }
    }
  }

  it('when a device has the gateway as upstream, then every manifest and blob comes from the gateway and the device asks the registry only the state\'s tag', async () => {
    const { images } = await publishImages(3);
    const gw = await gateway();
    expect(blobGets(links.gwWan).length, 'the gateway downloaded the blobs').to.be.greaterThan(images.length * 3);

    const device = await world.start(await agentConfig(links.devWan, { upstreams: [gwFront!.url] }));
    expect((await device.firstSync).groups.edge).to.equal('applied');
    await expectServes(device, images);
    expect(blobGets(links.devWan), 'no blob over the device\'s WAN').to.deep.equal([]);
    expect(manifestGets(links.devWan), 'no manifest over the device\'s WAN (state, signature, images)').to.deep.equal([]);
    expect(links.devWan.log.filter((l) => l.startsWith('HEAD ')), 'the tag, resolved at the registry').to.deep.equal([`HEAD /v2/${STATE}/manifests/latest`]);
    // The gateway served the state, its signature and every blob it names.
    expect(gwFront!.log.some((l) => l.startsWith(`GET /v2/${STATE}/manifests/sha256:`)), 'the state manifest by digest').to.equal(true);
    expect(gwFront!.log.some((l) => /\/manifests\/sha256-[a-f0-9]{64}\.sig$/.test(l)), 'its signature tag').to.equal(true);
    expect(blobGets(gwFront!).length).to.be.greaterThan(images.length * 3);
    const m = await metrics(device);
    expect(m).to.match(new RegExp(`satellite_agent_upstream_bytes_total\\{upstream="${gwFront!.url}"\\} [1-9]`));
    expect(m).to.not.match(/satellite_agent_upstream_failures_total\{/);
    // The state the gateway serves is what it verified: by digest and by `latest`, as its registry did.
    const latest = await fetch(`${gw.url}/v2/${STATE}/manifests/latest`, { method: 'HEAD' });
    expect(latest.headers.get('docker-content-digest')).to.equal(gw.agent.doc.groups.edge!.applied!.digest);
  });

  it('when the gateway holds every platform of the site (platforms: [linux/amd64, linux/arm64]), then an arm64 device and an amd64 device each get their own child of an index from it, none over their WAN', async () => {
    const idx = index([{ os: 'linux', architecture: 'amd64' }, { os: 'linux', architecture: 'arm64', variant: 'v8' }]);
    await pushIndex(world.client(), 'library/multi', idx);
    for (const c of idx.children) await world.record('edge', 'library/multi', c, null);
    await world.record('edge', 'library/multi', { manifest: idx.manifest, config: idx.manifest, layers: [] }, 'stable');
    await world.publish('edge');
    const gw = await world.start(await agentConfig(links.gwWan, { platforms: ['linux/amd64', 'linux/arm64'] }));
    expect((await gw.firstSync).groups.edge).to.equal('applied');
    gwFront = await startFaultProxy(gw.url);
    for (const [platform, child] of [['linux/arm64', idx.children[1]!], ['linux/amd64', idx.children[0]!]] as const) {
      const device = await world.start(await agentConfig(links.devWan, { upstreams: [gwFront.url], platforms: [platform] }));
      expect((await device.firstSync).groups.edge).to.equal('applied');
      const served = await fetch(`${device.url}/v2/library/multi/manifests/${child.manifest.digest}`);
      expect(served.status, platform).to.equal(200);
      expect(device.agent.doc.upstreams ?? {}, `${platform}: the gateway never failed`).to.deep.equal({});
    }
    expect(blobGets(links.devWan), 'no blob over the devices\' WAN').to.deep.equal([]);
    expect(manifestGets(links.devWan)).to.deep.equal([]);
  });

  it('when the gateway serves a corrupted blob, then the device refuses it, reports the gateway, and still converges from the registry', async () => {
    const { images } = await publishImages(2);
    await gateway();
    const victim = images[1]!.layers[0]!;
    gwFront!.rules.push({ method: 'GET', path: new RegExp(`/blobs/${victim.digest}$`), fault: 'corrupt', times: 1 });

    const device = await world.start(await agentConfig(links.devWan, { upstreams: [gwFront!.url] }));
    const summary = await device.firstSync;
    expect(summary.groups.edge).to.equal('applied');
    expect(summary.failedImages).to.equal(0);
    expect(gwFront!.injected(), 'the gateway was asked for it and sent it corrupted').to.equal(1);
    await expectServes(device, images);
    expect(blobGets(links.devWan), 'fetched again from the registry').to.include(`GET /v2/library/app1/blobs/${victim.digest}`);
    expect(device.agent.doc.upstreams?.[gwFront!.url]?.failures).to.deep.equal({ corrupt: 1 });
    expect(await metrics(device)).to.include(`satellite_agent_upstream_failures_total{upstream="${gwFront!.url}",reason="corrupt"} 1\n`);
    expect(statusTable(device.agent.doc, []), '`agent status`').to.match(new RegExp(`upstream ${gwFront!.url}: failures 1 corrupt; last \\S+: corrupt: blob ${victim.digest} arrived with digest`));
  });

  it('when the gateway sends a damaged signature manifest for the state, then the device reads the state again from the registry alone, applies it, and reports the gateway', async () => {
    const { images } = await publishImages(1);
    await gateway();
    // The signature is found by tag (sha256-<hex>.sig): no digest to check it against, only the signature check.
    gwFront!.rules.push({ method: 'GET', path: /\/manifests\/sha256-[a-f0-9]{64}\.sig$/, fault: 'corrupt', times: 1 });
    const device = await world.start(await agentConfig(links.devWan, { upstreams: [gwFront!.url] }));
    const summary = await device.firstSync;
    expect(gwFront!.injected()).to.equal(1);
    expect(summary.groups.edge, device.agent.doc.groups.edge?.error).to.equal('applied');
    await expectServes(device, images);
    expect(links.devWan.log.filter((l) => l.endsWith('.sig')), 'the signature read again from the registry').to.have.length(1);
    expect(device.agent.doc.upstreams?.[gwFront!.url]?.failures).to.deep.equal({ 'bad-state': 1 });
  });

  it('when a peer answers the state\'s signature tag with a body that is not a manifest, then the device reads the state from the registry alone and applies it', async () => {
    const { images } = await publishImages(1);
    const gw = await gateway();
    // A lying peer: the signature tag answered with garbage, everything else relayed from the gateway.
    const liar = await listenLocal(createServer((req, res) => {
      if (/\/manifests\/sha256-[a-f0-9]{64}\.sig$/.test(req.url ?? '')) {
        res.writeHead(200, { 'Content-Type': 'application/vnd.oci.image.manifest.v1+json' }).end('this is not JSON');
        return;
      }
      forward(new URL(gw.url), req, res);
    }));
    try {
      const device = await world.start(await agentConfig(links.devWan, { upstreams: [liar.url] }));
      const summary = await device.firstSync;
      expect(summary.groups.edge, device.agent.doc.groups.edge?.error).to.equal('applied');
      await expectServes(device, images);
      expect(links.devWan.log.filter((l) => l.endsWith('.sig')), 'the signature read from the registry').to.have.length(1);
      expect(device.agent.doc.upstreams?.[liar.url]?.failures).to.deep.equal({ 'bad-state': 1 });
    } finally {
      await liar.close();
    }
  });

  it('when the registry is unreachable and the gateway offers an older signed state as latest, then it is refused as a rollback, reported, and the device converges from the registry once it is back', async () => {
    await publishImages(1, 0);
    const gw = await gateway(); // the gateway holds v1, its `latest`
    const v2 = await publishImages(1, 1);
    const device = await world.start(await agentConfig(links.devWan, { upstreams: [gwFront!.url] }));
    expect((await device.firstSync).groups.edge).to.equal('applied');
    expect(device.agent.doc.groups.edge!.applied!.version).to.equal(v2.version);
    expect((await fetch(`${gw.url}/v2/${STATE}/manifests/latest`)).status, 'the gateway still serves v1').to.equal(200);

    const v3 = await publishImages(1, 2);
    await links.devWan.refuse();
    const offline = await device.agent.syncOnce();
    expect(offline.groups.edge, 'no state from the registry, none acceptable from the gateway').to.equal('unreachable');
    const rec = device.agent.doc.groups.edge!;
    expect(rec.applied!.version, 'the newer state stays applied').to.equal(v2.version);
    expect(rec.error).to.match(/refused \(replay\)/);
    expect(device.agent.doc.upstreams?.[gwFront!.url]?.failures).to.deep.equal({ rollback: 1 });
    expect(await metrics(device)).to.include(`satellite_agent_upstream_failures_total{upstream="${gwFront!.url}",reason="rollback"} 1\n`);
    expect((await fetch(`${device.url}/v2/library/app1/manifests/1`)).status, 'v2\'s image still served').to.equal(200);

    await links.devWan.accept();
    const back = await device.agent.syncOnce();
    expect(back.groups.edge).to.equal('applied');
    expect(device.agent.doc.groups.edge!.applied!.version).to.equal(v3.version);
    expect((await fetch(`${device.url}/v2/library/app2/manifests/1`)).status).to.equal(200);
  });

  it('when the gateway stalls in the middle of a blob, then the device abandons it after the upstream timeout, skips the gateway for the rest of the sync, and converges from the registry', async function () {
    const { images } = await publishImages(3);
    await gateway();
    // Every image blob the gateway sends stops half-way, the connection left open and silent.
    gwFront!.rules.push({ method: 'GET', path: /\/library\/app\d+\/blobs\//, fault: 'stall', times: 1_000 });

    // One image at a time, so that exactly one download meets the stall; the registry's own
    // timeout (60 s) is past this test's: only the upstream's (1 s) lets it pass.
    this.timeout(45_000);
    const device = await world.start(await agentConfig(links.devWan, { upstreams: [gwFront!.url], upstreamTimeout: '1s', timeout: '60s', concurrency: 1 }));
    const summary = await device.firstSync;
    expect(summary.groups.edge).to.equal('applied');
    expect(summary.failedImages).to.equal(0);
    await expectServes(device, images);
    expect(gwFront!.injected(), 'one blob stalled, then the gateway was left alone').to.equal(1);
    expect(device.agent.doc.upstreams?.[gwFront!.url]?.failures, 'reported once').to.deep.equal({ stalled: 1 });
    expect(device.agent.doc.upstreams?.[gwFront!.url]?.skippedUntil).to.be.a('string');
  });

  it('when the gateway is gone (connections refused), then the device pays one refused connection per pass, logs it once, and converges from the registry', async () => {
    const { images } = await publishImages(2);
    await gateway();
    await gwFront!.refuse();
    const lines: string[] = [];
    const log = pino({ level: 'warn' }, new Writable({ write(chunk: Buffer, _enc, done) { lines.push(chunk.toString()); done(); } }));
    const device = await startAgent(await agentConfig(links.devWan, { upstreams: [gwFront!.url] }), log);
    try {
      const summary = await device.firstSync;
      expect(summary.groups.edge).to.equal('applied');
      await expectServes(device, images);
      expect(device.agent.doc.upstreams?.[gwFront!.url]?.failures, 'one refused connection, then skipped').to.deep.equal({ refused: 1 });
      expect(blobGets(links.devWan).length).to.be.greaterThan(images.length * 2);

      // Its pause over, the next new state tries it again: counted again, not logged again.
      device.agent.upstreams!.list[0]!.skipUntil = 0;
      const next = await publishImages(1, 2);
      expect((await device.agent.syncOnce()).groups.edge).to.equal('applied');
      expect(device.agent.doc.groups.edge!.applied!.version).to.equal(next.version);
      expect(device.agent.doc.upstreams?.[gwFront!.url]?.failures).to.deep.equal({ refused: 2 });
      const warned = lines.filter((l) => l.includes('site upstream failed'));
      expect(warned, 'one warn line per upstream and kind').to.have.length(1);
      expect(warned[0]).to.include(gwFront!.url).and.include('"reason":"refused"');
    } finally {
      await device.stop();
    }
  });

  it('when upstreams names something that is not an http(s) base URL, then the configuration is refused naming the entry', async () => {
    const bad = async (upstreams: unknown) => {
      try {
        loadAgentConfig(await world.configFile({ upstreams }), {});
        return 'accepted';
      } catch (err) {
        expect(err).to.be.instanceOf(AgentConfigError);
        return (err as Error).message;
      }
    };
    expect(await bad(['site-gw:8585'])).to.include('upstreams[0]: "site-gw:8585" is not an http(s) URL');
    expect(await bad(['http://site-gw:8585', 'ftp://x'])).to.include('upstreams[1]: "ftp://x" is not an http(s) URL');
    expect(await bad(['http://site-gw:8585/v2/'])).to.include('upstreams[0]: "http://site-gw:8585/v2/" must be a base URL');
    expect(await bad('http://site-gw:8585')).to.include('upstreams: must be array');
    const ok = loadAgentConfig(await world.configFile({ upstreams: ['http://site-gw:8585/', 'https://peer.local'] }), {});
    expect(ok.upstreams).to.deep.equal(['http://site-gw:8585', 'https://peer.local']);
  });
});
