import { expect } from 'chai';
import { execa } from 'execa';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse as parseToml } from 'smol-toml';
import type { AgentConfig } from '../../agent/config/config.js';
import { checkContainerdConfig } from '../../agent/runtime/mirrors.js';
import type { RunningAgent } from '../../agent/run.js';
import { freePort } from '../../harbor-dev/docker-registry.js';
import { pushImage, useAgentWorld } from '../support/agent.js';
import { startFaultProxy, type FaultProxy } from '../support/fault-proxy.js';
import { image, type Image } from '../support/oci.js';
import { until } from '../support/process.js';

// The runtime side of the agent, with the clients a device runs (Debian's skopeo, podman and
// containerd 1.6): the agent syncs a group whose images live on an origin registry, the
// origin goes down, and a client pulls by digest through the mirror file the agent wrote.
// Only the agent can have served those bytes.
//
// skopeo and podman read /etc/containers/registries.conf(.d) (Debian's skopeo ignores
// CONTAINERS_REGISTRIES_CONF), so they run in a private mount namespace where a test
// directory is bind-mounted over /etc/containers: the machine's own files are not touched.
// containerd runs with a private root, state and socket.

const which = async (bin: string) => (await execa('sh', ['-c', `command -v ${bin}`], { reject: false })).exitCode === 0;

/** The Debian package of a binary, where the names differ. */
const PACKAGE: Record<string, string> = { ctr: 'containerd', unshare: 'util-linux' };

/** Skips the current test, saying why in its title, when a binary is not installed. */
function requireBinaries(bins: string[]) {
  const missing: string[] = [];
  before(async () => {
    for (const b of bins) if (!(await which(b))) missing.push(b);
  });
  beforeEach(function () {
    if (missing.length === 0) return;
    const packages = [...new Set(missing.map((b) => PACKAGE[b] ?? b))];
    this.currentTest!.title += ` [skipped: ${missing.join(', ')} not installed here (Debian: apt-get install ${packages.join(' ')})]`;
    this.skip();
  });
  return { get available() { return missing.length === 0; } };
}

/**
 * Runs `command` with `etc` bind-mounted over /etc/containers in a private mount namespace;
 * with `privateRun`, /run is a private tmpfs too (podman creates /run/containers there).
 */
async function withEtcContainers(etc: string, home: string, command: string[], privateRun = false) {
  const script = `mount --bind "$0" /etc/containers && ${privateRun ? 'mount -t tmpfs tmpfs /run && ' : ''}exec "$@"`;
  return execa('unshare', ['-m', '--propagation', 'private', 'sh', '-c', script, etc, ...command], {
    reject: false,
    env: { HOME: home },
    timeout: 120_000,
  });
}

interface Edge {
  img: Image;
  agent: RunningAgent;
  config: AgentConfig;
  /** host:port of the registry the state names: down once the agent has synced. */
  origin: string;
  dir: string;
  /** What is bind-mounted over /etc/containers: registries.conf, policy.json, the drop-in. */
  etc: string;
  certs: string;
  dropIn: string;
}

