import { expect } from 'chai';
import { loadAgentConfig } from '../../agent/config/config.js';
import { generateKeyPairSync } from 'node:crypto';
import { signatureTag } from '../../core/cosign/signature-image.js';
import { KeySigner } from '../../worker/signer.js';
import { gzipState } from '../../core/state/artifact.js';
import { layerText, STATE_DIGEST_ANNOTATION, stateLayers } from '../../core/state/format.js';
import { jsonDigest } from '../../core/state/delta.js';
import { pushImage, runBundle, useAgentWorld } from '../support/agent.js';
import { startFaultProxy, type FaultProxy } from '../support/fault-proxy.js';
import { image } from '../support/oci.js';
import type { RunningAgent } from '../../agent/run.js';

const STATE = 'satellite/group-state/edge/state';
const MANIFEST = 'application/vnd.oci.image.manifest.v1+json';


describe('the edge agent: trust before use, and polls that cost nothing', function () {
  this.timeout(60_000);
  const world = useAgentWorld();
  let proxy: FaultProxy;
  beforeEach(async () => {
    proxy = await startFaultProxy(world.registryUrl);
  });
  afterEach(async () => proxy?.close());

  /** An agent reading through the byte-counting proxy; signatures name the registry itself. */
  const startAgent = async (extra: Record<string, unknown> = {}) =>
    world.start(await world.config({ registry: proxy.url, ...extra }, { identity: `${world.registryHost}/${STATE}` }));

  const publishOne = async (tag: string) => {
    const img = image();
    await pushImage(world.client(), 'library/app', img);
    await world.record('edge', 'library/app', img, tag);
    return { img, ...(await world.publish('edge')) };
  };

  const served = async (agent: RunningAgent, tag: string) => (await fetch(`${agent.url}/v2/library/app/manifests/${tag}`)).status;

  /** Puts a manifest (with the layers it names already in the registry) at `latest`. */
  const putLatest = async (manifest: Buffer) => world.client().putManifest(STATE, 'latest', manifest, MANIFEST);

  /**
   * Puts at `latest` the state `digest` with its whole state (or, with `which: 'delta'`, its
   * delta) edited by `edit`, the full layer's digest annotation made to match the edited
   * state, and signs it with the group's own key: only the agent's checks of the content can
   * refuse it.
   */
  const putSignedEdit = async (digest: string, edit: (json: string) => string, which: 'full' | 'delta' = 'full') => {
    const client = world.client();
    const doc = JSON.parse((await client.getManifest(STATE, digest))!.bytes.toString());
    const found = stateLayers(doc)!;
    const layer = which === 'full' ? found.full : found.delta!.descriptor;
    const before = layerText(await client.getBlob(STATE, layer.digest), layer.mediaType);
    const json = edit(before);
    expect(json, 'the edit changed the state').to.not.equal(before);
    const gz = gzipState(Buffer.from(json));
    const edited = { ...layer, digest: await client.pushBlob(STATE, gz), size: gz.length };
    if (which === 'full') edited.annotations = { ...layer.annotations, [STATE_DIGEST_ANNOTATION]: jsonDigest(json) };
    const layers = doc.layers.map((l: { digest: string }) => (l.digest === layer.digest ? edited : l)).filter((l: { mediaType: string }) => which === 'delta' || l.mediaType === layer.mediaType);
    const manifest = Buffer.from(JSON.stringify({ ...doc, layers }));
    const forged = await putLatest(manifest);
    await world.sign(STATE, forged);
    return forged;
  };

  it('when nothing changed, then a poll is one HEAD and downloads no body byte', async () => {
    await publishOne('1');
    const agent = await startAgent();
    await agent.firstSync;
    proxy.answers.length = 0;
    proxy.log.length = 0;
    expect(await agent.agent.syncOnce()).to.deep.include({ groups: { edge: 'unchanged' }, bytes: 0 });
    expect(proxy.log).to.deep.equal([`HEAD /v2/${STATE}/manifests/latest`]);
    expect(proxy.answers.reduce((n, a) => n + a.bytes, 0)).to.equal(0);
    const metrics = await (await fetch(`${agent.url}/metrics`)).text();
    expect(metrics).to.match(/satellite_agent_polls_total\{group="edge",result="unchanged"\} 1/);
    expect(metrics).to.match(/satellite_agent_polls_total\{group="edge",result="changed"\} 1/);
    expect(metrics).to.match(/satellite_agent_bytes_pulled_total\{what="image"\} [1-9]/);
    expect(metrics).to.match(/satellite_agent_images\{group="edge",status="present"\} 1/);
  });

  it('when a new version has a delta from the applied one, then the agent reads the delta, not the whole state', async () => {
    for (let i = 0; i < 200; i++) {
      const img = image({ layers: [] as never[] });
      await world.record('edge', `library/many${i % 20}`, img, `t${i}`);
    }
    await publishOne('1');
    const agent = await startAgent({ platforms: ['linux/amd64'] });
    await agent.firstSync;
    await publishOne('2');
    const latest = JSON.parse((await world.client().getManifest(STATE, 'latest'))!.bytes.toString());
    const layers = stateLayers(latest)!;
    proxy.log.length = 0;
    expect((await agent.agent.syncOnce()).groups.edge).to.equal('applied');
    expect(proxy.log, 'the delta was fetched').to.include(`GET /v2/${STATE}/blobs/${layers.delta!.descriptor.digest}`);
    expect(proxy.log, 'the full layer was not').to.not.include(`GET /v2/${STATE}/blobs/${layers.full.digest}`);
    expect(agent.agent.doc.groups.edge!.applied!.stateDigest).to.equal(layers.stateDigest);
    expect(await served(agent, '2')).to.equal(200);
  });

  it('when latest is tampered with, unsigned, signed by another key, for another group, or an older version replayed, then each is refused and nothing is applied', async () => {
    const v1 = await publishOne('1');
    const v2 = await publishOne('2');
    const agent = await startAgent();
    expect((await agent.firstSync).groups.edge).to.equal('applied');
    const client = world.client();
    const good = (await client.getManifest(STATE, v2.digest))!.bytes;
    const doc = JSON.parse(good.toString());
    const applied = () => agent.agent.doc.groups.edge!.applied!;
    const expectRefused = async (what: string, reason: RegExp) => {
      expect((await agent.agent.syncOnce()).groups.edge, what).to.equal('refused');
      expect(agent.agent.doc.groups.edge!.error, what).to.match(reason);
      expect(applied(), `${what}: nothing applied`).to.include({ version: 2, digest: v2.digest });
      expect(await served(agent, '2'), `${what}: still served`).to.equal(200);
    };

    // Tampered: the layer changed (a tag renamed); the signature names the old digest.
    const json = layerText(await client.getBlob(STATE, doc.layers[0].digest), doc.layers[0].mediaType).replace('"2"', '"evil"');
    const forged = gzipState(Buffer.from(json));
    const forgedDigest = await client.pushBlob(STATE, forged);
    const tampered = Buffer.from(JSON.stringify({ ...doc, layers: [{ ...doc.layers[0], digest: forgedDigest, size: forged.length }] }));
    await putLatest(tampered);
    await expectRefused('tampered', /unsigned.*no valid signature/);

    // Unsigned, whose layer is not even JSON: refused for the signature, never parsed.
    const junk = await client.pushBlob(STATE, Buffer.from('not json at all'));
    const unsigned = Buffer.from(JSON.stringify({ ...doc, layers: [{ ...doc.layers[0], digest: junk, size: 15 }] }));
    await putLatest(unsigned);
    await expectRefused('unsigned', /unsigned/);

    // Signed by another key.
    const rogue = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey;
    await new KeySigner(client, rogue).sign(STATE, (await client.headManifest(STATE, 'latest'))!.digest);
    await expectRefused('another key', /does not verify with the given key/);

    // For another group: group other's state, copied to edge's repository and signed there
    // with the right key, so only the group check can refuse it.
    const img = image();
    await world.record('other', 'library/app', img, '9');
    const other = await world.publish('other');
    const otherRepo = 'satellite/group-state/other/state';
    const otherManifest = (await client.getManifest(otherRepo, other.digest))!.bytes;
    const otherDoc = JSON.parse(otherManifest.toString());
    for (const l of [otherDoc.config, ...otherDoc.layers]) await client.pushBlob(STATE, await client.getBlob(otherRepo, l.digest));
    await putLatest(otherManifest);
    await world.sign(STATE, other.digest);
    await expectRefused('another group', /wrong-group.*for group "other"/);

    // An older signed version replayed at latest.
    await putLatest((await client.getManifest(STATE, v1.digest))!.bytes);
    await expectRefused('replay', /replay.*version 1 is older than version 2/);
    expect(await client.headManifest(STATE, signatureTag(v1.digest)), 'v1 is genuinely signed').to.not.equal(undefined);
  });

  it('when the state layer arrives with bytes that do not match its digest, then the state is refused (not reported unreachable), nothing is applied and --once exits 1', async () => {
    await publishOne('1');
    const latest = JSON.parse((await world.client().getManifest(STATE, 'latest'))!.bytes.toString());
    const full = stateLayers(latest)!.full.digest;
    proxy.rules.push({ method: 'GET', path: new RegExp(`/v2/${STATE}/blobs/${full}$`), fault: 'corrupt', times: 1_000 });
    const file = await world.configFile({ registry: proxy.url }, { identity: `${world.registryHost}/${STATE}` });
    const agent = await world.start(loadAgentConfig(file, {}));
    expect((await agent.firstSync).groups.edge).to.equal('refused');
    expect(proxy.injected(), 'the layer was corrupted in flight').to.be.above(0);
    const rec = agent.agent.doc.groups.edge!;
    expect(rec.error).to.match(/state refused \(digest-mismatch\)/);
    expect(rec.applied, 'nothing applied').to.equal(undefined);
    expect(rec.staleSince, 'the registry was reached').to.equal(undefined);
    expect(await served(agent, '1')).to.equal(404);
    const metrics = await (await fetch(`${agent.url}/metrics`)).text();
    expect(metrics).to.match(/satellite_agent_polls_total\{group="edge",result="refused"\} 1\n/);
    expect(metrics).to.match(/satellite_agent_failures_total\{where="state"\} 1\n/);
    expect(metrics, 'a refusal is no poll failure').to.not.match(/satellite_agent_failures_total\{where="poll"\}/);
    expect(metrics).to.match(/satellite_agent_sync_seconds_count 1\n/);
    await agent.stop();

    const once = await runBundle(['--once', '--config', file]);
    expect(once.code, once.out).to.equal(1);
    const status = await runBundle(['status', '--json', '--config', file]);
    const group = JSON.parse(status.out.slice(status.out.indexOf('{'))).groups[0];
    expect(group).to.include({ version: null, staleSince: null });
    expect(group.error).to.match(/digest-mismatch/);
  });

  it('when a second, different state signed with the group\'s key claims the version already applied, then it is refused as a replay and the applied state stays served', async () => {
    const v1 = await publishOne('1');
    const agent = await startAgent();
    expect((await agent.firstSync).groups.edge).to.equal('applied');
    await putSignedEdit(v1.digest, (json) => json.replace('"1"', '"evil"'));
    expect((await agent.agent.syncOnce()).groups.edge).to.equal('refused');
    expect(agent.agent.doc.groups.edge!.error).to.match(/replay.*another state claims version 1/);
    expect(agent.agent.doc.groups.edge!.applied).to.include({ version: 1, digest: v1.digest });
    expect(await served(agent, '1'), 'the applied state still served').to.equal(200);
    expect(await served(agent, 'evil'), 'nothing of the second state served').to.equal(404);
  });

  it('when the signed delta does not rebuild the state the signed manifest names, then the agent fetches the whole state and applies that, not what the delta said', async () => {
    await publishOne('1');
    const agent = await startAgent({ platforms: ['linux/amd64'] });
    expect((await agent.firstSync).groups.edge).to.equal('applied');
    const v2 = await publishOne('2');
    const layers = stateLayers(JSON.parse((await world.client().getManifest(STATE, v2.digest))!.bytes.toString()))!;
    expect(layers.delta, 'v2 carries a delta from v1').to.not.equal(undefined);
    await putSignedEdit(v2.digest, (json) => json.replace('"2"', '"evil"'), 'delta');
    proxy.log.length = 0;
    expect((await agent.agent.syncOnce()).groups.edge).to.equal('applied');
    expect(proxy.log, 'the whole state was fetched').to.include(`GET /v2/${STATE}/blobs/${layers.full.digest}`);
    expect(agent.agent.doc.groups.edge!.applied).to.include({ version: 2, stateDigest: layers.stateDigest });
    expect(await served(agent, '2'), 'the signed state\'s tag served').to.equal(200);
    expect(await served(agent, 'evil'), 'the delta\'s own tag not served').to.equal(404);
  });

  it('when the state manifest arrives with bytes that do not match the digest it was asked by, then the state is refused as digest-mismatch and nothing is applied', async () => {
    const v1 = await publishOne('1');
    proxy.rules.push({ method: 'GET', path: new RegExp(`/v2/${STATE}/manifests/${v1.digest}$`), fault: 'corrupt', times: 1_000 });
    const agent = await startAgent();
    expect((await agent.firstSync).groups.edge).to.equal('refused');
    expect(proxy.injected(), 'the manifest was corrupted in flight').to.be.above(0);
    const rec = agent.agent.doc.groups.edge!;
    expect(rec.error).to.match(/state refused \(digest-mismatch\).*does not match its digest/);
    expect(rec.applied, 'nothing applied').to.equal(undefined);
    expect(rec.staleSince, 'the registry was reached').to.equal(undefined);
    expect(await served(agent, '1')).to.equal(404);
  });

  for (const group of ['other', 'edge-eu']) {
    it(`when a validly signed state of group ${group}, at a higher version than applied, is put at latest, then the group check alone refuses it`, async () => {
      await publishOne('1');
      const agent = await startAgent();
      expect((await agent.firstSync).groups.edge).to.equal('applied');
      const client = world.client();
      const otherRepo = `satellite/group-state/${group}/state`;
      let other = { version: 0, digest: '' };
      for (const tag of ['a', 'b', 'c']) {
        await world.record(group, 'library/app', image(), tag);
        other = await world.publish(group);
      }
      expect(other.version, 'higher than the version edge applied: the replay check lets it through').to.be.above(1);
      const otherManifest = (await client.getManifest(otherRepo, other.digest))!.bytes;
      const otherDoc = JSON.parse(otherManifest.toString());
      for (const l of [otherDoc.config, ...otherDoc.layers]) await client.pushBlob(STATE, await client.getBlob(otherRepo, l.digest));
      await putLatest(otherManifest);
      await world.sign(STATE, other.digest); // signed by the right key, for edge's repository

      expect((await agent.agent.syncOnce()).groups.edge).to.equal('refused');
      expect(agent.agent.doc.groups.edge!.error).to.match(new RegExp(`wrong-group.*for group "${group}", not "edge"`));
      expect(agent.agent.doc.groups.edge!.applied).to.include({ version: 1 });
      expect(await served(agent, '1'), 'edge\'s own state still served').to.equal(200);
      expect(await served(agent, 'c'), 'nothing of the other group served').to.equal(404);
    });
  }
});
