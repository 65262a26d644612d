import { expect } from 'chai';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describeFailure } from '../../agent/sync/pull.js';
import { RESUME_GAIN_BYTES } from '../../agent/store/space.js';
import { parse, stringify } from 'yaml';
import { BUNDLE, pushImage, runBundle, useAgentWorld } from '../support/agent.js';
import { startFaultProxy, type FaultProxy } from '../support/fault-proxy.js';
import { image, layer } from '../support/oci.js';
import { freePort, until } from '../support/process.js';

// A full disk, for real: the store is a small tmpfs mounted in a mount namespace of the
// test's own (`unshare -m`), the agent is the bundle, and every byte it takes from the
// registry goes through a counting proxy.

const STATE = 'satellite/group-state/edge/state';

describe('the edge agent: a full disk', function () {
  this.timeout(120_000);
  const world = useAgentWorld();
  let proxy: FaultProxy;
  const children: ChildProcess[] = [];
  beforeEach(async () => {
    proxy = await startFaultProxy(world.registryUrl);
  });
  afterEach(async () => {
    for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    await proxy?.close();
  });

  it('when the disk fills during run --once, then that image fails as disk full, the pass pulls nothing more, the run exits 1 and status says the store is full and how much is free', async () => {
    const small = image();
    const large = image({ layers: [layer([{ name: 'l.bin', content: randomBytes(3 * 1024 * 1024) }])] });
    await pushImage(world.client(), 'library/small', small);
    await pushImage(world.client(), 'library/large', large);
    await world.record('edge', 'library/small', small, '1');
    await world.record('edge', 'library/large', large, '1');
    await world.publish('edge');
    const file = await world.configFile({ concurrency: 1 });
    const store = parse(await readFile(file, 'utf8')).store as string;
    await mkdir(store, { recursive: true });
    // A 2 MiB file system for the store; library/large (pulled first: the state is sorted) does not fit.
    const run = await runBundle([], {
      shell: `mount -t tmpfs -o size=2m tmpfs '${store}' && ${process.execPath} ${BUNDLE} --once --config '${file}'; echo "exit=$?"; ` +
        `${process.execPath} ${BUNDLE} status --json --config '${file}'; ${process.execPath} ${BUNDLE} status --config '${file}'; echo "status=$?"`,
    });
    expect(run.out).to.include('exit=1');
    const status = JSON.parse(run.out.slice(run.out.indexOf('{'), run.out.lastIndexOf('}') + 1));
    expect(status.store.full.since).to.match(/^\d{4}-/);
    expect(status.store.full.reason).to.equal('no space left on the device');
    expect(status.store.full.bytesFree).to.be.a('number').and.below(1024 * 1024);
    const group = status.groups[0];
    expect(group.images).to.include({ present: 0, failed: 2 });
    const reason = (repo: string) => group.failures.find((f: { repository: string }) => f.repository === repo).reason as string;
    expect(reason('library/large')).to.match(/^disk full/);
    expect(reason('library/small'), 'not tried once the store was full').to.match(/^not pulled: the store is full/);
    expect(run.out).to.match(/store full since \d{4}-\S+ \(no space left on the device; \d+ (KiB|B) free\): pulls paused until space is freed/);
    expect(run.out).to.include('status=1');
  });

  it('when the disk is full, then over 10 sync intervals the agent downloads about one blob, backs off, says so in status and metrics and serves what it has; once space is freed it resumes from the bytes it kept', async () => {
    const small = image();
    const big = layer([{ name: 'big.bin', content: randomBytes(3 * 1024 * 1024) }]);
    const large = image({ layers: [big] });
    await pushImage(world.client(), 'library/small', small);
    await pushImage(world.client(), 'library/large', large);
    await world.record('edge', 'library/small', small, '1');
    await world.publish('edge', proxy.url);

    const dir = await world.dir();
    const fs = join(dir, 'fs'); // the tmpfs: the store and a filler file that leaves 1.5 MB free
    const ctl = join(dir, 'ctl'); // outside the namespace's view of the tmpfs: how the test tells the script to free space
    await mkdir(fs);
    await mkdir(ctl);
    const port = await freePort();
    const intervalMs = 1000;
    const file = join(dir, 'agent.yaml');
    await writeFile(file, stringify({
      registry: proxy.url,
      groups: [{ name: 'edge', state: STATE, publicKey: world.publicPem, identity: `${world.registryHost}/${STATE}` }],
      platforms: ['linux/amd64'], store: join(fs, 'store'), listen: `127.0.0.1:${port}`, interval: `${intervalMs}ms`, logLevel: 'info',
    }));
    const script = [
      `mount -t tmpfs -o size=4m tmpfs '${fs}'`,
      `head -c 2500000 /dev/zero > '${fs}/filler'`,
      `${process.execPath} ${BUNDLE} run --config '${file}' &`,
      'agent=$!',
      `while [ ! -e '${ctl}/free' ]; do sleep 0.1; done`,
      `rm '${fs}/filler'`,
      'wait $agent',
    ].join('\n');
    const child = spawn('unshare', ['-m', '--propagation', 'private', 'sh', '-c', script], { stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(child);
    let log = '';
    child.stdout!.on('data', (d: Buffer) => (log += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (log += d.toString()));
    const url = `http://127.0.0.1:${port}`;
    const status = async () => (await (await fetch(`${url}/status`)).json()) as { store?: { full: { since: string; bytesFree: number } }; groups: Record<string, { applied?: { version: number }; images: Record<string, { repository: string; status: string }> }> };
    await until('the first state applied', async () => ((await status()).groups.edge?.applied?.version === 1 ? true : undefined));

    await world.record('edge', 'library/large', large, '1');
    await world.publish('edge', proxy.url);
    await until('the big blob fetched', async () => (proxy.answers.some((a) => a.request.endsWith(big.digest)) ? true : undefined), 30_000);
    const bytes = (since: number) => proxy.answers.slice(since).reduce((n, a) => n + a.bytes, 0);
    const fullAt = proxy.answers.length;
    const headsAt = proxy.log.length;
    const first = bytes(0);

    await new Promise((r) => setTimeout(r, 10 * intervalMs));
    const during = bytes(fullAt);
    const polls = proxy.log.slice(headsAt).filter((l) => l.startsWith(`HEAD /v2/${STATE}/manifests/latest`)).length;
    // What the registry sent: the states, the small image and one download of the big blob
    // (sent whole into the connection's buffers, even though the agent stopped reading it
    // when the disk filled); nothing more while the disk stays full.
    expect(first + during, `downloaded: ${first} bytes until the disk was full, then ${during} over 10 intervals (the blob is ${big.size})`).to.be.at.most(big.size + 64 * 1024);
    expect(polls, `polls over 10 intervals while full: ${polls} (backed off)`).to.be.at.most(5);
    const full = (await status()).store?.full;
    expect(full, 'status says the store is full').to.not.equal(undefined);
    expect(full!.since).to.match(/^\d{4}-/);
    expect(full!.bytesFree, 'bytes free in the 4 MiB file system').to.be.a('number').and.below(4 * 1024 * 1024);
    const metrics = await (await fetch(`${url}/metrics`)).text();
    expect(metrics).to.match(/\nsatellite_agent_store_full 1\n/);
    expect(metrics).to.match(/\nsatellite_agent_store_free_bytes \d+\n/);
    for (const b of [small.manifest, ...small.layers]) {
      const kind = b === small.manifest ? 'manifests' : 'blobs';
      const res = await fetch(`${url}/v2/library/small/${kind}/${b.digest}`);
      expect(Buffer.from(await res.arrayBuffer()).equals(b.bytes), 'what was applied is still served').to.equal(true);
    }

    const freedAt = proxy.answers.length;
    await writeFile(join(ctl, 'free'), '');
    await until('the large image present', async () => {
      const s = await status();
      return !s.store && Object.values(s.groups.edge!.images).every((i) => i.status === 'present') ? true : undefined;
    }, 60_000);
    const resumed = proxy.answers.slice(freedAt).filter((a) => a.request.endsWith(big.digest)).reduce((n, a) => n + a.bytes, 0);
    expect(resumed, `fetched after space was freed: ${resumed} of ${big.size} bytes (the rest was kept)`).to.be.above(0).and.below(big.size - 512 * 1024);
    const res = await fetch(`${url}/v2/library/large/blobs/${big.digest}`);
    expect(Buffer.from(await res.arrayBuffer()).equals(big.bytes), 'the resumed blob, byte for byte').to.equal(true);
    expect(await (await fetch(`${url}/metrics`)).text()).to.match(/\nsatellite_agent_store_full 0\n/);
    expect(log).to.include('the store is full: pulls stop until space is freed');
  });

  it('when the store filled and then less than 1 MiB more than was left is freed, then pulls stay paused; once more than that is freed, they resume', async () => {
    // StoreSpace, the agent's own judge of room, on a real 8 MiB tmpfs filled to the last
    // byte in a mount namespace of its own: 512 KiB freed is not enough, 3 MiB more is.
    const dir = await world.dir();
    const url = (f: string) => pathToFileURL(resolve('dist/agent', f)).href;
    const script = `
      import { appendFileSync, rmSync, writeFileSync } from 'node:fs';
      import { StoreSpace } from '${url('store/space.js')}';
      import { AgentMetrics } from '${url('metrics.js')}';
      const root = process.argv[2];
      const space = new StoreSpace(root, new AgentMetrics());
      writeFileSync(root + '/a', Buffer.alloc(3 * 1024 * 1024, 1));
      writeFileSync(root + '/b', Buffer.alloc(512 * 1024, 1));
      let full;
      try { for (;;) appendFileSync(root + '/c', Buffer.alloc(64 * 1024, 1)); } catch (err) { full = err; }
      await space.beginPass();
      await space.markFull(full);
      await space.endPass();
      const out = { code: full.code, full: space.isFull };
      rmSync(root + '/b');
      await space.beginPass();
      out.afterHalfMiB = space.stopped;
      rmSync(root + '/a');
      await space.beginPass();
      out.afterMore = space.stopped;
      console.log(JSON.stringify(out));`;
    await writeFile(join(dir, 'space.mjs'), script);
    await mkdir(join(dir, 'fs'));
    const run = await runBundle([], { shell: `mount -t tmpfs -o size=8m tmpfs '${dir}/fs' && ${process.execPath} '${dir}/space.mjs' '${dir}/fs'` });
    expect(RESUME_GAIN_BYTES).to.equal(1024 * 1024);
    const line = run.out.split('\n').find((l) => l.startsWith('{"code"'));
    expect(line, run.out).to.be.a('string');
    expect(JSON.parse(line!), run.out).to.deep.equal({ code: 'ENOSPC', full: true, afterHalfMiB: true, afterMore: false });
  });

  it('when a write fails because a disk quota is reached (EDQUOT), then the image fails as disk full, quota reached, like a full disk', () => {
    // Linux reports a quota reached as EDQUOT where a full disk is ENOSPC. A real quota needs
    // a file system with quotas enabled (tmpfs quotas are a kernel option the machines here
    // lack, and ext4's need a loop device), so the error is the one fs.write gives then.
    const quota = Object.assign(new Error('EDQUOT: disk quota exceeded, write'), { code: 'EDQUOT', errno: -122, syscall: 'write' });
    expect(describeFailure(quota)).to.equal('disk full: the store has no room for this image (quota reached)');
    const nospace = Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC', errno: -28, syscall: 'write' });
    expect(describeFailure(nospace)).to.equal('disk full: the store has no room for this image (no space left)');
  });
});
