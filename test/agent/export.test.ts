import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { access, readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { loadAgentConfig } from '../../agent/config/config.js';
import { publishTwoPlatformGroup, pushImage, readAgentState, runBundle, useAgentWorld } from '../support/agent.js';
import { image } from '../support/oci.js';
import { readArchive } from '../support/archive.js';

const exec = promisify(execFile);
const sha = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

// `satellite agent export <group>`: the air-gapped site's archive made from a (gateway)
// agent's store instead of from Harbor: the signed state it applied, kept in the store as
// signed, and the images for the chosen platforms. Another agent with no registry imports
// it and converges; real tools (skopeo's oci-archive transport, umoci) read it.

describe('satellite agent export: an air-gapped site\'s archive from a gateway agent\'s store', function () {
  this.timeout(180_000);
  const world = useAgentWorld();
  const STATE = 'satellite/group-state/edge/state';


  /** A gateway agent (both platforms) that synced once from the registry, then stopped. */
  async function syncedGateway() {
    const path = await world.configFile({ platforms: ['linux/amd64', 'linux/arm64'] });
    const r = await runBundle(['run', '--once', '--config', path]);
    expect(r.code, r.out).to.equal(0);
    return { path, store: loadAgentConfig(path, {}).store };
  }

  it('when a gateway agent synced a group, then its export is read by skopeo and umoci, and a second agent with no registry imports it, converges and serves the images', async () => {
    const { multi, app, tool, shared, published } = await publishTwoPlatformGroup(world);
    const gateway = await syncedGateway();
    const out = join(await world.dir(), 'site.tar');
    const r = await runBundle(['export', 'edge', '--platform', 'linux/amd64', '-o', out, '--config', gateway.path]);
    expect(r.code, r.out).to.equal(0);
    expect(r.out).to.include(`group edge version ${published.version} (${published.digest}), 3 images`);

    const { files, names } = await readArchive(out);
    expect(names.slice(0, 2)).to.deep.equal(['oci-layout', 'index.json']);
    expect(new Set(names).size, 'no file twice').to.equal(names.length);
    for (const [name, bytes] of files) if (name.startsWith('blobs/sha256/')) expect(sha(bytes), name).to.equal(`sha256:${name.slice(13)}`);
    const has = (digest: string) => files.has(`blobs/sha256/${digest.slice(7)}`);
    const idx = JSON.parse(files.get('index.json')!.toString()) as { manifests: { digest: string; annotations: Record<string, string> }[] };
    const refs = Object.fromEntries(idx.manifests.map((m) => [m.annotations['org.opencontainers.image.ref.name'], m.digest]));
    expect(refs[`${STATE}:v${published.version}`]).to.equal(published.digest);
    expect(refs[`${STATE}:${published.digest.replace(':', '-')}.sig`], 'the state\'s cosign signature').to.be.a('string');
    expect(refs).to.include({ 'library/multi:1': multi.manifest.digest, 'library/app:2': app.manifest.digest, 'library/tool:3': tool.manifest.digest });
    const [amd64, arm64] = multi.children;
    for (const b of [amd64!.manifest, amd64!.config, ...amd64!.layers, ...app.layers, ...tool.layers]) expect(has(b.digest), b.digest).to.equal(true);
    for (const b of [arm64!.manifest, ...arm64!.layers]) expect(has(b.digest), `arm64's ${b.digest}: the gateway holds it, but it was not asked for`).to.equal(false);
    expect(names.filter((n) => n === `blobs/sha256/${shared.digest.slice(7)}`)).to.have.length(1);

    const copied = join(await world.dir(), 'app');
    await exec('skopeo', ['--insecure-policy', 'copy', '--preserve-digests', `oci-archive:${out}:library/app:2`, `dir:${copied}`]);
    expect(await readFile(join(copied, 'manifest.json'))).to.deep.equal(app.manifest.bytes);
    expect((await readdir(copied)).filter((f) => f !== 'manifest.json' && f !== 'version').sort()).to.deep.equal([app.config, ...app.layers].map((b) => b.digest.slice(7)).sort());
    const stateDir = join(await world.dir(), 'state');
    await exec('skopeo', ['--insecure-policy', 'copy', '--preserve-digests', `oci-archive:${out}:${STATE}:v${published.version}`, `dir:${stateDir}`]);
    expect(sha(await readFile(join(stateDir, 'manifest.json'))), 'the signed state manifest, byte for byte').to.equal(published.digest);
    const layout = await world.dir();
    await exec('tar', ['-xf', out, '-C', layout]);
    const listed = (await exec('umoci', ['ls', '--layout', layout])).stdout.split('\n').filter(Boolean);
    expect(listed).to.include.members([`${STATE}:v${published.version}`, 'library/app:2', 'library/multi:1', 'library/tool:3']);

    // A device that cannot reach any registry: everything it applies came from the archive.
    const dir = await world.dir();
    const device = await world.configFile({ registry: 'http://127.0.0.1:9', store: join(dir, 'store') }, { identity: `${world.registryHost}/${STATE}` });
    const imported = await runBundle(['import', out, '--config', device]);
    expect(imported.code, imported.out).to.equal(0);
    expect(imported.out).to.include(`group edge version ${published.version} applied`);
    const agent = await world.start(loadAgentConfig(device, {}));
    for (const ref of ['library/app/manifests/2', 'library/tool/manifests/3', `library/multi/manifests/${amd64!.manifest.digest}`, `library/app/blobs/${shared.digest}`]) {
      expect((await fetch(`${agent.url}/v2/${ref}`)).status, ref).to.equal(200);
    }
  });

  it('when the gateway read the new version from its delta, then the export still carries the whole signed state, and a device that never had the version before applies it', async () => {
    await publishTwoPlatformGroup(world);
    const gateway = await syncedGateway();
    const next = image();
    await pushImage(world.client(), 'library/next', next, '1');
    await world.record('edge', 'library/next', next, '1');
    const v2 = await world.publish('edge');
    const r = await runBundle(['run', '--once', '--config', gateway.path]);
    expect(r.code, r.out).to.equal(0);
    const applied = (await readAgentState(gateway.store)).groups.edge!.applied!;
    expect(applied.digest).to.equal(v2.digest);
    const out = join(await world.dir(), 'v2.tar');
    const e = await runBundle(['export', 'edge', '-o', out, '--config', gateway.path]);
    expect(e.code, e.out).to.equal(0);

    // A device that never had version 1 applies version 2 from it.
    const dir = await world.dir();
    const device = await world.configFile({ registry: 'http://127.0.0.1:9', store: join(dir, 'store') }, { identity: `${world.registryHost}/${STATE}` });
    const imported = await runBundle(['import', out, '--config', device]);
    expect(imported.code, imported.out).to.equal(0);
    expect(imported.out).to.include(`group edge version ${v2.version} applied`);
    const agent = await world.start(loadAgentConfig(device, {}));
    expect((await fetch(`${agent.url}/v2/library/next/manifests/1`)).status).to.equal(200);
  });

  it('when the store lacks a blob the state names, then the export fails naming that blob and its image, and writes no archive', async () => {
    const { app } = await publishTwoPlatformGroup(world);
    const gateway = await syncedGateway();
    const lost = app.layers[1]!.digest;
    await rm(join(gateway.store, 'blobs', 'sha256', lost.slice(7)));
    const out = join(await world.dir(), 'site.tar');
    const r = await runBundle(['export', 'edge', '-o', out, '--config', gateway.path]);
    expect(r.code, r.out).to.equal(1);
    expect(r.out).to.include(`lacks ${lost} (a blob of library/app@${app.manifest.digest})`);
    for (const p of [out, `${out}.partial`]) expect(await access(p).then(() => true, () => false), p).to.equal(false);
  });

  it('when the group is not configured or a platform is misspelt, then the export says which and writes nothing', async () => {
    await publishTwoPlatformGroup(world);
    const gateway = await syncedGateway();
    const out = join(await world.dir(), 'site.tar');
    const unknown = await runBundle(['export', 'nope', '-o', out, '--config', gateway.path]);
    expect(unknown.code, unknown.out).to.equal(2);
    expect(unknown.out).to.include('group "nope" is not in the configuration');
    const bad = await runBundle(['export', 'edge', '--platform', 'linux', '-o', out, '--config', gateway.path]);
    expect(bad.code, bad.out).to.equal(2);
    expect(bad.out).to.include('--platform "linux" is not os/architecture');
    const noOut = await runBundle(['export', 'edge', '--config', gateway.path]);
    expect(noOut.code, noOut.out).to.equal(2);
    expect(await access(out).then(() => true, () => false)).to.equal(false);
  });
});
