import { expect } from 'chai';
import { chooseChildren, compatiblePlatforms, formatPlatform, matches, normalizePlatform, parsePlatform } from '../../agent/sync/platform.js';
import { pushImage, pushIndex, useAgentWorld } from '../support/agent.js';
import { startFaultProxy, type FaultProxy } from '../support/fault-proxy.js';
import { image, index, type Index } from '../support/oci.js';

// The agent holds, of an index, the child the device's runtime will ask for: containerd's
// rules (github.com/containerd/platforms: Normalize, Only; its pull takes one child, the
// best ranked). Checked as rules, then through a real sync of indexes with such children.

const p = (text: string) => {
  const parsed = parsePlatform(text);
  if (!parsed) throw new Error(`not a platform: ${text}`);
  return parsed;
};
const fmt = (x: { os?: string; architecture?: string; variant?: string }) => formatPlatform(x);

describe('platform matching follows containerd\'s rules (agent/sync/platform.ts)', () => {
  it('when a platform is written with an alias or its default variant, then it is normalized as containerd does', () => {
    const cases: [string, string][] = [
      ['linux/aarch64', 'linux/arm64'], ['linux/arm64/v8', 'linux/arm64'], ['linux/arm64/8', 'linux/arm64'], ['linux/arm64/v8.0', 'linux/arm64'],
      ['linux/arm64/v9.0', 'linux/arm64/v9'], ['linux/x86_64', 'linux/amd64'], ['linux/x86-64', 'linux/amd64'], ['linux/amd64/v1', 'linux/amd64'],
      ['linux/amd64/v3', 'linux/amd64/v3'], ['linux/i386', 'linux/386'], ['linux/armhf', 'linux/arm/v7'], ['linux/armel', 'linux/arm/v6'],
      ['linux/arm', 'linux/arm/v7'], ['linux/arm/7', 'linux/arm/v7'], ['linux/arm/6', 'linux/arm/v6'], ['macos/arm64', 'darwin/arm64'],
    ];
    for (const [given, canonical] of cases) expect(fmt(normalizePlatform(p(given))), given).to.equal(canonical);
  });

  it('when a device names its platform, then it runs its own and, best first, the older ones containerd lets it (arm64 → arm v8…v5, arm/v7 → v6, v5, amd64 → 386)', () => {
    const vector = (text: string) => compatiblePlatforms(p(text)).map(fmt);
    expect(vector('linux/arm64')).to.deep.equal(['linux/arm64', 'linux/arm/v8', 'linux/arm/v7', 'linux/arm/v6', 'linux/arm/v5']);
    expect(vector('linux/arm64/v8'), 'v8 is arm64\'s default').to.deep.equal(vector('linux/arm64'));
    expect(vector('linux/arm64/v8.2')).to.deep.equal(['linux/arm64/v8.2', 'linux/arm64/v8.1', 'linux/arm64', 'linux/arm/v8', 'linux/arm/v7', 'linux/arm/v6', 'linux/arm/v5']);
    expect(vector('linux/arm64/v9.1').slice(0, 4)).to.deep.equal(['linux/arm64/v9.1', 'linux/arm64/v9', 'linux/arm64/v8.6', 'linux/arm64/v8.5']);
    expect(vector('linux/arm/v7')).to.deep.equal(['linux/arm/v7', 'linux/arm/v6', 'linux/arm/v5']);
    expect(vector('linux/arm'), 'arm is arm/v7').to.deep.equal(vector('linux/arm/v7'));
    expect(vector('linux/arm/v5')).to.deep.equal(['linux/arm/v5']);
    expect(vector('linux/amd64')).to.deep.equal(['linux/amd64', 'linux/386']);
    expect(vector('linux/x86_64')).to.deep.equal(['linux/amd64', 'linux/386']);
    expect(vector('linux/amd64/v3')).to.deep.equal(['linux/amd64/v3', 'linux/amd64/v2', 'linux/amd64', 'linux/386']);
  });

  it('when an image names its platform, then a device takes it exactly when containerd would run it there', () => {
    // [the device's platform, images it takes, images it does not]
    const table: [string, string[], string[]][] = [
      ['linux/arm64', ['linux/arm64', 'linux/arm64/v8', 'linux/aarch64', 'linux/arm/v7', 'linux/arm', 'linux/arm/v8', 'linux/arm/v5'], ['linux/amd64', 'linux/arm/v4', 'linux/arm64/v9', 'linux/arm64/v8.1', 'windows/arm64']],
      ['linux/arm64/v8', ['linux/arm64', 'linux/arm64/v8', 'linux/aarch64/8'], ['linux/arm64/v9', 'linux/amd64']],
      ['linux/arm/v7', ['linux/arm/v7', 'linux/arm', 'linux/armhf', 'linux/arm/v6', 'linux/arm/v5'], ['linux/arm/v8', 'linux/arm64', 'linux/arm64/v8', 'linux/arm/v4', 'linux/amd64']],
      ['linux/arm/v6', ['linux/arm/v6', 'linux/armel', 'linux/arm/v5'], ['linux/arm', 'linux/arm/v7', 'linux/arm64']],
      ['linux/amd64', ['linux/amd64', 'linux/x86_64', 'linux/amd64/v1', 'linux/386', 'linux/i386'], ['linux/amd64/v2', 'linux/arm64', 'windows/amd64']],
      ['linux/amd64/v2', ['linux/amd64', 'linux/amd64/v2', 'linux/386'], ['linux/amd64/v3']],
    ];
    for (const [device, takes, refuses] of table) {
      for (const img of takes) expect(matches([p(device)], p(img)), `${device} takes ${img}`).to.equal(true);
      for (const img of refuses) expect(matches([p(device)], p(img)), `${device} does not take ${img}`).to.equal(false);
    }
    expect(matches([p('linux/arm64')], null), 'an image that names no platform is not taken').to.equal(false);
    expect(matches([p('linux/arm64')], { os: 'linux' })).to.equal(false);
  });

  it('when an index offers several children a device runs, then it takes the one containerd picks: the best ranked, the first among equals', () => {
    const children = (...platforms: string[]) => platforms.map((text, i) => ({ id: `${i}:${text}`, platform: p(text) }));
    const chosen = (device: string[], offered: ReturnType<typeof children>) => chooseChildren(device.map(p), offered).map((c) => c.id);
    expect(chosen(['linux/arm64'], children('linux/amd64', 'linux/arm/v7', 'linux/arm64/v8'))).to.deep.equal(['2:linux/arm64/v8']);
    expect(chosen(['linux/arm64/v8'], children('linux/amd64', 'linux/arm64'))).to.deep.equal(['1:linux/arm64']);
    expect(chosen(['linux/arm64'], children('linux/amd64', 'linux/arm/v6', 'linux/arm/v7')), 'no arm64 child: its best 32-bit one').to.deep.equal(['2:linux/arm/v7']);
    expect(chosen(['linux/arm/v7'], children('linux/arm/v6', 'linux/arm/v7', 'linux/arm64/v8')), 'v7, not v6').to.deep.equal(['1:linux/arm/v7']);
    expect(chosen(['linux/arm/v7'], children('linux/amd64', 'linux/arm/v6')), 'v6 when no v7 is offered').to.deep.equal(['1:linux/arm/v6']);
    expect(chosen(['linux/arm/v6'], children('linux/arm/v7', 'linux/arm64'))).to.deep.equal([]);
    expect(chosen(['linux/arm64'], children('linux/arm64', 'linux/arm64/v8')), 'equals: the first').to.deep.equal(['0:linux/arm64']);
    expect(chosen(['linux/arm64', 'linux/amd64'], children('linux/arm64', 'linux/386', 'linux/amd64')), 'one per platform, in index order').to.deep.equal(['0:linux/arm64', '2:linux/amd64']);
    expect(chooseChildren([p('linux/arm64')], [{ platform: undefined }, { platform: { os: 'unknown', architecture: 'unknown' } }])).to.deep.equal([]);
  });
});

