import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { readdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { BUNDLE, pushImage, runBundle, useAgentWorld } from '../support/agent.js';
import { startFaultProxy, type FaultProxy } from '../support/fault-proxy.js';
import { image, layer, randomLayer } from '../support/oci.js';
import { until } from '../support/process.js';



describe('the edge agent: failures it lives through', function () {
  this.timeout(90_000);
  const world = useAgentWorld();
  let proxy: FaultProxy;
  beforeEach(async () => {
    proxy = await startFaultProxy(world.registryUrl);
  });
  afterEach(async () => proxy?.close());

  it('when the agent is killed in the middle of a blob, then the next run resumes it with a Range request instead of starting over', async () => {
    const big = layer([{ name: 'big.bin', content: randomBytes(3 * 1024 * 1024) }]);
    const img = image({ layers: [big] });
    await pushImage(world.client(), 'library/big', img);
    await world.record('edge', 'library/big', img, '1');
    await world.publish('edge', proxy.url);
    proxy.rules.push({ method: 'GET', path: new RegExp(`/blobs/${big.digest}$`), fault: 'throttle', times: 1, bytesPerSecond: 512 * 1024 });
    const file = await world.configFile();
    const store = (await import('yaml')).parse(await (await import('node:fs/promises')).readFile(file, 'utf8')).store as string;
    const child = spawn(process.execPath, [BUNDLE, '--once', '--config', file], { stdio: 'ignore' });
    const partial = join(store, 'ingest', `sha256-${big.digest.slice(7)}.partial`);
    const before = await until('a third of the blob on disk', async () => {
      const s = await stat(partial).catch(() => undefined);
      return s && s.size > big.size / 3 ? s.size : undefined;
    });
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    const kept = (await stat(partial)).size;
    expect(kept).to.be.at.least(before);

    proxy.answers.length = 0;
    const second = await runBundle(['--once', '--config', file]);
    expect(second.code, second.out).to.equal(0);
    const refetched = proxy.answers.filter((a) => a.request.endsWith(big.digest)).reduce((n, a) => n + a.bytes, 0);
    expect(refetched, `re-downloaded ${refetched} of ${big.size} bytes`).to.equal(big.size - kept);
    const stored = await (await import('node:fs/promises')).readFile(join(store, 'blobs', 'sha256', big.digest.slice(7)));
    expect(stored.equals(big.bytes)).to.equal(true);
  });

  it('when the image registry fails during a sync, then the failed images are reported, the others served, and they are retried until present', async () => {
    const ok = image();
    const broken = image();
    await pushImage(world.client(), 'library/ok', ok);
    await pushImage(world.client(), 'library/broken', broken);
    await world.record('edge', 'library/ok', ok, '1');
    await world.record('edge', 'library/broken', broken, '1');
    await world.publish('edge', proxy.url);
    proxy.rules.push({ method: 'GET', path: new RegExp(`/library/broken/`), fault: 'error500', times: 1_000 });
    const agent = await world.start(await world.config());
    const first = await agent.firstSync;
    expect(first.failedImages).to.equal(1);
    const rec = agent.agent.doc.groups.edge!;
    const failed = Object.values(rec.images).find((i) => i.repository === 'library/broken')!;
    expect(failed).to.include({ status: 'failed' });
    expect(failed.reason).to.match(/500/);
    expect((await fetch(`${agent.url}/v2/library/ok/manifests/1`)).status).to.equal(200);
    expect((await fetch(`${agent.url}/v2/library/broken/manifests/1`)).status).to.equal(404);
    const metrics = async () => (await fetch(`${agent.url}/metrics`)).text();
    const first_ = await metrics();
    expect(first_, 'the failed image counted').to.match(/satellite_agent_failures_total\{where="image"\} 1\n/);
    expect(first_, 'the state itself was fine').to.not.match(/satellite_agent_failures_total\{where="(state|poll)"\}/);
    expect(first_).to.match(/satellite_agent_images\{group="edge",status="failed"\} 1\n/);
    expect(first_).to.match(/satellite_agent_sync_seconds_count 1\n/);

    proxy.rules.length = 0;
    expect(await agent.agent.syncOnce(), 'same state, retried').to.deep.include({ groups: { edge: 'retried' }, failedImages: 0 });
    expect((await fetch(`${agent.url}/v2/library/broken/manifests/1`)).status).to.equal(200);
    const second = await metrics();
    expect(second, 'a successful retry adds no failure').to.match(/satellite_agent_failures_total\{where="image"\} 1\n/);
    expect(second).to.match(/satellite_agent_images\{group="edge",status="failed"\} 0\n/);
    expect(second).to.match(/satellite_agent_sync_seconds_count 2\n/);
  });

  it('when a stored blob is corrupted on disk, then serving it fails, it is removed, and the next sync fetches it again', async () => {
    const img = image({ layers: [randomLayer(200_000)] });
    await pushImage(world.client(), 'library/app', img);
    await world.record('edge', 'library/app', img, '1');
    await world.publish('edge');
    const agent = await world.start(await world.config());
    await agent.firstSync;
    const l = img.layers[0]!;
    const path = agent.agent.store.path(l.digest);
    const rotten = Buffer.from(l.bytes);
    rotten[rotten.length - 10] = rotten[rotten.length - 10]! ^ 0xff;
    await writeFile(path, rotten);

    const res = await fetch(`${agent.url}/v2/library/app/blobs/${l.digest}`);
    expect(res.status).to.equal(200);
    let whole = false;
    await res.arrayBuffer().then(() => (whole = true), () => undefined);
    expect(whole, 'the corrupt blob is never delivered whole').to.equal(false);
    await until('the corrupt blob removed', async () => ((await agent.agent.store.size(l.digest)) === undefined ? true : undefined));
    expect(await agent.agent.syncOnce()).to.deep.include({ groups: { edge: 'retried' }, failedImages: 0 });
    const again = await fetch(`${agent.url}/v2/library/app/blobs/${l.digest}`);
    expect(Buffer.from(await again.arrayBuffer()).equals(l.bytes)).to.equal(true);

    // A Range read: served while the blob is intact, refused (404, no byte) once it is not.
    const ranged = () => fetch(`${agent.url}/v2/library/app/blobs/${l.digest}`, { headers: { Range: 'bytes=0-99' } });
    const intact = await ranged();
    expect(intact.status).to.equal(206);
    expect(Buffer.from(await intact.arrayBuffer()).equals(l.bytes.subarray(0, 100))).to.equal(true);
    await writeFile(path, rotten); // the damage lies outside the range asked for
    const refused = await ranged();
    expect(refused.status, 'a range of a corrupt blob').to.equal(404);
    expect(((await refused.json()) as { errors: { code: string }[] }).errors[0]!.code).to.equal('BLOB_UNKNOWN');
    expect(await agent.agent.store.has(l.digest), 'the corrupt blob removed').to.equal(false);
    expect(await agent.agent.syncOnce()).to.deep.include({ groups: { edge: 'retried' }, failedImages: 0 });
    const fetchedAgain = await ranged();
    expect(fetchedAgain.status).to.equal(206);
    expect(Buffer.from(await fetchedAgain.arrayBuffer()).equals(l.bytes.subarray(0, 100))).to.equal(true);
  });

  it('when a blob arrives with one byte changed in flight (same length), then it never enters the store nor is served, the image is reported failed and the next sync fetches it whole', async () => {
    const ok = image();
    const img = image({ layers: [randomLayer(100_000)] });
    await pushImage(world.client(), 'library/ok', ok);
    await pushImage(world.client(), 'library/app', img);
    await world.record('edge', 'library/ok', ok, '1');
    await world.record('edge', 'library/app', img, '1');
    await world.publish('edge', proxy.url);
    const l = img.layers[0]!;
    proxy.rules.push({ method: 'GET', path: new RegExp(`/blobs/${l.digest}$`), fault: 'corrupt', times: 1 });
    const agent = await world.start(await world.config());
    const first = await agent.firstSync;
    expect(proxy.injected(), 'the bytes were corrupted in flight').to.equal(1);
    const sent = proxy.answers.find((a) => a.request.endsWith(l.digest))!;
    expect(sent.bytes, 'as many bytes as the blob has').to.equal(l.size);
    expect(first.failedImages).to.equal(1);
    const rec = Object.values(agent.agent.doc.groups.edge!.images).find((i) => i.repository === 'library/app')!;
    expect(rec.status).to.equal('failed');
    expect(rec.reason).to.include(`blob ${l.digest} arrived with digest sha256:`);
    expect(await agent.agent.store.has(l.digest), 'the corrupt bytes never became a blob').to.equal(false);
    expect(await readdir(join(agent.agent.config.store, 'ingest')), 'nor stay as a partial download').to.deep.equal([]);
    expect((await fetch(`${agent.url}/v2/library/app/manifests/1`)).status).to.equal(404);
    expect((await fetch(`${agent.url}/v2/library/app/blobs/${l.digest}`)).status).to.equal(404);
    expect((await fetch(`${agent.url}/v2/library/ok/manifests/1`)).status, 'the other image is served').to.equal(200);

    expect(await agent.agent.syncOnce()).to.deep.include({ groups: { edge: 'retried' }, failedImages: 0 });
    const again = await fetch(`${agent.url}/v2/library/app/blobs/${l.digest}`);
    expect(Buffer.from(await again.arrayBuffer()).equals(l.bytes)).to.equal(true);
  });

  it('when a stored manifest is corrupted on disk, then it is not served (404, never the wrong bytes), it is removed, and the next sync fetches it again', async () => {
    const img = image();
    await pushImage(world.client(), 'library/app', img);
    await world.record('edge', 'library/app', img, '1');
    await world.publish('edge');
    const agent = await world.start(await world.config());
    await agent.firstSync;
    const m = img.manifest;
    const rotten = Buffer.from(m.bytes);
    const at = rotten.indexOf('"size":') + 7;
    rotten[at] = rotten[at] === 0x31 ? 0x32 : 0x31; // a layer's size changed: still JSON, same length
    await writeFile(agent.agent.store.path(m.digest), rotten);

    for (const [method, ref] of [['HEAD', '1'], ['GET', '1'], ['GET', m.digest]] as const) {
      const res = await fetch(`${agent.url}/v2/library/app/manifests/${ref}`, { method });
      const body = Buffer.from(await res.arrayBuffer());
      expect(res.status, `${method} ${ref}`).to.equal(404);
      expect(body.equals(rotten), `${method} ${ref}: never the corrupt bytes`).to.equal(false);
    }
    expect(await agent.agent.store.has(m.digest), 'removed from the store').to.equal(false);
    expect(await agent.agent.syncOnce()).to.deep.include({ groups: { edge: 'retried' }, failedImages: 0 });
    const again = await fetch(`${agent.url}/v2/library/app/manifests/1`);
    expect(again.status).to.equal(200);
    expect(Buffer.from(await again.arrayBuffer()).equals(m.bytes)).to.equal(true);
  });

  it('when the image registry cuts the connection in the middle of a blob, then the other images are served, the cut one is reported and the next sync resumes it to completion', async () => {
    const ok = image();
    const cut = image({ layers: [randomLayer(300_000)] });
    await pushImage(world.client(), 'library/ok', ok);
    await pushImage(world.client(), 'library/cut', cut);
    await world.record('edge', 'library/ok', ok, '1');
    await world.record('edge', 'library/cut', cut, '1');
    await world.publish('edge', proxy.url);
    const l = cut.layers[0]!;
    proxy.rules.push({ method: 'GET', path: new RegExp(`/blobs/${l.digest}$`), fault: 'drop', times: 1, afterBytes: 100_000 });
    const agent = await world.start(await world.config());
    const first = await agent.firstSync;
    expect(proxy.injected(), 'the connection was cut').to.equal(1);
    expect(first.failedImages).to.equal(1);
    const rec = Object.values(agent.agent.doc.groups.edge!.images).find((i) => i.repository === 'library/cut')!;
    expect(rec.status).to.equal('failed');
    expect(rec.reason).to.be.a('string').and.not.equal('');
    expect((await fetch(`${agent.url}/v2/library/cut/manifests/1`)).status).to.equal(404);
    const served = await fetch(`${agent.url}/v2/library/ok/blobs/${ok.layers[0]!.digest}`);
    expect(Buffer.from(await served.arrayBuffer()).equals(ok.layers[0]!.bytes), 'the other image is served').to.equal(true);

    proxy.answers.length = 0;
    expect(await agent.agent.syncOnce()).to.deep.include({ groups: { edge: 'retried' }, failedImages: 0 });
    const refetched = proxy.answers.filter((a) => a.request.endsWith(l.digest)).reduce((n, a) => n + a.bytes, 0);
    expect(refetched, 'only what was missing is fetched again').to.be.below(l.size).and.above(0);
    const again = await fetch(`${agent.url}/v2/library/cut/blobs/${l.digest}`);
    expect(Buffer.from(await again.arrayBuffer()).equals(l.bytes)).to.equal(true);
  });

  it('when the image registry refuses connections during a sync, then what was applied stays served, the new image is reported and it is pulled once the registry is back', async () => {
    const ok = image();
    await pushImage(world.client(), 'library/ok', ok);
    await world.record('edge', 'library/ok', ok, '1');
    await world.publish('edge', proxy.url);
    const agent = await world.start(await world.config());
    expect((await agent.firstSync).failedImages).to.equal(0);
    const fresh = image();
    await pushImage(world.client(), 'library/fresh', fresh);
    await world.record('edge', 'library/fresh', fresh, '1');
    await world.publish('edge', proxy.url);

    await proxy.refuse(); // the image registry is down; the states' registry is not
    const during = await agent.agent.syncOnce();
    expect(during).to.deep.include({ groups: { edge: 'applied' }, failedImages: 1 });
    const rec = Object.values(agent.agent.doc.groups.edge!.images).find((i) => i.repository === 'library/fresh')!;
    expect(rec).to.include({ status: 'failed' });
    expect(rec.reason).to.match(/ECONNREFUSED/);
    expect((await fetch(`${agent.url}/v2/library/fresh/manifests/1`)).status).to.equal(404);
    for (const b of [ok.manifest, ...ok.layers]) {
      const kind = b === ok.manifest ? 'manifests' : 'blobs';
      const res = await fetch(`${agent.url}/v2/library/ok/${kind}/${b.digest}`);
      expect(Buffer.from(await res.arrayBuffer()).equals(b.bytes), 'what was applied is still served').to.equal(true);
    }

    await proxy.accept();
    expect(await agent.agent.syncOnce()).to.deep.include({ groups: { edge: 'retried' }, failedImages: 0 });
    expect((await fetch(`${agent.url}/v2/library/fresh/manifests/1`)).status).to.equal(200);
  });

  /** GETs `path` from the agent: status and body bytes. */
  const get = async (url: string, path: string) => {
    const res = await fetch(`${url}${path}`);
    return { status: res.status, body: Buffer.from(await res.arrayBuffer()) };
  };
  /** Whether the agent serves `img` whole under `repo`: by `tag` (when given), by digest, and each of its blobs. */
  const servesWhole = async (url: string, repo: string, img: ReturnType<typeof image>, tag?: string) => {
    const refs = [...(tag ? [tag] : []), img.manifest.digest];
    for (const ref of refs) {
      const m = await get(url, `/v2/${repo}/manifests/${ref}`);
      if (m.status !== 200 || !m.body.equals(img.manifest.bytes)) return `${ref}: ${m.status}`;
    }
    for (const b of [img.config, ...img.layers]) {
      const r = await get(url, `/v2/${repo}/blobs/${b.digest}`);
      if (r.status !== 200 || !r.body.equals(b.bytes)) return `blob ${b.digest}: ${r.status}`;
    }
    return 'whole';
  };

  it('when a tag moves to an image the registry cannot deliver, then the tag goes on serving the previous image (by tag, digest and blobs) until the new one is present, and only then is the old one collected', async () => {
    const a = image({ layers: [randomLayer(50_000)] });
    const b = image({ layers: [randomLayer(50_000)] });
    await pushImage(world.client(), 'library/app', a);
    await pushImage(world.client(), 'library/app', b);
    await world.record('edge', 'library/app', a, 'stable');
    await world.publish('edge', proxy.url);
    const agent = await world.start(await world.config());
    expect((await agent.firstSync).failedImages).to.equal(0);
    await world.record('edge', 'library/app', b, 'stable'); // the tag moves to b
    await world.publish('edge', proxy.url);

    await proxy.refuse(); // the image registry is down; the states' registry is not
    expect(await agent.agent.syncOnce()).to.deep.include({ groups: { edge: 'applied' }, failedImages: 1 });
    expect(agent.agent.doc.groups.edge!.applied!.version, 'the new state is applied').to.equal(2);
    expect(await servesWhole(agent.url, 'library/app', a, 'stable'), 'the previous image is still served').to.equal('whole');
    expect((await get(agent.url, `/v2/library/app/manifests/${b.manifest.digest}`)).status).to.equal(404);
    expect(await agent.agent.syncOnce(), 'a retry that fails again').to.deep.include({ groups: { edge: 'retried' }, failedImages: 1 });
    expect(await servesWhole(agent.url, 'library/app', a, 'stable'), 'still served after a failed retry (and its collection)').to.equal('whole');

    await proxy.accept();
    expect(await agent.agent.syncOnce()).to.deep.include({ groups: { edge: 'retried' }, failedImages: 0 });
    expect(await servesWhole(agent.url, 'library/app', b, 'stable'), 'the replacement is served').to.equal('whole');
    expect((await get(agent.url, `/v2/library/app/manifests/${a.manifest.digest}`)).status, 'the superseded digest is no longer served').to.equal(404);
    for (const d of [a.manifest.digest, a.layers[0]!.digest]) expect(await agent.agent.store.has(d), `${d} collected`).to.equal(false);
  });

  it('when the agent is killed while pulling the image a tag moved to, and restarts with the registry unreachable, then the tag serves the previous image', async () => {
    const a = image();
    const big = layer([{ name: 'big.bin', content: randomBytes(2 * 1024 * 1024) }]);
    const b = image({ layers: [big] });
    await pushImage(world.client(), 'library/app', a);
    await pushImage(world.client(), 'library/app', b);
    await world.record('edge', 'library/app', a, 'stable');
    await world.publish('edge', proxy.url);
    const file = await world.configFile({ registry: proxy.url }, { identity: `${world.registryHost}/satellite/group-state/edge/state` });
    const config = (await import('../../agent/config/config.js')).loadAgentConfig(file, {});
    const first = await world.start(config);
    expect((await first.firstSync).failedImages).to.equal(0);
    await first.stop();

    await world.record('edge', 'library/app', b, 'stable');
    await world.publish('edge', proxy.url);
    proxy.rules.push({ method: 'GET', path: new RegExp(`/blobs/${big.digest}$`), fault: 'throttle', times: 1, bytesPerSecond: 256 * 1024 });
    const child = spawn(process.execPath, [BUNDLE, '--once', '--config', file], { stdio: 'ignore' });
    const partial = join(config.store, 'ingest', `sha256-${big.digest.slice(7)}.partial`);
    await until('part of the new image on disk', async () => ((await stat(partial).catch(() => undefined))?.size ? true : undefined));
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    await proxy.close(); // Harbor is gone

    const again = await world.start(config);
    expect((await again.firstSync).groups.edge).to.equal('unreachable');
    expect(again.agent.doc.groups.edge!.applied!.version, 'the killed run had applied the new state').to.equal(2);
    expect(await servesWhole(again.url, 'library/app', a, 'stable'), 'the previous image is served').to.equal('whole');
  });

  it('when the agent restarts with the registry unreachable, then everything applied before is served and the status says since when it is stale', async () => {
    const img = image();
    await pushImage(world.client(), 'library/app', img);
    await world.record('edge', 'library/app', img, '1');
    await world.publish('edge');
    const file = await world.configFile({ registry: proxy.url }, { identity: `${world.registryHost}/satellite/group-state/edge/state` });
    const config = (await import('../../agent/config/config.js')).loadAgentConfig(file, {});
    const first = await world.start(config);
    await first.firstSync;
    await first.stop();
    await proxy.close(); // Harbor is gone

    const again = await world.start(config);
    expect((await again.firstSync).groups.edge).to.equal('unreachable');
    const res = await fetch(`${again.url}/v2/library/app/manifests/1`);
    expect(res.status).to.equal(200);
    expect(Buffer.from(await res.arrayBuffer()).equals(img.manifest.bytes)).to.equal(true);
    const status = await runBundle(['status', '--config', file]);
    expect(status.code).to.equal(1);
    expect(status.out).to.match(/edge\s+v1\s+sha256:.*stale since \d{4}-/);
  });

  it('when the configuration is wrong, then the agent exits 2 naming each wrong field', async () => {
    const file = await world.configFile({ platforms: ['linux'], interval: 'often', listen: 'nowhere', colour: 'blue' }, { publicKey: 'no-such-file.pem' });
    const run = await runBundle(['--once', '--config', file]);
    expect(run.code).to.equal(2);
    expect(run.out).to.include('colour: unknown key');
    const semantic = await world.configFile({ platforms: ['linux'], interval: 'often', listen: 'nowhere' }, { publicKey: 'no-such-file.pem' });
    const run2 = await runBundle(['--once', '--config', semantic]);
    expect(run2.code).to.equal(2);
    for (const field of ['groups[0].publicKey', 'platforms[0]', 'listen', 'interval']) expect(run2.out).to.include(`${field}:`);
  });

  it('when the bundle is copied alone to a device, then it runs with Node and nothing beside it', async () => {
    const img = image();
    await pushImage(world.client(), 'library/app', img);
    await world.record('edge', 'library/app', img, '1');
    await world.publish('edge');
    const dir = await world.dir();
    const { copyFile } = await import('node:fs/promises');
    await copyFile(BUNDLE, join(dir, 'satellite-agent'));
    expect(await readdir(dir)).to.deep.equal(['satellite-agent']);
    const file = await world.configFile();
    const child = spawn(process.execPath, [join(dir, 'satellite-agent'), '--once', '--config', file], { cwd: dir, env: { PATH: process.env.PATH }, stdio: 'pipe' });
    let out = '';
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const code = await new Promise((r) => child.on('exit', r));
    expect(code, out).to.equal(0);
  });
});
