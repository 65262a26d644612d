import { expect } from 'chai';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join, sep } from 'node:path';
import type { AgentConfigError } from '../../agent/config/config.js';
import { writeMirrorFiles } from '../../agent/runtime/mirrors.js';
import { jsonDigest } from '../../core/state/delta.js';
import { layerText, STATE_DIGEST_ANNOTATION, STATE_LAYER_TYPE } from '../../core/state/format.js';
import { gzipState } from '../../core/state/artifact.js';
import { pushImage, useAgentWorld } from '../support/agent.js';
import { image } from '../support/oci.js';

// Nothing a state says becomes a path unchecked. A state's registry names a directory of
// containerd's certs.d; its repositories and tags name what is pulled and served. A state
// signed by the group's own key (a stolen key, a careless publisher) that names
// "http://.." as its registry, or "../../x" as a repository, is refused before anything is
// applied, and no file appears outside the agent's store and the mirror directories.

const STATE = 'satellite/group-state/edge/state';

/**
 * Every file and directory under `root` but the agent's store. (The mirror files' content
 * names the agent's own address, a new port each start: what matters is where files are.)
 */
async function tree(root: string): Promise<string[]> {
  const entries = await readdir(root, { recursive: true });
  return entries.filter((rel) => rel !== 'store' && !rel.startsWith(`store${sep}`)).sort();
}

