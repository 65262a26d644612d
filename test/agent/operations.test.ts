import { expect } from 'chai';
import { generateKeyPairSync } from 'node:crypto';
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { readFile } from 'node:fs/promises';
import { parse } from 'yaml';
import { loadAgentConfig } from '../../agent/config/config.js';
import { KeySigner } from '../../worker/signer.js';
import { pushImage, runBundle, useAgentWorld } from '../support/agent.js';
import { startAuthProxy } from '../support/auth-proxy.js';
import { startFaultProxy } from '../support/fault-proxy.js';
import { image } from '../support/oci.js';
import { spawnSatellite, until, type Spawned } from '../support/process.js';
import { satellite } from '../support/run.js';
import { testKeys } from '../support/worker.js';

const STATE = 'satellite/group-state/edge/state';

describe('the edge agent: image signatures, pins, diffs, reports and tokens', function () {
  this.timeout(60_000);
  const world = useAgentWorld();

  it('when a group requires signed images, then only images with a valid signature by its key are served, and the others are reported', async () => {
    const imageKeys = await testKeys();
    const client = world.client();
    const { loadPrivateKey } = await import('../../core/cosign/keys.js');
    const { KEY_PASSWORD } = await import('../support/worker.js');
    const signer = new KeySigner(client, loadPrivateKey(imageKeys.privatePem, KEY_PASSWORD));
    const rogue = new KeySigner(client, generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey);
    const images = { signed: image(), unsigned: image(), rogue: image() };
    for (const [name, img] of Object.entries(images)) {
      await pushImage(client, `library/${name}`, img);
      await world.record('edge', `library/${name}`, img, '1');
    }
    await signer.sign('library/signed', images.signed.manifest.digest);
    await rogue.sign('library/rogue', images.rogue.manifest.digest);
    // Harbor replicates each signature as its own artifact (tag sha256-<hex>.sig).
    for (const name of ['signed', 'rogue'] as const) {
      const tag = `${images[name].manifest.digest.replace(':', '-')}.sig`;
      const sig = (await client.getManifest(`library/${name}`, tag))!;
      const { parseManifest } = await import('../../core/oci/manifest.js');
      const { ArtifactStore } = await import('../../core/store/artifact-store.js');
      await new ArtifactStore(world.db.pool).recordManifest({ group: 'edge', repository: `library/${name}` }, parseManifest(sig.bytes, sig.mediaType), tag);
    }
    await world.publish('edge');
    const agent = await world.start(await world.config({}, { verifyImages: { publicKey: imageKeys.publicPem } }));
    const summary = await agent.firstSync;
    expect(summary.failedImages).to.equal(2);
    const status = (repo: string) => Object.values(agent.agent.doc.groups.edge!.images).find((i) => i.repository === repo && i.digest === images[repo.slice(8) as keyof typeof images].manifest.digest)!;
    expect(status('library/signed').status).to.equal('present');
    expect(status('library/unsigned')).to.include({ status: 'failed' });
    expect(status('library/unsigned').reason).to.match(/no cosign signature/);
    expect(status('library/rogue').reason).to.match(/does not verify/);
    expect((await fetch(`${agent.url}/v2/library/signed/manifests/1`)).status).to.equal(200);
    expect((await fetch(`${agent.url}/v2/library/unsigned/manifests/1`)).status).to.equal(404);
    expect((await fetch(`${agent.url}/v2/library/rogue/manifests/1`)).status).to.equal(404);
  });

  it('when a state lists an image and its cosign signature, then the signature is pulled whole (no platform decision) and served under its .sig tag', async () => {
    const client = world.client();
    const img = image();
    await pushImage(client, 'library/signed', img);
    await world.record('edge', 'library/signed', img, '1');
    await world.sign('library/signed', img.manifest.digest);
    const tag = `${img.manifest.digest.replace(':', '-')}.sig`;
    const sig = (await client.getManifest('library/signed', tag))!;
    const { parseManifest } = await import('../../core/oci/manifest.js');
    const { ArtifactStore } = await import('../../core/store/artifact-store.js');
    await new ArtifactStore(world.db.pool).recordManifest({ group: 'edge', repository: 'library/signed' }, parseManifest(sig.bytes, sig.mediaType), tag);
    await world.publish('edge');
    const file = await world.configFile();
    const agent = await world.start(loadAgentConfig(file, {}));
    expect(await agent.firstSync).to.deep.include({ failedImages: 0 });

    const res = await fetch(`${agent.url}/v2/library/signed/manifests/${tag}`);
    expect(res.status, 'the .sig tag is served').to.equal(200);
    const body = Buffer.from(await res.arrayBuffer());
    expect(body.equals(sig.bytes), 'byte for byte').to.equal(true);
    const doc = JSON.parse(body.toString()) as { config: { digest: string }; layers: { digest: string }[] };
    for (const d of [doc.config, ...doc.layers]) {
      const blob = await fetch(`${agent.url}/v2/library/signed/blobs/${d.digest}`);
      expect(Buffer.from(await blob.arrayBuffer()).equals(await client.getBlob('library/signed', d.digest)), `blob ${d.digest}`).to.equal(true);
    }
    const status = await runBundle(['status', '--json', '--config', file]);
    const group = JSON.parse(status.out.slice(status.out.indexOf('{'))).groups[0];
    expect(group.images, 'the image and its signature present, nothing skipped').to.deep.equal({ present: 2, pending: 0, failed: 0, skipped: 0 });
  });

  it('when an operator pins a group to an earlier version, then the running agent applies it and holds it until unpinned; state diff says what changed', async () => {
    const a = image();
    const b = image();
    await pushImage(world.client(), 'library/app', a);
    await pushImage(world.client(), 'library/app', b);
    await world.record('edge', 'library/app', a, '1');
    await world.publish('edge');
    await world.record('edge', 'library/app', b, '2');
    await world.publish('edge');
    const file = await world.configFile({ listen: '127.0.0.1:0' });
    const store = parse(await readFile(file, 'utf8')).store as string;
    let running: Spawned | undefined;
    try {
      running = await spawnAgent(file);
      const url = await until('the agent listening', async () => /"url":"(http:[^"]+)"/.exec(running!.output())?.[1]);
      const served = async (tag: string) => (await fetch(`${url}/v2/library/app/manifests/${tag}`)).status;
      await until('v2 applied', async () => ((await served('2')) === 200 ? true : undefined));

      const pinned = await runBundle(['pin', 'edge', '1', '--config', file]);
      expect(pinned.code, pinned.out).to.equal(0);
      await until('v1 applied', async () => ((await served('2')) === 404 ? true : undefined));
      expect(await served('1')).to.equal(200);
      const status = JSON.parse((await runBundle(['status', '--json', '--config', file])).out);
      expect(status.groups[0]).to.include({ version: 1, pinned: true });
      expect(JSON.parse(await readFile(`${store}/pins.json`, 'utf8'))).to.deep.equal({ edge: { version: 1 } });

      expect((await runBundle(['unpin', 'edge', '--config', file])).code).to.equal(0);
      await until('back on latest', async () => ((await served('2')) === 200 ? true : undefined));
    } finally {
      running?.child.kill('SIGTERM');
      await running?.exited;
    }

    const diff = await satellite(['state', 'diff', 'edge', '1', '2'], { STATE_REGISTRY: world.registryUrl, LOG_LEVEL: 'silent' });
    expect(diff.stdout).to.include('version 1 → 2');
    expect(diff.stdout).to.include(`+ library/app@${b.manifest.digest} 2`);
    const json = JSON.parse((await satellite(['state', 'diff', 'edge', 'v1', 'v2', '--json'], { STATE_REGISTRY: world.registryUrl })).stdout);
    expect(json.added.map((x: { digest: string }) => x.digest)).to.deep.equal([b.manifest.digest]);
    expect(json.removed).to.deep.equal([]);
  });

  it('when a group is pinned by digest to an older version, then it is applied though lower, held while newer versions are published, and released by unpin; state diff lists removals and retags', async () => {
    const [a, b, c, d] = [image(), image(), image(), image()];
    for (const [name, img] of [['a', a], ['b', b], ['c', c], ['d', d]] as const) await pushImage(world.client(), `library/${name}`, img);
    const { ArtifactStore } = await import('../../core/store/artifact-store.js');
    const artifacts = new ArtifactStore(world.db.pool);
    await world.record('edge', 'library/a', a, '1');
    await world.record('edge', 'library/c', c, 'x');
    const v1 = await world.publish('edge');
    await world.record('edge', 'library/b', b, '2');
    await artifacts.deleteManifest({ group: 'edge', repository: 'library/a' }, a.manifest.digest); // removed
    await artifacts.untag({ group: 'edge', repository: 'library/c' }, 'x');
    await world.record('edge', 'library/c', c, 'y'); // retagged x → y
    const v2 = await world.publish('edge');
    const file = await world.configFile();
    const status = async () => JSON.parse((await runBundle(['status', '--json', '--config', file])).out).groups[0];
    expect((await runBundle(['--once', '--config', file])).code).to.equal(0);
    expect(await status()).to.include({ version: v2.version, pinned: false });

    const pinned = await runBundle(['pin', 'edge', v1.digest, '--config', file]);
    expect(pinned.code, pinned.out).to.equal(0);
    expect(pinned.out).to.include(`group edge pinned to ${v1.digest}: applied`);
    expect(await status(), 'the older version, by digest').to.include({ version: v1.version, digest: v1.digest, pinned: true });

    await world.record('edge', 'library/d', d, '3');
    const v3 = await world.publish('edge');
    expect(v3.version).to.be.above(v2.version);
    const held = await runBundle(['--once', '--config', file]);
    expect(held.code, held.out).to.equal(0);
    expect(await status(), 'held while a newer version is published').to.include({ version: v1.version, digest: v1.digest, pinned: true });
    const agent = await world.start(loadAgentConfig(file, {}));
    expect((await agent.firstSync).groups.edge).to.equal('unchanged');
    const served = async (repo: string, tag: string) => (await fetch(`${agent.url}/v2/library/${repo}/manifests/${tag}`)).status;
    expect([await served('a', '1'), await served('c', 'x'), await served('d', '3'), await served('b', '2')], 'v1 is what is served').to.deep.equal([200, 200, 404, 404]);
    await agent.stop();

    const unpinned = await runBundle(['unpin', 'edge', '--config', file]);
    expect(unpinned.code, unpinned.out).to.equal(0);
    expect(await status()).to.include({ version: v3.version, digest: v3.digest, pinned: false });

    const diff = await satellite(['state', 'diff', 'edge', '1', '2'], { STATE_REGISTRY: world.registryUrl, LOG_LEVEL: 'silent' });
    expect(diff.stdout.split('\n').filter((l) => /^[-+~] /.test(l)).sort()).to.deep.equal([
      `+ library/b@${b.manifest.digest} 2`,
      `- library/a@${a.manifest.digest} 1`,
      `~ library/c@${c.manifest.digest} x → y`,
    ]);
    const json = JSON.parse((await satellite(['state', 'diff', 'edge', 'v1', 'v2', '--json'], { STATE_REGISTRY: world.registryUrl, LOG_LEVEL: 'silent' })).stdout);
    expect(json.removed).to.deep.equal([{ repository: 'library/a', digest: a.manifest.digest, tag: ['1'] }]);
    expect(json.retagged).to.deep.equal([{ repository: 'library/c', digest: c.manifest.digest, from: ['x'], to: ['y'] }]);
  });

  it('when images are listed but not pulled yet, then status reports them pending while the sync runs, and present once it is done', async () => {
    const proxy = await startFaultProxy(world.registryUrl);
    try {
      const quick = image();
      const slow = image();
      await pushImage(world.client(), 'library/quick', quick);
      await pushImage(world.client(), 'library/slow', slow);
      await world.record('edge', 'library/quick', quick, '1');
      await world.record('edge', 'library/slow', slow, '1');
      const published = await world.publish('edge', proxy.url);
      proxy.rules.push({ method: 'GET', path: /\/library\/slow\/blobs\//, fault: 'slow', times: 1_000, delayMs: 1_500 });
      const file = await world.configFile();
      const agent = await world.start(loadAgentConfig(file, {}));
      const status = async () => JSON.parse((await runBundle(['status', '--json', '--config', file])).out).groups[0];
      const during = await until('the sync under way', async () => {
        const g = await status();
        return g.version !== null ? g : undefined;
      });
      expect(during).to.include({ version: published.version });
      expect(during.images).to.deep.equal({ present: 0, pending: 2, failed: 0, skipped: 0 });
      expect((await runBundle(['status', '--config', file])).out).to.include('0 present, 2 pending, 0 failed');
      expect((await fetch(`${agent.url}/v2/library/slow/manifests/1`)).status, 'a pending image is not served').to.equal(404);
      expect(await agent.firstSync).to.deep.include({ failedImages: 0 });
      expect((await status()).images).to.deep.equal({ present: 2, pending: 0, failed: 0, skipped: 0 });
    } finally {
      await proxy.close();
    }
  });

  it('when a report URL is configured, then after a sync the agent posts what it runs with its credential', async () => {
    const img = image();
    await pushImage(world.client(), 'library/app', img);
    await world.record('edge', 'library/app', img, '1');
    const published = await world.publish('edge');
    const received: { auth: string | undefined; body: unknown }[] = [];
    const server = createServer((req: IncomingMessage, res) => {
      let body = '';
      req.on('data', (d: Buffer) => (body += d.toString()));
      req.on('end', () => {
        received.push({ auth: req.headers.authorization, body: JSON.parse(body) });
        res.writeHead(204).end();
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const proxy = await startAuthProxy(world.registryUrl, 'basic', 'robot$store-042', 'robot-secret');
    try {
      const port = (server.address() as AddressInfo).port;
      const agent = await world.start(await world.config({
        registry: proxy.url, username: 'robot$store-042', password: 'robot-secret',
        report: { url: `http://127.0.0.1:${port}/api/v1/satellites/store-042/status` },
      }, { identity: `${world.registryHost}/${STATE}` }));
      await agent.firstSync;
      await until('the report', async () => (received.length ? true : undefined));
      expect(received[0]!.auth).to.equal(`Basic ${Buffer.from('robot$store-042:robot-secret').toString('base64')}`);
      expect(received[0]!.body).to.deep.include({ agentVersion: '0.1.0' });
      const group = (received[0]!.body as { groups: Record<string, unknown>[] }).groups[0]!;
      expect(group).to.deep.include({ name: 'edge', version: published.version, digest: published.digest, images: { present: 1, pending: 0, failed: 0 }, failures: [] });
    } finally {
      server.close();
      await proxy.close();
    }
  });

  it('when the registry issues Bearer tokens, then the agent asks a pull-only token once, reuses it while it is good, and renews it before it expires without a refusal', async () => {
    const img = image();
    await pushImage(world.client(), 'library/app', img);
    await world.record('edge', 'library/app', img, '1');
    await world.publish('edge');
    const proxy = await startAuthProxy(world.registryUrl, 'bearer', 'robot$s', 'secret');
    proxy.expiresIn = 6; // renewed 5 s early: good for about one second
    try {
      const agent = await world.start(await world.config({ registry: proxy.url, username: 'robot$s', password: 'secret' }, { identity: `${world.registryHost}/${STATE}` }));
      expect((await agent.firstSync).groups.edge).to.equal('applied');
      expect(proxy.scopes).to.deep.equal([`repository:${STATE}:pull`]);
      const refusals = proxy.refused.length;
      await agent.agent.syncOnce();
      expect(proxy.scopes, 'reused').to.have.length(1);
      await new Promise((r) => setTimeout(r, 1300));
      expect((await agent.agent.syncOnce()).groups.edge).to.equal('unchanged');
      expect(proxy.scopes, 'renewed').to.have.length(2);
      expect(proxy.refused.length, 'without a 401 first').to.equal(refusals);
    } finally {
      await proxy.close();
    }
  });
});

function spawnAgent(file: string): Promise<Spawned> {
  return spawnSatellite(['agent', '--config', file], { SATELLITE_AGENT_LOG_LEVEL: 'info' }, 'serving the local store');
}