describe('platform matching in a real sync of indexes', function () {
  this.timeout(90_000);
  const world = useAgentWorld();
  let proxy: FaultProxy;
  beforeEach(async () => {
    proxy = await startFaultProxy(world.registryUrl); // the image registry the state names: its log is what an agent asked
  });
  afterEach(async () => proxy?.close());

  it('when indexes offer arm64/v8, arm64, arm/v7, arm/v6 and amd64 children, then an arm64 device (however written) takes the arm64 child and an arm/v7 device the v7 child, and no other child is ever asked for', async () => {
    const client = world.client();
    // As most multi-arch images publish them: arm64 with its variant, and arm twice.
    const multi = index([
      { os: 'linux', architecture: 'amd64' }, { os: 'linux', architecture: 'arm', variant: 'v6' },
      { os: 'linux', architecture: 'arm', variant: 'v7' }, { os: 'linux', architecture: 'arm64', variant: 'v8' },
    ]);
    // And one whose arm64 child names no variant.
    const plain = index([{ os: 'linux', architecture: 'amd64' }, { os: 'linux', architecture: 'arm64' }]);
    for (const [repo, idx] of [['library/multi', multi], ['library/plain', plain]] as const) {
      await pushIndex(client, repo, idx);
      for (const c of idx.children) await world.record('edge', repo, c, null);
      await world.record('edge', repo, { manifest: idx.manifest, config: idx.manifest, layers: [] }, '1');
    }
    await world.publish('edge', proxy.url);

    /** Syncs a device of `platform`; the children of each index it serves and the ones it asked the registry for. */
    const device = async (platform: string) => {
      proxy.log.length = 0;
      const agent = await world.start(await world.config({ platforms: [platform] }));
      const summary = await agent.firstSync;
      expect(summary, platform).to.deep.include({ groups: { edge: 'applied' }, failedImages: 0 });
      const look = async (repo: string, idx: Index) => {
        const served: string[] = [];
        const asked: string[] = [];
        for (const c of idx.children) {
          const name = fmt(JSON.parse(c.config.bytes.toString()));
          if ((await fetch(`${agent.url}/v2/${repo}/manifests/${c.manifest.digest}`)).status === 200) served.push(name);
          if ([c.manifest, c.config, ...c.layers].some((b) => proxy.log.some((l) => l.endsWith(b.digest)))) asked.push(name);
        }
        return { served, asked };
      };
      const out = { multi: await look('library/multi', multi), plain: await look('library/plain', plain) };
      await agent.stop();
      return out;
    };

    const arm64 = { multi: { served: ['linux/arm64/v8'], asked: ['linux/arm64/v8'] }, plain: { served: ['linux/arm64'], asked: ['linux/arm64'] } };
    expect(await device('linux/arm64'), 'linux/arm64').to.deep.equal(arm64);
    expect(await device('linux/arm64/v8'), 'linux/arm64/v8: the same device').to.deep.equal(arm64);
    expect(await device('linux/aarch64'), 'linux/aarch64: the same device').to.deep.equal(arm64);
    expect(await device('linux/arm/v7'), 'linux/arm/v7: v7, never v6 (nor arm64)').to.deep.equal({ multi: { served: ['linux/arm/v7'], asked: ['linux/arm/v7'] }, plain: { served: [], asked: [] } });
  });

  it('when a single-platform image says arm64 with no variant, then a device configured linux/arm64/v8 takes it, as containerd does', async () => {
    const img = image({ architecture: 'arm64' });
    await pushImage(world.client(), 'library/app', img);
    await world.record('edge', 'library/app', img, '1');
    await world.publish('edge');
    const agent = await world.start(await world.config({ platforms: ['linux/arm64/v8'] }));
    expect(await agent.firstSync).to.deep.include({ groups: { edge: 'applied' }, failedImages: 0 });
    expect((await fetch(`${agent.url}/v2/library/app/manifests/1`)).status).to.equal(200);
    expect(Object.values(agent.agent.doc.groups.edge!.images).map((i) => i.status)).to.deep.equal(['present']);
  });
});