describe('the edge agent: nothing in a state becomes a path unchecked', function () {
  this.timeout(60_000);
  const world = useAgentWorld();

  /** A config whose mirror files and store all live under one root, to watch the whole of it. */
  const configUnder = async (root: string) => world.config({
    store: join(root, 'store'),
    mirrors: {
      containerd: join(root, 'etc', 'containerd', 'certs.d'),
      registriesConf: join(root, 'etc', 'containers', 'registries.conf.d', 'satellite.conf'),
      containerdConfig: join(root, 'etc', 'containerd', 'config.toml'),
    },
  });

  /**
   * Puts at latest a state whose JSON is that of the published version 1 changed by `edit`
   * (and a version far ahead, so only the content checks can refuse it), signed by the
   * group's own key.
   */
  async function signedHostileState(edit: (state: { registry: string; version: number; artifacts: { repository: string; tag: string[] }[] }) => void): Promise<void> {
    const client = world.client();
    const good = JSON.parse((await client.getManifest(STATE, 'v1'))!.bytes.toString()) as { layers: { digest: string; mediaType: string; annotations?: Record<string, string> }[] };
    const full = good.layers[0]!;
    const state = JSON.parse(layerText(await client.getBlob(STATE, full.digest), full.mediaType)) as Parameters<typeof edit>[0];
    state.version = 100;
    edit(state);
    const json = JSON.stringify(state);
    const layer = gzipState(Buffer.from(json));
    const digest = await client.pushBlob(STATE, layer);
    const manifest = Buffer.from(JSON.stringify({
      ...good,
      layers: [{ ...full, mediaType: STATE_LAYER_TYPE, digest, size: layer.length, annotations: { ...full.annotations, [STATE_DIGEST_ANNOTATION]: jsonDigest(json) } }],
    }));
    await world.sign(STATE, await client.putManifest(STATE, 'latest', manifest, 'application/vnd.oci.image.manifest.v1+json'));
  }

  it('when a signed state names "http://.." (or a path behind it) as its registry, or "../../x" as a repository or tag, then it is refused, nothing is applied, and no file appears outside the store and the mirror directories', async () => {
    const img = image();
    await pushImage(world.client(), 'library/app', img);
    await world.record('edge', 'library/app', img, '1');
    await world.publish('edge');
    const root = await world.dir();
    const config = await configUnder(root);
    const healthy = await world.start(config);
    expect((await healthy.firstSync).groups.edge).to.equal('applied');
    await healthy.stop();
    const before = await tree(root);
    expect(before, 'the healthy state wrote its mirror entries').to.include(join('etc', 'containerd', 'certs.d', world.registryHost, 'hosts.toml'));

    const hostile: [string, Parameters<typeof signedHostileState>[0], RegExp][] = [
      ['registry http://..', (s) => void (s.registry = 'http://..'), /registry "http:\/\/\.\." does not name a registry host .*host is "\.\."/],
      ['registry http://../../etc', (s) => void (s.registry = 'http://../../etc'), /registry "http:\/\/\.\.\/\.\.\/etc" does not name a registry host/],
      ['registry http://%2e%2e/x', (s) => void (s.registry = 'http://%2e%2e/x'), /does not name a registry host .*host is "\.\."/],
      ['registry with credentials', (s) => void (s.registry = 'http://user:secret@example.com'), /carries credentials/],
      ['repository ../../x', (s) => void (s.artifacts[0]!.repository = '../../x'), /malformed.*repository/],
      ['tag ../../x', (s) => void (s.artifacts[0]!.tag = ['../../x']), /malformed.*tag/],
    ];
    for (const [what, edit, reason] of hostile) {
      await signedHostileState(edit);
      const agent = await world.start(config);
      const outcome = (await agent.firstSync).groups.edge;
      await agent.stop();
      expect(await tree(root), `${what}: no file written outside the store and the mirror entries it had`).to.deep.equal(before);
      expect(outcome, what).to.equal('refused');
      const rec = agent.agent.doc.groups.edge!;
      expect(rec.error, what).to.match(/^state refused \(malformed\)/).and.match(reason);
      expect(rec.applied, `${what}: nothing applied`).to.include({ version: 1 });
    }
  });

  it('when the state applied before no longer passes the checks (an older agent took it, or its file was damaged), then the agent still starts, serves nothing of it, and reads the state again from the registry', async () => {
    const img = image();
    await pushImage(world.client(), 'library/app', img);
    await world.record('edge', 'library/app', img, '1');
    await world.publish('edge');
    const root = await world.dir();
    const config = await configUnder(root);
    const first = await world.start(config);
    expect((await first.firstSync).groups.edge).to.equal('applied');
    await first.stop();
    const applied = join(config.store, 'states', 'edge.json');
    const good = await readFile(applied, 'utf8');
    for (const damaged of [good.replace(/"registry":"[^"]*"/, '"registry":"http://.."'), good.slice(0, 20)]) {
      await writeFile(applied, damaged);
      const agent = await world.start(config);
      expect((await agent.firstSync).groups.edge, 'read again and applied').to.equal('applied');
      expect(agent.agent.doc.groups.edge!.applied).to.include({ version: 1 });
      await agent.stop();
      expect(await readFile(applied, 'utf8'), 'the verified state replaces the damaged file').to.equal(good);
    }
  });

  it('when the configuration names a group that is not one path component, then the agent refuses it (the name names its files in the store)', async () => {
    for (const name of ['../x', 'a/b', '..']) {
      let error: AgentConfigError | undefined;
      try {
        await world.config({}, { name });
      } catch (e) {
        error = e as AgentConfigError;
      }
      expect(error, `${name}: refused`).to.not.equal(undefined);
      expect(error!.problems, name).to.include(`groups[0].name: ${JSON.stringify(name)} is not a group name (lower-case letters, digits and . _ - separators)`);
    }
    expect((await world.config({}, { name: 'edge-eu.v2' })).groups[0]!.name).to.equal('edge-eu.v2');
  });

  it('when the mirror files are asked for a registry whose host is not a host, then none is written', async () => {
    const root = await world.dir();
    const config = await configUnder(root);
    const mirror = { url: 'http://127.0.0.1:8585', location: '127.0.0.1:8585', insecure: true };
    for (const bad of ['http://..', 'http://%2e%2e']) {
      let error: Error | undefined;
      await writeMirrorFiles(config, ['https://harbor.example.com', bad], mirror).catch((e: Error) => (error = e));
      expect(error?.message, bad).to.equal(`no mirror file written: ${JSON.stringify(bad)} does not name a registry host`);
    }
    expect(await tree(root)).to.deep.equal([]);
    expect(await writeMirrorFiles(config, ['https://harbor.example.com'], mirror)).to.have.length(2);
  });
});
