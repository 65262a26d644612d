import { expect } from 'chai';
import { layerText, stateLayers } from '../../core/state/format.js';
import { ArtifactStore } from '../../core/store/artifact-store.js';
import { pushImage, useAgentWorld } from '../support/agent.js';
import { startFaultProxy, type FaultProxy } from '../support/fault-proxy.js';
import { image } from '../support/oci.js';

// The delta layer when a version drops entries: a tombstone whose retention ended and a
// manifest a tag moved away from, once its own retention ended, leave the list. The agent
// holding the version before must rebuild the new one from the delta's removals, not fall
// back to the whole state.

const STATE = 'satellite/group-state/edge/state';

describe('the edge agent: a delta that removes entries', function () {
  this.timeout(60_000);
  const world = useAgentWorld();
  let proxy: FaultProxy;
  beforeEach(async () => {
    proxy = await startFaultProxy(world.registryUrl); // in front of the states: its log is what the agent asked
  });
  afterEach(async () => proxy?.close());

  const layersOfLatest = async () => stateLayers(JSON.parse((await world.client().getManifest(STATE, 'latest'))!.bytes.toString()))!;

  it('when a version drops a tombstone past its retention and a superseded manifest, then the agent rebuilds it from the delta (its digest matching the signed one) and never fetches the full layer', async () => {
    const client = world.client();
    const keep = image();
    const gone = image();
    const old = image();
    const fresh = image();
    for (const [repo, img] of [['library/keep', keep], ['library/gone', gone], ['library/app', old], ['library/app', fresh]] as const) await pushImage(client, repo, img);
    // Enough other entries that the whole state is clearly bigger than the delta.
    for (let i = 0; i < 100; i++) {
      const small = image({ layers: [] });
      await pushImage(client, `library/many${i % 10}`, small);
      await world.record('edge', `library/many${i % 10}`, small, `t${i}`);
    }
    await world.record('edge', 'library/keep', keep, '1');
    await world.record('edge', 'library/gone', gone, '1');
    await world.record('edge', 'library/app', old, 'stable');
    await world.publish('edge');
    const agent = await world.start(await world.config({ registry: proxy.url }, { identity: `${world.registryHost}/${STATE}` }));
    expect((await agent.firstSync).groups.edge).to.equal('applied');

    // v2: gone is deleted (a tombstone) and stable moves to fresh (old is superseded).
    await new ArtifactStore(world.db.pool).deleteManifest({ group: 'edge', repository: 'library/gone' }, gone.manifest.digest);
    await world.record('edge', 'library/app', fresh, 'stable');
    await world.publish('edge');
    expect((await agent.agent.syncOnce()).groups.edge).to.equal('applied');

    // v3: both retentions ended (168 hours by default), so both entries leave the list.
    // (Every time the records hold is moved back: a tag move is compared with when the manifest was tagged.)
    await world.db.pool.query("UPDATE artifacts SET deleted_at = deleted_at - interval '200 hours', tagged_at = tagged_at - interval '200 hours' WHERE group_name = 'edge'");
    await world.db.pool.query("UPDATE superseded_manifests SET superseded_at = superseded_at - interval '200 hours' WHERE group_name = 'edge'");
    const v3 = await world.publish('edge');
    expect(v3.version).to.equal(3);
    const layers = await layersOfLatest();
    expect(layers.delta, 'v3 carries a delta').to.not.equal(undefined);
    const delta = JSON.parse(layerText(await client.getBlob(STATE, layers.delta!.descriptor.digest), layers.delta!.descriptor.mediaType));
    expect(delta.base.version).to.equal(2);
    expect(delta.removed, 'the delta removes the two entries').to.deep.equal([
      { repository: 'library/app', digest: old.manifest.digest },
      { repository: 'library/gone', digest: gone.manifest.digest },
    ].sort((a, b) => (`${a.repository}@${a.digest}` < `${b.repository}@${b.digest}` ? -1 : 1)));
    expect(delta.upserted, 'and changes nothing else').to.deep.equal([]);

    proxy.log.length = 0;
    proxy.answers.length = 0;
    expect((await agent.agent.syncOnce()).groups.edge).to.equal('applied');
    expect(proxy.log, 'the delta was fetched').to.include(`GET /v2/${STATE}/blobs/${layers.delta!.descriptor.digest}`);
    expect(proxy.log, 'the full layer was not').to.not.include(`GET /v2/${STATE}/blobs/${layers.full.digest}`);
    const stateBytes = proxy.answers.filter((a) => a.request.includes(`/v2/${STATE}/blobs/`)).reduce((n, a) => n + a.bytes, 0);
    expect(stateBytes, 'state bytes on the wire: the delta and the signature payload only').to.be.below(layers.full.size);
    const applied = agent.agent.doc.groups.edge!.applied!;
    expect(applied).to.include({ version: 3, stateDigest: layers.stateDigest });
    const held = JSON.parse((await agent.agent.files.appliedJson('edge'))!);
    const listed = held.artifacts.map((a: { repository: string; digest: string }) => `${a.repository}@${a.digest}`);
    expect(listed).to.not.include(`library/gone@${gone.manifest.digest}`);
    expect(listed).to.not.include(`library/app@${old.manifest.digest}`);
    expect(listed).to.include(`library/keep@${keep.manifest.digest}`);
    expect((await fetch(`${agent.url}/v2/library/app/manifests/stable`)).headers.get('docker-content-digest')).to.equal(fresh.manifest.digest);
  });
});
