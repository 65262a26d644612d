import { expect } from 'chai';
import { startDockerRegistry, type LocalRegistry } from '../../harbor-dev/docker-registry.js';
import { RegistryClient } from '../../core/registry/registry-client.js';
import { ArtifactStore } from '../../core/store/artifact-store.js';
import { useAgentWorld, pushImage, pushIndex } from '../support/agent.js';
import { image, index } from '../support/oci.js';

describe('the edge agent: an existing registry at the site as the target', function () {
  this.timeout(60_000);
  const world = useAgentWorld();
  let site: LocalRegistry;
  before(async () => {
    site = await startDockerRegistry();
  });
  after(async () => site?.stop());

  it('when a site registry is the target, then every platform of an index is pushed there (distribution refuses a partial index), tags as listed, and a tombstone deletes it', async () => {
    const client = world.client();
    const app = image();
    const multi = index([{ architecture: 'amd64', os: 'linux' }, { architecture: 'arm64', os: 'linux' }]);
    await pushImage(client, 'library/app', app);
    await pushIndex(client, 'library/multi', multi);
    await world.record('edge', 'library/app', app, '1.0');
    for (const c of multi.children) await world.record('edge', 'library/multi', c, null);
    await world.record('edge', 'library/multi', { manifest: multi.manifest, config: multi.manifest, layers: [] }, '2.0');
    await world.publish('edge');

    const agent = await world.start(await world.config({ platforms: ['linux/arm64'], pushTo: { registry: site.url } }));
    expect(await agent.firstSync).to.deep.include({ failedImages: 0 });
    const target = new RegistryClient(site.url);
    const idx = (await target.getManifest('library/multi', '2.0'))!;
    expect(idx.bytes.equals(multi.manifest.bytes), 'the signed index, byte for byte').to.equal(true);
    for (const c of multi.children) {
      expect((await target.getManifest('library/multi', c.manifest.digest))?.digest).to.equal(c.manifest.digest);
      for (const l of c.layers) expect((await target.getBlob('library/multi', l.digest)).equals(l.bytes)).to.equal(true);
    }
    expect((await target.headManifest('library/app', '1.0'))?.digest, 'an amd64 image goes to the target too').to.equal(app.manifest.digest);

    await new ArtifactStore(world.db.pool).deleteManifest({ group: 'edge', repository: 'library/app' }, app.manifest.digest);
    await world.publish('edge');
    await agent.agent.syncOnce();
    expect(await target.headManifest('library/app', app.manifest.digest), 'deleted at the target').to.equal(undefined);
    expect((await target.headManifest('library/multi', '2.0'))?.digest).to.equal(multi.manifest.digest);
  });
});
