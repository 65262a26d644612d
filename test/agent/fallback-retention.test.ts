import { expect } from 'chai';
import { utimes } from 'node:fs/promises';
import { pushImage, useAgentWorld } from '../support/agent.js';
import { startFaultProxy, type FaultProxy } from '../support/fault-proxy.js';
import { image, randomLayer, sha256, type Image } from '../support/oci.js';

// A tag whose new image cannot be pulled keeps serving its previous image. While images
// fail, the collector spares blobs downloaded within its keep-recent window (an hour,
// agent/sync/agent.ts) whoever needs them; past that window only what the served view names is
// kept. The previous image must be among it: a tag left on it for longer than the window
// (a registry down for a day) must not lose its layers.

/** Well past the collector's keep-recent window (an hour). */
const LONG_AGO = new Date(Date.now() - 3 * 60 * 60 * 1000);

describe('the edge agent: a tag kept on its previous image past the collector\'s window', function () {
  this.timeout(60_000);
  const world = useAgentWorld();
  let proxy: FaultProxy;
  beforeEach(async () => {
    proxy = await startFaultProxy(world.registryUrl); // the image registry the states name
  });
  afterEach(async () => proxy?.close());

  /** Whether the agent serves `img` whole under `repo`: by `tag`, by digest, and each of its blobs, byte for byte. */
  const servesWhole = async (url: string, repo: string, img: Image, tag: string): Promise<string> => {
    for (const ref of [tag, img.manifest.digest]) {
      const res = await fetch(`${url}/v2/${repo}/manifests/${ref}`);
      const body = Buffer.from(await res.arrayBuffer());
      if (res.status !== 200 || !body.equals(img.manifest.bytes)) return `manifest ${ref}: ${res.status}`;
    }
    for (const b of [img.config, ...img.layers]) {
      const res = await fetch(`${url}/v2/${repo}/blobs/${b.digest}`);
      const body = Buffer.from(await res.arrayBuffer());
      if (res.status !== 200 || !body.equals(b.bytes)) return `blob ${b.digest}: ${res.status}`;
    }
    return 'whole';
  };

  it('when a tag\'s new image keeps failing for longer than the keep-recent window, then the previous image (manifest and every blob) is still served and kept, while a blob nothing names is collected', async () => {
    const a = image({ layers: [randomLayer(20_000), randomLayer(20_000)] });
    const b = image({ layers: [randomLayer(20_000)] });
    await pushImage(world.client(), 'library/app', a);
    await pushImage(world.client(), 'library/app', b);
    await world.record('edge', 'library/app', a, 'stable');
    await world.publish('edge', proxy.url);
    const agent = await world.start(await world.config());
    expect((await agent.firstSync).failedImages).to.equal(0);
    await world.record('edge', 'library/app', b, 'stable'); // the tag moves to b
    await world.publish('edge', proxy.url);

    await proxy.refuse(); // the image registry is down, and stays down
    expect(await agent.agent.syncOnce()).to.deep.include({ groups: { edge: 'applied' }, failedImages: 1 });
    expect(await servesWhole(agent.url, 'library/app', a, 'stable'), 'the previous image is served').to.equal('whole');

    // Time passes: every file in the store is older than the window. And a blob that no
    // state and no fallback names (left by something else), equally old: the control
    // that the collection below runs with the window passed.
    const stray = Buffer.from('a blob no state names');
    await agent.agent.store.write(sha256(stray), stray);
    for (const d of await agent.agent.store.list()) await utimes(agent.agent.store.path(d), LONG_AGO, LONG_AGO);

    expect(await agent.agent.syncOnce(), 'a retry that fails again, and collects').to.deep.include({ groups: { edge: 'retried' }, failedImages: 1 });
    expect(await agent.agent.store.has(sha256(stray)), 'the window has passed: what nothing names is collected').to.equal(false);
    expect(await servesWhole(agent.url, 'library/app', a, 'stable'), 'the previous image is still served whole').to.equal('whole');
    for (const blob of [a.manifest, a.config, ...a.layers]) expect(await agent.agent.store.has(blob.digest), `${blob.digest} kept`).to.equal(true);

    await proxy.accept();
    expect(await agent.agent.syncOnce()).to.deep.include({ groups: { edge: 'retried' }, failedImages: 0 });
    expect(await servesWhole(agent.url, 'library/app', b, 'stable'), 'the replacement, once present').to.equal('whole');
    for (const blob of [a.manifest, ...a.layers]) expect(await agent.agent.store.has(blob.digest), `${blob.digest} collected only now`).to.equal(false);
  });
});