describe('the agent\'s runtime mirror files, used by real clients', function () {
  this.timeout(120_000);
  let proxy: FaultProxy | undefined;
  // The states send images to a proxy in front of the docker-registry: closing the proxy
  // takes the image registry down (its port then refuses connections).
  const world = useAgentWorld();
  beforeEach(async () => {
    proxy = await startFaultProxy(world.registryUrl);
  });
  afterEach(async () => {
    await proxy?.close().catch(() => undefined);
  });

  /** A group with one image, synced by an agent that writes both mirror files; then (by default) the origin goes down. */
  async function edge(mirrors: Record<string, unknown> = {}, port?: number, originDown = true): Promise<Edge> {
    const img = image();
    await pushImage(world.client(), 'library/x', img, '1');
    await world.record('edge', 'library/x', img, '1');
    await world.publish('edge', proxy!.url);
    const dir = await world.dir();
    const etc = join(dir, 'etc-containers');
    const certs = join(dir, 'certs.d');
    const dropIn = join(etc, 'registries.conf.d', 'satellite.conf');
    const config = await world.config({
      listen: `127.0.0.1:${port ?? (await freePort())}`,
      mirrors: { containerd: certs, registriesConf: dropIn, containerdConfig: join(dir, 'no-containerd', 'config.toml'), ...mirrors },
    });
    const agent = await world.start(config);
    expect(await agent.firstSync).to.deep.include({ groups: { edge: 'applied' }, failedImages: 0 });
    const origin = proxy!.host;
    expect(proxy!.log.some((l) => l.includes(img.layers[0]!.digest)), 'the agent pulled the image from the origin').to.equal(true);
    if (originDown) {
      await proxy!.close();
      expect(await fetch(`http://${origin}/v2/`).then(() => 'answers', () => 'down'), 'the origin is down').to.equal('down');
    }
    // The machine-wide registries.conf a device would have (the drop-in comes on top of it),
    // and a policy that accepts unsigned images.
    await writeFile(join(etc, 'registries.conf'), `unqualified-search-registries = []\n\n[[registry]]\nprefix = "${origin}"\nlocation = "${origin}"\n`);
    await writeFile(join(etc, 'policy.json'), JSON.stringify({ default: [{ type: 'insecureAcceptAnything' }] }));
    return { img, agent, config, origin, dir, etc, certs, dropIn };
  }

  /** The drop-in (or hosts.toml) as a wrong one would be: the mirror at a port where nothing listens. */
  async function breakMirror(path: string, agentUrl: string): Promise<void> {
    const port = new URL(agentUrl).port;
    const text = await readFile(path, 'utf8');
    expect(text, 'the file names the agent').to.include(`127.0.0.1:${port}`);
    await writeFile(path, text.replaceAll(`127.0.0.1:${port}`, `127.0.0.1:${await freePort()}`));
  }

  describe('the files', () => {
    it('when the agent has applied a state, then containerd\'s hosts.toml and the registries.conf.d drop-in send that registry\'s pulls by digest (only) to the local server', async () => {
      const e = await edge();
      const hosts = parseToml(await readFile(join(e.certs, e.origin, 'hosts.toml'), 'utf8')) as { server: string; host: Record<string, { capabilities: string[] }> };
      expect(hosts.server, 'the registry itself, over its own scheme (plain http here)').to.equal(`http://${e.origin}`);
      expect(hosts.host, 'digest-only: pull (by digest), not resolve (tags)').to.deep.equal({ [e.agent.url]: { capabilities: ['pull'] } });
      const conf = parseToml(await readFile(e.dropIn, 'utf8')) as { registry: Record<string, unknown>[] };
      expect(conf.registry).to.deep.equal([{
        prefix: e.origin,
        location: e.origin,
        insecure: true,
        mirror: [{ location: e.agent.url.replace('http://', ''), insecure: true, 'pull-from-mirror': 'digest-only' }],
      }]);
    });

    it('when the agent restarts with nothing changed, then neither file is rewritten; when the configuration changes, only the file it affects is replaced, whole', async () => {
      const port = await freePort();
      const e = await edge({ pullFromMirror: 'all' }, port);
      const hostsAll = parseToml(await readFile(join(e.certs, e.origin, 'hosts.toml'), 'utf8')) as { host: Record<string, { capabilities: string[] }> };
      expect(hostsAll.host[e.agent.url], 'all: containerd resolves tags through the agent too').to.deep.equal({ capabilities: ['pull', 'resolve'] });
      const hostsPath = join(e.certs, e.origin, 'hosts.toml');
      const before = { hosts: await stat(hostsPath), dropIn: await stat(e.dropIn) };
      await new Promise((r) => setTimeout(r, 20)); // a rewrite now would show in the mtime
      await e.agent.stop();

      const again = await world.start(e.config);
      await again.firstSync;
      const same = { hosts: await stat(hostsPath), dropIn: await stat(e.dropIn) };
      expect(same.hosts.mtimeMs, 'hosts.toml untouched').to.equal(before.hosts.mtimeMs);
      expect(same.dropIn.mtimeMs, 'drop-in untouched').to.equal(before.dropIn.mtimeMs);
      await again.stop();

      // tag-only grants containerd the same capabilities as all (it has no "tags only").
      const tagOnly = await world.start({ ...e.config, mirrors: { ...e.config.mirrors, pullFromMirror: 'tag-only' } });
      await tagOnly.firstSync;
      const after = { hosts: await stat(hostsPath), dropIn: await stat(e.dropIn) };
      expect(after.hosts.mtimeMs, 'hosts.toml did not change').to.equal(before.hosts.mtimeMs);
      expect(after.dropIn.ino, 'the drop-in was replaced by a rename, not written in place').to.not.equal(before.dropIn.ino);
      expect(await readFile(e.dropIn, 'utf8')).to.include('pull-from-mirror = "tag-only"');
      expect(await readdir(join(e.etc, 'registries.conf.d')), 'no temporary file left beside it').to.deep.equal(['satellite.conf']);
    });
  });

  describe('skopeo (containers/image: what CRI-O and podman use)', () => {
    requireBinaries(['skopeo', 'unshare']);

    it('when the origin is down, then skopeo pulls the image by digest through the drop-in, byte for byte, and a wrong mirror port makes the same pull fail', async () => {
      const e = await edge();
      const out = join(e.dir, 'pulled');
      const pull = (dest: string) => withEtcContainers(e.etc, e.dir, ['skopeo', 'copy', '--retry-times', '0', `docker://${e.origin}/library/x@${e.img.manifest.digest}`, `dir:${dest}`]);
      const ok = await pull(out);
      expect(ok.exitCode, ok.stderr).to.equal(0);
      expect((await readFile(join(out, 'manifest.json'))).equals(e.img.manifest.bytes), 'the signed manifest, byte for byte').to.equal(true);
      for (const b of [e.img.config, ...e.img.layers]) {
        expect((await readFile(join(out, b.digest.slice('sha256:'.length)))).equals(b.bytes), `${b.digest}, byte for byte`).to.equal(true);
      }

      await breakMirror(e.dropIn, e.agent.url);
      const broken = await pull(join(e.dir, 'pulled-again'));
      expect(broken.exitCode, 'nothing else can serve it').to.not.equal(0);
      expect(broken.stderr).to.include('Mirrors also failed');
    });

    it('when pull-from-mirror is left at digest-only, then a pull by tag is not sent to the mirror; with "all" it is', async () => {
      const e = await edge();
      const byTag = (etc: string) => withEtcContainers(etc, e.dir, ['skopeo', 'inspect', '--raw', '--retry-times', '0', `docker://${e.origin}/library/x:1`]);
      const digestOnly = await byTag(e.etc);
      expect(digestOnly.exitCode, 'by tag goes to the origin, which is down').to.not.equal(0);
      await e.agent.stop();
      const all = await world.start({ ...e.config, mirrors: { ...e.config.mirrors, pullFromMirror: 'all' } });
      await all.firstSync;
      const tagged = await byTag(e.etc);
      expect(tagged.exitCode, tagged.stderr).to.equal(0);
      expect(Buffer.from(tagged.stdout).equals(e.img.manifest.bytes)).to.equal(true);
    });
  });

  describe('falling back to the registry itself (plain http here)', () => {
    requireBinaries(['skopeo', 'unshare', 'containerd', 'ctr']);

    it('when the local server does not hold an image, then skopeo and containerd fetch it from the registry the state names, over that registry\'s own scheme', async () => {
      const e = await edge({}, undefined, false);
      const other = image();
      await pushImage(world.client(), 'library/y', other);
      const ref = `${e.origin}/library/y@${other.manifest.digest}`;
      const copied = await withEtcContainers(e.etc, e.dir, ['skopeo', 'copy', '--retry-times', '0', `docker://${ref}`, `dir:${join(e.dir, 'y')}`]);
      expect(copied.exitCode, copied.stderr).to.equal(0);
      expect((await readFile(join(e.dir, 'y', 'manifest.json'))).equals(other.manifest.bytes)).to.equal(true);

      const daemon = await startContainerd();
      try {
        const pulled = await execa('ctr', ['--address', daemon.address, 'images', 'pull', '--snapshotter', 'native', '--hosts-dir', e.certs, ref], { reject: false, timeout: 120_000 });
        expect(pulled.exitCode, pulled.stderr).to.equal(0);
      } finally {
        await daemon.stop();
      }
      expect(proxy!.log.filter((l) => l.includes(other.manifest.digest)), 'both asked the registry itself').to.have.length.above(1);
    });
  });

  describe('podman 4 (pull into a private vfs store)', () => {
    requireBinaries(['podman', 'unshare']);

    it('when the origin is down, then podman pulls the image by digest through the drop-in, and a wrong mirror port makes the same pull fail', async () => {
      const e = await edge();
      const podman = (store: string, args: string[]) => withEtcContainers(e.etc, e.dir, [
        'podman', '--root', join(store, 'root'), '--runroot', join(store, 'run'), '--storage-driver', 'vfs', '--tmpdir', join(store, 'tmp'),
        '--network-config-dir', join(store, 'networks'), '--cgroup-manager', 'cgroupfs', '--events-backend', 'file', ...args,
      ], true);
      const ref = `${e.origin}/library/x@${e.img.manifest.digest}`;
      const store = join(e.dir, 'podman');
      const pulled = await podman(store, ['pull', '--quiet', ref]);
      expect(pulled.exitCode, pulled.stderr).to.equal(0);
      const listed = await podman(store, ['images', '--digests', '--format', '{{.Repository}} {{.Digest}} {{.ID}}']);
      expect(listed.stdout.trim()).to.equal(`${e.origin}/library/x ${e.img.manifest.digest} ${e.img.config.digest.slice(7, 19)}`);

      await breakMirror(e.dropIn, e.agent.url);
      const broken = await podman(join(e.dir, 'podman-again'), ['pull', '--quiet', ref]);
      expect(broken.exitCode, 'nothing else can serve it').to.not.equal(0);
    });
  });

  describe('containerd 1.6 (ctr with --hosts-dir, a private daemon)', () => {
    const tools = requireBinaries(['containerd', 'ctr']);
    let daemon: Containerd | undefined;
    before(async () => {
      if (tools.available) daemon = await startContainerd();
    });
    after(async () => {
      await daemon?.stop();
    });

    it('when the origin is down, then ctr pulls and unpacks the image by digest through hosts.toml, byte for byte; by tag only with pullFromMirror all, as skopeo; a wrong mirror port makes the pull fail', async () => {
      const e = await edge();
      const ctr = (args: string[]) => execa('ctr', ['--address', daemon!.address, ...args], { reject: false, timeout: 120_000 });
      const ref = `${e.origin}/library/x@${e.img.manifest.digest}`;
      const pulled = await ctr(['images', 'pull', '--snapshotter', 'native', '--hosts-dir', e.certs, ref]);
      expect(pulled.exitCode, pulled.stderr).to.equal(0);
      const images = await ctr(['images', 'ls', '--quiet']);
      expect(images.stdout.split('\n')).to.include(ref);
      const check = await ctr(['images', 'check', `name==${ref}`]);
      expect(check.stdout, 'every blob present').to.match(/complete \(\d+\/\d+\)/);
      for (const b of [e.img.manifest, e.img.config, ...e.img.layers]) {
        const got = await execa('ctr', ['--address', daemon!.address, 'content', 'get', b.digest], { encoding: 'buffer' });
        expect(Buffer.from(got.stdout).equals(b.bytes), `${b.digest}, byte for byte`).to.equal(true);
      }

      // By tag: digest-only (the default) gives the local server no resolve capability, so
      // the tag goes to the origin, which is down, as it does for skopeo and podman.
      const byTag = () => ctr(['images', 'pull', '--snapshotter', 'native', '--hosts-dir', e.certs, `${e.origin}/library/x:1`]);
      const refused = await byTag();
      expect(refused.exitCode, 'digest-only: the tag is not resolved by the agent').to.not.equal(0);
      // With all, the agent resolves the tag, as the state lists it.
      await e.agent.stop();
      const all = await world.start({ ...e.config, mirrors: { ...e.config.mirrors, pullFromMirror: 'all' } });
      await all.firstSync;
      const tagged = await byTag();
      expect(tagged.exitCode, tagged.stderr).to.equal(0);
      expect((await ctr(['images', 'ls'])).stdout).to.match(new RegExp(`${e.origin}/library/x:1\\s+\\S+\\s+${e.img.manifest.digest}`));

      await ctr(['images', 'rm', '--sync', ref, `${e.origin}/library/x:1`]);
      const left = await ctr(['content', 'ls', '--quiet']);
      for (const d of left.stdout.split('\n').filter(Boolean)) await ctr(['content', 'rm', d]);
      await breakMirror(join(e.certs, e.origin, 'hosts.toml'), e.agent.url);
      const broken = await ctr(['images', 'pull', '--snapshotter', 'native', '--hosts-dir', e.certs, ref]);
      expect(broken.exitCode, 'nothing else can serve it').to.not.equal(0);
      expect(broken.stderr).to.include('connection refused');
    });
  });

  describe('containerd\'s config check', () => {
    it('when containerd\'s config.toml does not set the CRI registry config_path, then the agent names the exact line and section to add; once set, it reports nothing', async () => {
      const dir = await world.dir();
      const certs = join(dir, 'certs.d');
      const path = join(dir, 'config.toml');
      // What Debian's containerd package installs as /etc/containerd/config.toml.
      const debian = [
        'version = 2', '', '[plugins]', '  [plugins."io.containerd.grpc.v1.cri"]', '    [plugins."io.containerd.grpc.v1.cri".cni]',
        '      bin_dir = "/usr/lib/cni"', '      conf_dir = "/etc/cni/net.d"', '  [plugins."io.containerd.internal.v1.opt"]', '    path = "/var/lib/containerd/opt"', '',
      ].join('\n');
      await writeFile(path, debian);
      const hint = await checkContainerdConfig(path, certs);
      expect(hint).to.equal(
        `containerd (${path}) does not read ${certs}: set config_path = "${certs}" under [plugins."io.containerd.grpc.v1.cri".registry] (replacing any config_path there) and restart containerd`,
      );
      // Done as the hint says, the configuration passes the check.
      await writeFile(path, `${debian}\n  [plugins."io.containerd.grpc.v1.cri".registry]\n    config_path = "${certs}"\n`);
      expect(await checkContainerdConfig(path, certs)).to.equal(undefined);
      if (await which('containerd')) {
        const dump = await execa('containerd', ['--config', path, 'config', 'dump'], { reject: false });
        expect(dump.exitCode, `containerd reads the fixed file: ${dump.stderr}`).to.equal(0);
        expect(dump.stdout).to.include(`config_path = "${certs}"`);
      }
      await writeFile(path, `version = 3\n[plugins."io.containerd.cri.v1.images".registry]\nconfig_path = "/etc/containerd/certs.d"\n`);
      expect(await checkContainerdConfig(path, certs), 'containerd 2.x names another plugin').to.include(`set config_path = "${certs}" under [plugins."io.containerd.cri.v1.images".registry]`);
    });

    it('when the agent runs beside a containerd that does not read its hosts directory, then its status says how to fix that', async () => {
      const dir = await world.dir();
      const certs = join(dir, 'certs.d');
      const path = join(dir, 'config.toml');
      await writeFile(path, 'version = 2\n');
      const img = image();
      await pushImage(world.client(), 'library/x', img);
      await world.record('edge', 'library/x', img, '1');
      await world.publish('edge');
      const agent = await world.start(await world.config({ mirrors: { containerd: certs, containerdConfig: path } }));
      await agent.firstSync;
      expect(agent.agent.doc.runtime?.containerd).to.include(`set config_path = "${certs}"`);
    });
  });
});

