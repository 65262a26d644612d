import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { access, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import tar from 'tar-stream';
import { loadAgentConfig } from '../../agent/config/config.js';
import { AgentStateFiles } from '../../agent/store/state-files.js';
import { generateCosignKeyPair } from '../../core/cosign/keys.js';
import { pushImage, pushIndex, runBundle, useAgentWorld } from '../support/agent.js';
import { image, index, randomLayer, type Image } from '../support/oci.js';
import { satellite } from '../support/run.js';
import { readArchive } from '../support/archive.js';

const exec = promisify(execFile);

// `satellite agent import site.tar`: an air-gapped device gets its group's signed state and
// images from an archive `satellite export` made, with no registry reachable, checked as a
// sync checks what it downloads; then its own server serves them.

describe('satellite agent import: an air-gapped site', function () {
  this.timeout(180_000);
  const world = useAgentWorld();
  const STATE = 'satellite/group-state/edge/state';

  /** An agent whose registry cannot be reached: whatever it serves came from an archive. */
  async function offlineAgent() {
    const dir = await world.dir();
    const path = await world.configFile(
      { registry: 'http://127.0.0.1:9', mirrors: { containerd: join(dir, 'certs.d'), containerdConfig: join(dir, 'none', 'config.toml') } },
      { identity: `${world.registryHost}/${STATE}` },
    );
    return { path, dir, config: loadAgentConfig(path, {}) };
  }

  async function exportTo(name: string, ...extra: string[]): Promise<string> {
    const out = join(await world.dir(), name);
    await satellite(['export', 'edge', '--platform', 'linux/amd64', '-o', out, ...extra], { STATE_REGISTRY: world.registryUrl, DATABASE_URL: world.db.url, COSIGN_PUBLIC_KEY: '' });
    return out;
  }

  async function publishApp(tag: string): Promise<Image> {
    const app = image();
    await pushImage(world.client(), 'library/app', app, tag);
    await world.record('edge', 'library/app', app, tag);
    await world.publish('edge');
    return app;
  }

  /** The archive with one blob's last byte changed (or the blob left out), everything else as it was. */
  async function tamper(path: string, digest: string, drop = false): Promise<string> {
    const { files, names } = await readArchive(path);
    const out = `${path}.tampered.tar`;
    const pack = tar.pack();
    const written = pipeline(pack, createWriteStream(out));
    for (const n of names) {
      if (drop && n === `blobs/sha256/${digest.slice(7)}`) continue;
      const bytes = Buffer.from(files.get(n)!);
      if (n === `blobs/sha256/${digest.slice(7)}`) bytes.writeUInt8(bytes.readUInt8(bytes.length - 1) ^ 0xff, bytes.length - 1);
      pack.entry({ name: n, size: bytes.length }, bytes);
    }
    pack.finalize();
    await written;
    return out;
  }

  it('when an exported archive is imported on a device with no network, then its agent serves the images by digest (skopeo copies them) and writes the mirror files', async () => {
    const multi = index([{ os: 'linux', architecture: 'amd64' }, { os: 'linux', architecture: 'arm64' }]);
    await pushIndex(world.client(), 'library/multi', multi, '1');
    for (const c of multi.children) await world.record('edge', 'library/multi', c, null);
    await world.record('edge', 'library/multi', { manifest: multi.manifest, config: multi.manifest, layers: [] }, '1');
    const app = await publishApp('1');
    const site = await exportTo('site.tar');
    const device = await offlineAgent();

    const r = await runBundle(['import', site, '--config', device.path]);
    expect(r.code, r.out).to.equal(0);
    expect(r.out).to.match(/group edge version 1 applied/);
    expect(await access(join(device.dir, 'certs.d', world.registryHost, 'hosts.toml')).then(() => true, () => false), 'containerd\'s mirror file').to.equal(true);

    const agent = await world.start(await device.config);
    const host = agent.url.replace('http://', '');
    const copied = await world.dir();
    await exec('skopeo', ['--insecure-policy', 'copy', '--src-tls-verify=false', `docker://${host}/library/app@${app.manifest.digest}`, `dir:${copied}`]);
    expect(await readFile(join(copied, 'manifest.json'))).to.deep.equal(app.manifest.bytes);
    for (const l of app.layers) expect(await readFile(join(copied, l.digest.slice(7)))).to.deep.equal(l.bytes);
    const amd64 = await fetch(`${agent.url}/v2/library/multi/manifests/${multi.children[0]!.manifest.digest}`);
    expect(amd64.status, 'the index\'s amd64 child').to.equal(200);
  });

  it('when a blob of the archive was altered, then the import is refused naming it, nothing is served, and importing the intact archive then skips the blobs already stored', async () => {
    const app = await publishApp('1');
    const site = await exportTo('site.tar');
    const bad = await tamper(site, app.layers[2]!.digest);
    const device = await offlineAgent();

    const r = await runBundle(['import', bad, '--config', device.path]);
    expect(r.code, r.out).to.equal(1);
    expect(r.out).to.include(`blobs/sha256/${app.layers[2]!.digest.slice(7)} is corrupt`);
    const store = (await device.config).store;
    expect(await new AgentStateFiles(store).appliedJson('edge'), 'no state applied').to.equal(undefined);

    const again = await runBundle(['import', site, '--config', device.path]);
    expect(again.code, again.out).to.equal(0);
    const [, stored, held] = /\((\d+) blobs stored, (\d+) already held\)/.exec(again.out) ?? [];
    expect(Number(held), again.out).to.be.greaterThan(0);
    expect(Number(stored), 'at least the altered blob, now intact').to.be.greaterThan(0);
    const agent = await world.start(await device.config);
    expect((await fetch(`${agent.url}/v2/library/app/manifests/1`)).status).to.equal(200);
  });

  it('when an import was cut short in the middle of a blob, then the next import goes on from the bytes it had written and the blob is served whole', async () => {
    const app = image({ layers: [randomLayer(256 * 1024)] });
    await pushImage(world.client(), 'library/app', app, '1');
    await world.record('edge', 'library/app', app, '1');
    await world.publish('edge');
    const site = await exportTo('site.tar');
    const device = await offlineAgent();
    const store = (await device.config).store;
    // What a killed import leaves: the store's half-written file of that blob.
    const layer = app.layers[0]!;
    const half = Math.floor(layer.bytes.length / 2);
    await mkdir(join(store, 'ingest'), { recursive: true });
    await writeFile(join(store, 'ingest', `sha256-${layer.digest.slice(7)}.partial`), layer.bytes.subarray(0, half));

    const r = await runBundle(['import', site, '--config', device.path]);
    expect(r.code, r.out).to.equal(0);
    expect(r.out).to.include(`, ${half} bytes resumed)`);
    const agent = await world.start(await device.config);
    const served = Buffer.from(await (await fetch(`${agent.url}/v2/library/app/blobs/${layer.digest}`)).arrayBuffer());
    expect(served.equals(layer.bytes), 'the layer, whole').to.equal(true);
  });

  it('when a blob the state\'s images need is missing from the archive, then the import fails naming that blob and its image', async () => {
    const app = await publishApp('1');
    const site = await exportTo('site.tar');
    const short = await tamper(site, app.layers[1]!.digest, true);
    const device = await offlineAgent();
    const r = await runBundle(['import', short, '--config', device.path]);
    expect(r.code, r.out).to.equal(1);
    expect(r.out).to.include(`the archive lacks ${app.layers[1]!.digest} (library/app@${app.manifest.digest}`);
  });

  it('when the archive\'s state is not signed by the group\'s key, then the import is refused and nothing is applied', async () => {
    await publishApp('1');
    const site = await exportTo('site.tar');
    const dir = await world.dir();
    const path = await world.configFile(
      { registry: 'http://127.0.0.1:9', store: join(dir, 'store') },
      { identity: `${world.registryHost}/${STATE}`, publicKey: generateCosignKeyPair('x').publicPem },
    );
    const r = await runBundle(['import', site, '--config', path]);
    expect(r.code, r.out).to.equal(1);
    expect(r.out).to.include('has no valid signature by its key');
    expect(await new AgentStateFiles(join(dir, 'store')).appliedJson('edge')).to.equal(undefined);
  });

  it('when an archive of an older version than the one applied is imported, then it is refused as a replay and the newer one stays served', async () => {
    const v1app = await publishApp('1');
    const v2app = await publishApp('2');
    const v2 = await exportTo('v2.tar');
    const v1 = await exportTo('v1.tar', '--version', '1'); // made after v2 was published
    const device = await offlineAgent();

    const first = await runBundle(['import', v2, '--config', device.path]);
    expect(first.code, first.out).to.equal(0);
    expect(first.out).to.match(/version 2 applied/);
    const { files } = await readArchive(v1);
    expect(files.has(`blobs/sha256/${v2app.manifest.digest.slice(7)}`), 'the v1 archive holds v1 only').to.equal(false);
    const replay = await runBundle(['import', v1, '--config', device.path]);
    expect(replay.code, replay.out).to.equal(1);
    expect(replay.out).to.include('older than version 2');

    const agent = await world.start(await device.config);
    expect((await fetch(`${agent.url}/v2/library/app/manifests/2`)).status).to.equal(200);
    expect((await fetch(`${agent.url}/v2/library/app/manifests/${v2app.manifest.digest}`)).status).to.equal(200);
    expect(v1app.manifest.digest).to.not.equal(v2app.manifest.digest);
  });

  it('when the device\'s agent is running, then the import refuses to share its store (exit 4), says to stop it, and writes nothing into it', async () => {
    const app = await publishApp('1');
    const site = await exportTo('site.tar');
    const device = await offlineAgent();
    await world.start(await device.config);
    const r = await runBundle(['import', site, '--config', device.path]);
    expect(r.code, r.out).to.equal(4);
    expect(r.out).to.include('stop it first');
    const layer = join((await device.config).store, 'blobs', 'sha256', app.layers[0]!.digest.slice(7));
    expect(await access(layer).then(() => true, () => false), 'a blob of the archive in the running agent\'s store').to.equal(false);
  });
});
