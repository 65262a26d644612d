import { expect } from 'chai';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { AgentConfig } from '../../agent/config/config.js';
import type { RunningAgent } from '../../agent/run.js';
import { pushImage, useAgentWorld, useSiteLinks } from '../support/agent.js';
import { image, randomLayer, type Image } from '../support/oci.js';

// Pull-through (agent/serve/pull-through.ts): a gateway asked by a peer for a digest a state
// it verified names, but that it does not hold yet, fetches it once and serves it. Each agent
// reaches the registry through a counting proxy of its own; together they are the site's
// WAN. Real docker-registry, real signed states from the worker, real agents.

const STATE = 'satellite/group-state/edge/state';

describe('the edge agent: pull-through (a gateway fetches for its site)', function () {
  this.timeout(60_000);
  const world = useAgentWorld();
  const { links, agentConfig } = useSiteLinks(world, STATE);

  async function publishImages(n: number): Promise<Image[]> {
    const images: Image[] = [];
    for (let i = 0; i < n; i++) {
      const img = image({ layers: [randomLayer(256 * 1024), randomLayer(128 * 1024)] });
      await pushImage(world.client(), `library/app${i}`, img);
      await world.record('edge', `library/app${i}`, img, '1');
      images.push(img);
    }
    await world.publish('edge');
    return images;
  }

  /** GETs of image content (not the state's) by digest over both WAN links, per digest. */
  function imageGetsPerDigest(): Map<string, number> {
    const counts = new Map<string, number>();
    for (const line of [...links.gwWan.log, ...links.devWan.log]) {
      const m = /^GET \/v2\/library\/.+\/(?:blobs|manifests)\/(sha256:[a-f0-9]{64})$/.exec(line);
      if (m) counts.set(m[1]!, (counts.get(m[1]!) ?? 0) + 1);
    }
    return counts;
  }

  it('when the gateway and a device start at once, then each image manifest and blob crosses the WAN once, and the device gets it from the gateway', async () => {
    const images = await publishImages(4);
    const gw = await world.start(await agentConfig(links.gwWan, { server: { pullThrough: true } }));
    const device: RunningAgent = await world.start(await agentConfig(links.devWan, { upstreams: [gw.url] }));
    const [gwSync, devSync] = await Promise.all([gw.firstSync, device.firstSync]);
    expect(gwSync.groups.edge).to.equal('applied');
    expect(devSync.groups.edge).to.equal('applied');
    expect(devSync.failedImages).to.equal(0);
    for (const [i, img] of images.entries()) {
      expect((await fetch(`${device.url}/v2/library/app${i}/manifests/1`)).status, `app${i}`).to.equal(200);
      for (const l of img.layers) {
        const stored = await readFile(join(device.agent.config.store, 'blobs', 'sha256', l.digest.slice(7)));
        expect(stored.equals(l.bytes), `app${i} ${l.digest} stored intact`).to.equal(true);
      }
    }
    const counts = imageGetsPerDigest();
    const expected = images.flatMap((img) => [img.manifest.digest, img.config.digest, ...img.layers.map((l) => l.digest)]);
    for (const d of expected) expect(counts.get(d) ?? 0, `${d} over the WAN`).to.equal(1);
    expect([...counts.values()].every((n) => n === 1), 'no digest twice').to.equal(true);
    expect(links.devWan.log.filter((l) => /^GET \/v2\/library\//.test(l)), 'no image content over the device\'s own link').to.deep.equal([]);
    expect(device.agent.doc.upstreams ?? {}, 'the gateway never failed').to.deep.equal({});
  });

  it('when a peer asks the gateway for a digest no verified state names, then 404 and no registry request, even when the registry holds it', async () => {
    await publishImages(1);
    const stray = image({ layers: [randomLayer(64 * 1024)] });
    await pushImage(world.client(), 'library/app0', stray, 'unlisted'); // in the registry, in no state
    const gw = await world.start(await agentConfig(links.gwWan, { server: { pullThrough: true } }));
    expect((await gw.firstSync).groups.edge).to.equal('applied');
    const before = links.gwWan.log.length;
    const asks = [
      `/v2/library/app0/manifests/${stray.manifest.digest}`,
      `/v2/library/app0/blobs/${stray.layers[0]!.digest}`,
      `/v2/library/app0/blobs/${stray.config.digest}`,
      `/v2/library/other/blobs/sha256:${'0'.repeat(64)}`,
    ];
    for (const path of asks) {
      const res = await fetch(`${gw.url}${path}`);
      expect(res.status, path).to.equal(404);
      await res.arrayBuffer();
    }
    expect(links.gwWan.log.slice(before), 'nothing asked of the registry').to.deep.equal([]);
  });

  it('when server.pullThrough is not set (the default), then an agent that lacks a named blob answers 404 and fetches nothing', async () => {
    const images = await publishImages(1);
    const gw = await world.start(await agentConfig(links.gwWan));
    expect(gw.agent.config.server.pullThrough).to.equal(false);
    expect((await gw.firstSync).groups.edge).to.equal('applied');
    // Removed from the store (as a collection would): named by the state, not held.
    const layer = images[0]!.layers[0]!;
    await gw.agent.store.remove(layer.digest);
    const before = links.gwWan.log.length;
    const res = await fetch(`${gw.url}/v2/library/app0/blobs/${layer.digest}`);
    expect(res.status).to.equal(404);
    await res.arrayBuffer();
    expect(links.gwWan.log.slice(before)).to.deep.equal([]);
  });
});