interface Containerd {
  address: string;
  stop(): Promise<void>;
}

/** containerd with its own root, state, socket and opt directory, nothing of the machine's. */
async function startContainerd(): Promise<Containerd> {
  const dir = await mkdtemp(join(tmpdir(), 'satellite-containerd-'));
  const address = join(dir, 'containerd.sock');
  await mkdir(join(dir, 'opt'));
  await writeFile(join(dir, 'config.toml'), [
    'version = 2',
    `root = "${join(dir, 'root')}"`,
    `state = "${join(dir, 'state')}"`,
    // the CRI plugin is not needed: ctr reads the same hosts.toml through --hosts-dir
    'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
    '[grpc]',
    `  address = "${address}"`,
    '[plugins."io.containerd.internal.v1.opt"]',
    `  path = "${join(dir, 'opt')}"`,
    '',
  ].join('\n'));
  const child: ChildProcess = spawn('containerd', ['--config', join(dir, 'config.toml')], { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  child.stderr!.on('data', (d: Buffer) => (log = (log + d.toString()).slice(-4000)));
  const exited = new Promise((r) => child.once('exit', r));
  try {
    await until('containerd to answer', async () => {
      if (child.exitCode !== null) throw new Error(`containerd exited: ${log}`);
      const v = await execa('ctr', ['--address', address, 'version'], { reject: false });
      return v.exitCode === 0 ? true : undefined;
    }, 20_000);
  } catch (err) {
    child.kill('SIGKILL');
    await rm(dir, { recursive: true, force: true });
    throw new Error(`${(err as Error).message}\n${log}`);
  }
  return {
    address,
    async stop() {
      if (child.exitCode === null) {
        child.kill('SIGTERM');
        await exited;
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}
