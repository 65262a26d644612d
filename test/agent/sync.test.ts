import { expect } from 'chai';
import { readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ArtifactStore } from '../../core/store/artifact-store.js';
import { useAgentWorld, pushImage, pushIndex } from '../support/agent.js';
import { startFaultProxy, type FaultProxy } from '../support/fault-proxy.js';
import { image, index } from '../support/oci.js';

const get = (base: string, path: string, init?: RequestInit) => fetch(`${base}${path}`, init);

describe('the edge agent: sync, pull by digest, serve', function () {
  this.timeout(60_000);
  const world = useAgentWorld();
  let proxy: FaultProxy;
  beforeEach(async () => {
    proxy = await startFaultProxy(world.registryUrl); // the image registry the states name: its log is what the agent asked
  });
  afterEach(async () => proxy?.close());
  /** Requests the agent made for a digest (any method, manifest or blob). */
  const asked = (digest: string) => proxy.log.filter((l) => l.endsWith(`/${digest}`));

  it('when a group lists an image and a multi-arch index, then the agent serves exactly those bytes, with only the device\'s platform of the index', async () => {
    const client = world.client();
    const alpine = image();
    const nginx = index([{ architecture: 'amd64', os: 'linux' }, { architecture: 'arm64', os: 'linux' }]);
    await pushImage(client, 'library/alpine', alpine, '3.20');
    await pushIndex(client, 'library/nginx', nginx, '1.27');
    await world.record('edge', 'library/alpine', alpine, '3.20');
    for (const c of nginx.children) await world.record('edge', 'library/nginx', c, null);
    await world.record('edge', 'library/nginx', { manifest: nginx.manifest, config: nginx.manifest, layers: [] }, '1.27');
    const published = await world.publish('edge', proxy.url);

    const agent = await world.start(await world.config({ platforms: ['linux/arm64'] }));
    expect(await agent.firstSync).to.deep.include({ groups: { edge: 'applied' }, failedImages: 0 });

    const byTag = await get(agent.url, '/v2/library/nginx/manifests/1.27');
    expect(byTag.status).to.equal(200);
    expect(Buffer.from(await byTag.arrayBuffer()).equals(nginx.manifest.bytes), 'the signed index, byte for byte').to.equal(true);
    expect(byTag.headers.get('docker-content-digest')).to.equal(nginx.manifest.digest);
    expect(byTag.headers.get('content-type')).to.equal('application/vnd.oci.image.index.v1+json');
    const arm = nginx.children[1]!;
    const amd = nginx.children[0]!;
    expect((await get(agent.url, `/v2/library/nginx/manifests/${arm.manifest.digest}`)).status).to.equal(200);
    expect((await get(agent.url, `/v2/library/nginx/manifests/${amd.manifest.digest}`)).status, 'not this device\'s platform').to.equal(404);
    for (const l of arm.layers) {
      const res = await get(agent.url, `/v2/library/nginx/blobs/${l.digest}`);
      expect(Buffer.from(await res.arrayBuffer()).equals(l.bytes)).to.equal(true);
    }
    const stored = await readdir(join(agent.agent.config.store, 'blobs', 'sha256'));
    for (const l of amd.layers) expect(stored, 'no byte of the other platform was pulled').to.not.include(l.digest.slice(7));
    for (const b of [arm.manifest, arm.config, ...arm.layers]) expect(asked(b.digest), 'the device\'s child was fetched').to.deep.equal([`GET /v2/library/nginx/${b === arm.manifest ? 'manifests' : 'blobs'}/${b.digest}`]);
    for (const b of [amd.manifest, amd.config, ...amd.layers]) expect(asked(b.digest), 'the other platform\'s child was never asked for').to.deep.equal([]);

    // alpine is amd64 only: its config says so, and it is decided before any layer.
    expect((await get(agent.url, '/v2/library/alpine/manifests/3.20')).status).to.equal(404);
    for (const l of alpine.layers) expect(stored).to.not.include(l.digest.slice(7));
    expect(asked(alpine.config.digest), 'decided by its config').to.have.length(1);
    for (const l of alpine.layers) expect(asked(l.digest), 'no layer of it asked for').to.deep.equal([]);
    const status = agent.agent.doc.groups.edge!;
    expect(status.applied).to.include({ version: published.version, digest: published.digest });
    expect(Object.values(status.images).map((i) => [i.repository, i.status])).to.have.deep.members([['library/alpine', 'skipped'], ['library/nginx', 'present']]);
  });

  it('when an index carries attestation manifests (unknown/unknown), then they are skipped unless the device asks for them', async () => {
    const client = world.client();
    const built = index([{ architecture: 'amd64', os: 'linux' }, { architecture: 'unknown', os: 'unknown' }]);
    await pushIndex(client, 'library/built', built, '1');
    for (const c of built.children) await world.record('edge', 'library/built', c, null);
    await world.record('edge', 'library/built', { manifest: built.manifest, config: built.manifest, layers: [] }, '1');
    await world.publish('edge', proxy.url);
    const attestation = built.children[1]!;
    const plain = await world.start(await world.config());
    await plain.firstSync;
    expect((await get(plain.url, `/v2/library/built/manifests/${built.children[0]!.manifest.digest}`)).status).to.equal(200);
    expect((await get(plain.url, `/v2/library/built/manifests/${attestation.manifest.digest}`)).status, 'skipped by default').to.equal(404);
    for (const b of [attestation.manifest, attestation.config, ...attestation.layers]) expect(asked(b.digest), 'never asked for by default').to.deep.equal([]);
    await plain.stop();
    const asking = await world.start(await world.config({ attestations: true }));
    await asking.firstSync;
    expect((await get(asking.url, `/v2/library/built/manifests/${attestation.manifest.digest}`)).status, 'pulled when asked').to.equal(200);
    for (const b of [attestation.manifest, attestation.config, ...attestation.layers]) expect(asked(b.digest), 'fetched when asked').to.have.length(1);
  });

  it('when blobs are asked with Range, then the agent answers 206 with the bytes asked, and tags are listed as the state lists them', async () => {
    const client = world.client();
    const img = image();
    await pushImage(client, 'library/app', img);
    await world.record('edge', 'library/app', img, '2.0');
    await world.record('edge', 'library/app', img, 'stable');
    await world.publish('edge');
    const agent = await world.start(await world.config());
    await agent.firstSync;
    const layer = img.layers[0]!;
    const part = await get(agent.url, `/v2/library/app/blobs/${layer.digest}`, { headers: { Range: 'bytes=10-99' } });
    expect(part.status).to.equal(206);
    expect(part.headers.get('content-range')).to.equal(`bytes 10-99/${layer.size}`);
    expect(Buffer.from(await part.arrayBuffer()).equals(layer.bytes.subarray(10, 100))).to.equal(true);
    const head = await get(agent.url, `/v2/library/app/blobs/${layer.digest}`, { method: 'HEAD' });
    expect(head.headers.get('content-length')).to.equal(String(layer.size));
    expect((await get(agent.url, `/v2/library/app/blobs/${layer.digest}`, { headers: { Range: `bytes=${layer.size}-` } })).status).to.equal(416);
    const tags = await (await get(agent.url, '/v2/library/app/tags/list')).json();
    expect(tags).to.deep.equal({ name: 'library/app', tags: ['2.0', 'stable'] });
    expect((await get(agent.url, '/v2/library/app/manifests/2.0', { method: 'PUT', body: '{}' })).status, 'read-only').to.equal(405);
  });

  it('when an image is deleted in Harbor, then the next state\'s tombstone removes it from what is served and its blobs from the store', async () => {
    const client = world.client();
    const keep = image();
    const gone = image();
    await pushImage(client, 'library/keep', keep);
    await pushImage(client, 'library/gone', gone);
    await world.record('edge', 'library/keep', keep, '1');
    await world.record('edge', 'library/gone', gone, '1');
    await world.publish('edge');
    const agent = await world.start(await world.config());
    await agent.firstSync;
    expect((await get(agent.url, '/v2/library/gone/manifests/1')).status).to.equal(200);

    await new ArtifactStore(world.db.pool).deleteManifest({ group: 'edge', repository: 'library/gone' }, gone.manifest.digest);
    await world.publish('edge');
    // An interrupted download of something no state wants any more.
    const abandoned = join(agent.agent.config.store, 'ingest', `sha256-${'ab'.repeat(32)}.partial`);
    await writeFile(abandoned, 'half a blob');
    expect(await agent.agent.syncOnce()).to.deep.include({ groups: { edge: 'applied' } });
    expect((await get(agent.url, '/v2/library/gone/manifests/1')).status).to.equal(404);
    expect((await get(agent.url, `/v2/library/gone/blobs/${gone.layers[0]!.digest}`)).status).to.equal(404);
    const stored = await readdir(join(agent.agent.config.store, 'blobs', 'sha256'));
    for (const b of [gone.manifest, gone.config, ...gone.layers]) expect(stored, 'collected').to.not.include(b.digest.slice(7));
    for (const b of [keep.manifest, keep.config, ...keep.layers]) expect(stored, 'kept').to.include(b.digest.slice(7));
    expect((await get(agent.url, '/v2/library/keep/manifests/1')).status).to.equal(200);
    expect(await readdir(join(agent.agent.config.store, 'ingest')), 'the abandoned partial download is dropped').to.deep.equal([]);
  });

  it('when a tag moves to a new image, then the agent serves the new one and removes the digest the tag left behind', async () => {
    const client = world.client();
    const old = image();
    const fresh = image();
    await pushImage(client, 'library/app', old);
    await pushImage(client, 'library/app', fresh);
    await world.record('edge', 'library/app', old, 'stable');
    await world.publish('edge');
    const agent = await world.start(await world.config());
    await agent.firstSync;
    expect((await get(agent.url, '/v2/library/app/manifests/stable')).headers.get('docker-content-digest')).to.equal(old.manifest.digest);

    await world.record('edge', 'library/app', fresh, 'stable'); // Harbor moved the tag
    await world.publish('edge');
    expect((await agent.agent.syncOnce()).groups.edge).to.equal('applied');
    expect((await get(agent.url, '/v2/library/app/manifests/stable')).headers.get('docker-content-digest')).to.equal(fresh.manifest.digest);
    expect((await get(agent.url, `/v2/library/app/manifests/${old.manifest.digest}`)).status, 'the superseded digest is not served').to.equal(404);
    const stored = await readdir(join(agent.agent.config.store, 'blobs', 'sha256'));
    for (const b of [old.manifest, old.config, ...old.layers]) expect(stored, 'the superseded image left the disk').to.not.include(b.digest.slice(7));
  });

  it('when images share layers, then each shared layer is downloaded once', async () => {
    const client = world.client();
    const { randomLayer } = await import('../support/oci.js');
    const base = randomLayer(64 * 1024);
    const images = Array.from({ length: 6 }, () => image({ layers: [base, randomLayer(1024)] }));
    for (const [i, img] of images.entries()) {
      await pushImage(client, `library/app${i}`, img);
      await world.record('edge', `library/app${i}`, img, '1');
    }
    await world.publish('edge');
    const agent = await world.start(await world.config());
    const summary = await agent.firstSync;
    const unique = [base, ...images.flatMap((i) => [i.manifest, i.config, i.layers[1]!])].reduce((n, b) => n + b.size, 0);
    expect(summary.failedImages).to.equal(0);
    expect(summary.bytes - unique, 'only the state itself beyond the unique blobs').to.be.below(10 * 1024);
  });

  it('when many blobs are to be pulled, then no more than twice `concurrency` downloads are in flight at once', async () => {
    const client = world.client();
    const { randomLayer } = await import('../support/oci.js');
    for (let i = 0; i < 6; i++) {
      const img = image({ layers: Array.from({ length: 5 }, () => randomLayer(1024)) });
      await pushImage(client, `library/app${i}`, img);
      await world.record('edge', `library/app${i}`, img, '1');
    }
    await world.publish('edge', proxy.url);
    // Every blob answer is held a while, so downloads overlap as much as the agent lets them.
    proxy.rules.push({ method: 'GET', path: /\/blobs\//, fault: 'slow', times: 1_000, delayMs: 150 });
    const blobs = proxy.inFlight('GET', /\/blobs\//);
    const agent = await world.start(await world.config({ concurrency: 2 }));
    expect(await agent.firstSync).to.deep.include({ failedImages: 0 });
    expect(proxy.log.filter((l) => l.startsWith('GET ') && l.includes('/blobs/')), 'every config and layer').to.have.length(36);
    expect(blobs.peak, 'bounded at 2 × concurrency, and the bound is used').to.equal(4);
  });

  it('when a sync collects what a tombstone and a moved tag left, then at no moment is a served manifest missing a blob, and the unreferenced blobs are gone at the end', async () => {
    const client = world.client();
    const { randomLayer } = await import('../support/oci.js');
    const shared = randomLayer(4096);
    const old = image({ layers: [shared, randomLayer(), randomLayer()] });
    const fresh = image({ layers: [shared, randomLayer(100_000)] });
    const gone = image();
    await pushImage(client, 'library/app', old);
    await pushImage(client, 'library/app', fresh);
    await pushImage(client, 'library/gone', gone);
    await world.record('edge', 'library/app', old, 'stable');
    await world.record('edge', 'library/gone', gone, '1');
    await world.publish('edge', proxy.url);
    const agent = await world.start(await world.config());
    expect(await agent.firstSync).to.deep.include({ failedImages: 0 });

    await world.record('edge', 'library/app', fresh, 'stable'); // the tag moves
    await new ArtifactStore(world.db.pool).deleteManifest({ group: 'edge', repository: 'library/gone' }, gone.manifest.digest); // a tombstone
    await world.publish('edge', proxy.url);
    proxy.rules.push({ method: 'GET', path: /\/blobs\//, fault: 'slow', times: 1_000, delayMs: 100 }); // a sync that takes a while

    const manifests = [['library/app', old], ['library/app', fresh], ['library/gone', gone]] as const;
    /** The manifests served right now that name `digest`. */
    const servedNaming = async (digest: string) => {
      const out: string[] = [];
      for (const [repo, img] of manifests) {
        for (const ref of [img.manifest.digest, repo === 'library/gone' ? '1' : 'stable']) {
          const res = await get(agent.url, `/v2/${repo}/manifests/${ref}`);
          if (res.status !== 200) continue;
          const doc = JSON.parse(Buffer.from(await res.arrayBuffer()).toString()) as { config: { digest: string }; layers: { digest: string }[] };
          if ([doc.config, ...doc.layers].some((d) => d.digest === digest)) out.push(`${repo}:${ref}`);
        }
      }
      return out;
    };
    // Each removal from the store is checked at the moment it happens.
    const store = agent.agent.store;
    const remove = store.remove.bind(store);
    const removed: string[] = [];
    const violations: string[] = [];
    store.remove = async (digest: string) => {
      for (const m of await servedNaming(digest)) violations.push(`${digest} removed while ${m} was served`);
      removed.push(digest);
      await remove(digest);
    };
    // And a runtime pulls the whole time: a blob missing while its manifest is still served is a hole.
    let syncing = true;
    const pulls = (async () => {
      let n = 0;
      while (syncing) {
        for (const [repo, img] of manifests) {
          const m = await get(agent.url, `/v2/${repo}/manifests/${img.manifest.digest}`);
          await m.arrayBuffer();
          if (m.status !== 200) continue;
          for (const b of [img.config, ...img.layers]) {
            const res = await get(agent.url, `/v2/${repo}/blobs/${b.digest}`);
            await res.arrayBuffer().catch(() => undefined);
            if (res.status === 200) continue;
            const still = await get(agent.url, `/v2/${repo}/manifests/${img.manifest.digest}`);
            await still.arrayBuffer();
            if (still.status === 200) violations.push(`${repo}@${img.manifest.digest} served without ${b.digest}`);
          }
        }
        n++;
      }
      return n;
    })();
    const summary = await agent.agent.syncOnce();
    syncing = false;
    expect(await pulls, 'pulled during the sync').to.be.above(0);
    expect(summary).to.deep.include({ groups: { edge: 'applied' }, failedImages: 0 });
    expect(violations).to.deep.equal([]);

    const unreferenced = [old.manifest, old.config, ...old.layers.slice(1), gone.manifest, gone.config, ...gone.layers].map((b) => b.digest);
    expect(removed, 'what no state names was collected').to.include.members(unreferenced);
    const stored = await readdir(join(agent.agent.config.store, 'blobs', 'sha256'));
    for (const d of unreferenced) expect(stored, 'collected').to.not.include(d.slice(7));
    for (const b of [fresh.manifest, fresh.config, ...fresh.layers]) expect(stored, 'kept, the shared layer too').to.include(b.digest.slice(7));
    expect((await get(agent.url, '/v2/library/app/manifests/stable')).headers.get('docker-content-digest')).to.equal(fresh.manifest.digest);
  });
});
