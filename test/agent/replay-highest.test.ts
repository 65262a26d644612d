import { expect } from 'chai';
import { loadAgentConfig } from '../../agent/config/config.js';
import { signatureTag } from '../../core/cosign/signature-image.js';
import { pushImage, runBundle, useAgentWorld } from '../support/agent.js';
import { image } from '../support/oci.js';

// A replay is judged against the highest version the device ever applied from `latest`,
// not against what it holds now: a pin to an older version must not lower the bar, or
// unpinning would let a replayed state between the two through.

const STATE = 'satellite/group-state/edge/state';
const MANIFEST = 'application/vnd.oci.image.manifest.v1+json';

describe('the edge agent: replay refusal after a pin', function () {
  this.timeout(60_000);
  const world = useAgentWorld();

  it('when v3 was applied, the group pinned to v1, v2 put at latest and the group unpinned, then v2 is refused as a replay and v1 stays applied', async () => {
    const client = world.client();
    const versions = [];
    for (const name of ['a', 'b', 'c']) {
      const img = image();
      await pushImage(client, `library/${name}`, img);
      await world.record('edge', `library/${name}`, img, name);
      versions.push(await world.publish('edge'));
    }
    const [v1, v2, v3] = versions as [typeof versions[0], typeof versions[0], typeof versions[0]];
    expect([v1.version, v2.version, v3.version]).to.deep.equal([1, 2, 3]);
    const file = await world.configFile();
    const status = async () => JSON.parse((await runBundle(['status', '--json', '--config', file])).out).groups[0];

    const first = await runBundle(['--once', '--config', file]);
    expect(first.code, first.out).to.equal(0);
    expect(await status()).to.include({ version: 3, digest: v3.digest });

    const pinned = await runBundle(['pin', 'edge', '1', '--config', file]);
    expect(pinned.code, pinned.out).to.equal(0);
    expect(await status()).to.include({ version: 1, digest: v1.digest, pinned: true });

    // The genuinely signed v2 is put back at latest (a stale mirror, or an attacker).
    await client.putManifest(STATE, 'latest', (await client.getManifest(STATE, v2.digest))!.bytes, MANIFEST);
    expect(await client.headManifest(STATE, signatureTag(v2.digest)), 'v2 carries its real signature').to.not.equal(undefined);

    const unpinned = await runBundle(['unpin', 'edge', '--config', file]);
    expect(unpinned.code, unpinned.out).to.equal(1);
    expect(unpinned.out).to.include('group edge unpinned: refused');
    const after = await status();
    expect(after, 'nothing applied: v1 stays').to.include({ version: 1, digest: v1.digest, pinned: false });
    expect(after.error).to.match(/state refused \(replay\).*version 2 is older than version 3/);

    // And a running agent agrees: v2 is not served, v1 still is.
    const agent = await world.start(loadAgentConfig(file, {}));
    expect((await agent.firstSync).groups.edge).to.equal('refused');
    const served = async (repo: string, tag: string) => (await fetch(`${agent.url}/v2/library/${repo}/manifests/${tag}`)).status;
    expect([await served('a', 'a'), await served('b', 'b'), await served('c', 'c')], 'v1 served, nothing of v2 or v3').to.deep.equal([200, 404, 404]);
  });

  it('when the tag v1 is moved to the signed state of version 2 and the group is pinned to 1, then the pin is refused and version 2 is not applied', async () => {
    const client = world.client();
    const versions = [];
    for (const name of ['a', 'b']) {
      const img = image();
      await pushImage(client, `library/${name}`, img);
      await world.record('edge', `library/${name}`, img, name);
      versions.push(await world.publish('edge'));
    }
    const [v1, v2] = versions as [typeof versions[0], typeof versions[0]];
    const file = await world.configFile();
    const status = async () => JSON.parse((await runBundle(['status', '--json', '--config', file])).out).groups[0];

    // The genuinely signed v2 moved to the tag v1 (a registry that lets tags move).
    await client.putManifest(STATE, 'v1', (await client.getManifest(STATE, v2.digest))!.bytes, MANIFEST);
    expect((await client.headManifest(STATE, 'v1'))!.digest).to.equal(v2.digest);

    const pinned = await runBundle(['pin', 'edge', '1', '--config', file]);
    expect(pinned.code, pinned.out).to.equal(1);
    const after = await status();
    expect(after.version, 'nothing applied').to.equal(null);
    expect(after.error).to.match(/state refused \(replay\).*tagged v1 says it is version 2/);

    const agent = await world.start(loadAgentConfig(file, {}));
    expect((await agent.firstSync).groups.edge).to.equal('refused');
    const served = async (repo: string, tag: string) => (await fetch(`${agent.url}/v2/library/${repo}/manifests/${tag}`)).status;
    expect([await served('a', 'a'), await served('b', 'b')], 'nothing of v2 served under the pin to v1').to.deep.equal([404, 404]);
    expect(v1.version).to.equal(1);
  });
});
