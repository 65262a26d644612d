import { expect } from 'chai';
import { generateKeyPairSync } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parse as parseToml } from 'smol-toml';
import { parse } from 'yaml';
import { loadAgentConfig } from '../../agent/config/config.js';
import { hostPlatform } from '../../agent/sync/platform.js';
import { BUNDLE, pushImage, pushIndex, runBundle, useAgentWorld } from '../support/agent.js';
import { startAuthProxy } from '../support/auth-proxy.js';
import { startFaultProxy } from '../support/fault-proxy.js';
import { image, index } from '../support/oci.js';
import { freePort } from '../support/process.js';

const STATE = 'satellite/group-state/edge/state';


describe('the edge agent: exit statuses of run --once, and what the configuration defaults to', function () {
  this.timeout(60_000);
  const world = useAgentWorld();

  const publishOne = async () => {
    const img = image();
    await pushImage(world.client(), 'library/app', img);
    await world.record('edge', 'library/app', img, '1');
    return world.publish('edge');
  };

  it('when the registry cannot be reached, then run --once exits 3 and the status says the registry is unreachable', async () => {
    const nobody = `http://127.0.0.1:${await freePort()}`; // nothing listens there
    const file = await world.configFile({ registry: nobody, logLevel: 'info' }, { identity: `${world.registryHost}/${STATE}` });
    const run = await runBundle(['--once', '--config', file]);
    expect(run.code, run.out).to.equal(3);
    const status = JSON.parse((await runBundle(['status', '--json', '--config', file])).out);
    expect(status.groups[0]).to.include({ name: 'edge', version: null });
    expect(status.groups[0].error).to.match(/registry unreachable/);
    expect(status.groups[0].staleSince).to.match(/^\d{4}-/);
  });

  it('when the state is refused (signed by another key), then run --once exits 1 and nothing is applied', async () => {
    await publishOne();
    const otherKey = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).publicKey.export({ type: 'spki', format: 'pem' }).toString();
    const file = await world.configFile({ logLevel: 'info' }, { publicKey: otherKey });
    const run = await runBundle(['--once', '--config', file]);
    expect(run.code, run.out).to.equal(1);
    expect(run.out).to.include('state refused; nothing applied');
    const status = JSON.parse((await runBundle(['status', '--json', '--config', file])).out);
    expect(status.groups[0]).to.include({ name: 'edge', version: null, digest: null });
    expect(status.groups[0].error).to.match(/state refused \(unsigned\)/);
    expect(status.groups[0].images).to.deep.equal({ present: 0, pending: 0, failed: 0, skipped: 0 });
  });

  it('when every group applies with all its images, then run --once exits 0', async () => {
    await publishOne();
    const run = await runBundle(['--once', '--config', await world.configFile()]);
    expect(run.code, run.out).to.equal(0);
  });

  it('when the password is given as passwordFile (ending in a newline, as echo writes it), then the agent pulls with the password in the file', async () => {
    const published = await publishOne();
    const proxy = await startAuthProxy(world.registryUrl, 'basic', 'robot$store-7', 's3cret-from-file');
    try {
      const dir = await world.dir();
      await writeFile(join(dir, 'password'), 's3cret-from-file\n', { mode: 0o600 });
      const file = await world.configFile({ registry: proxy.url, username: 'robot$store-7', passwordFile: join(dir, 'password') }, { identity: `${world.registryHost}/${STATE}` });
      const agent = await world.start(loadAgentConfig(file, {}));
      expect((await agent.firstSync).groups.edge).to.equal('applied');
      expect(agent.agent.doc.groups.edge!.applied).to.include({ digest: published.digest });
    } finally {
      await proxy.close();
    }
  });

  it('when no platforms are configured, then only the children of the host\'s own platform are pulled from an index', async () => {
    const host = hostPlatform();
    const other = host.architecture === 'arm64' ? { os: 'linux', architecture: 'amd64' } : { os: 'linux', architecture: 'arm64' };
    const proxy = await startFaultProxy(world.registryUrl);
    try {
      const nginx = index([{ os: host.os, architecture: host.architecture }, other]);
      await pushIndex(world.client(), 'library/nginx', nginx);
      for (const c of nginx.children) await world.record('edge', 'library/nginx', c, null);
      await world.record('edge', 'library/nginx', { manifest: nginx.manifest, config: nginx.manifest, layers: [] }, '1.27');
      await world.publish('edge', proxy.url);
      const file = await world.configFile({ platforms: undefined });
      expect(parse(await readFile(file, 'utf8')), 'the file names no platform').to.not.have.property('platforms');
      const agent = await world.start(loadAgentConfig(file, {}));
      expect(await agent.firstSync).to.deep.include({ failedImages: 0 });
      const [mine, theirs] = nginx.children as [typeof nginx.children[0], typeof nginx.children[0]];
      expect((await fetch(`${agent.url}/v2/library/nginx/manifests/${mine.manifest.digest}`)).status, 'the host\'s child is served').to.equal(200);
      for (const b of [mine.config, ...mine.layers]) expect(proxy.log, 'the host\'s child was pulled').to.include(`GET /v2/library/nginx/blobs/${b.digest}`);
      for (const d of [theirs.manifest, theirs.config, ...theirs.layers].map((b) => b.digest)) {
        expect(proxy.log.filter((l) => l.includes(d)), `nothing of ${other.os}/${other.architecture} was fetched`).to.deep.equal([]);
      }
    } finally {
      await proxy.close();
    }
  });

  it('when listen is not configured, then the agent serves on 127.0.0.1:8585 (loopback only)', async () => {
    const file = await world.configFile({ listen: undefined });
    expect(parse(await readFile(file, 'utf8')), 'the file names no listen address').to.not.have.property('listen');
    expect(loadAgentConfig(file, {}).listen).to.deep.equal({ host: '127.0.0.1', port: 8585 });
    expect(loadAgentConfig(file, { SATELLITE_AGENT_LISTEN: '127.0.0.1:9595' }).listen, 'the environment overrides it').to.deep.equal({ host: '127.0.0.1', port: 9595 });
  });

  it('when run --once applies a state, then it writes containerd\'s hosts.toml and the registries.conf.d drop-in, naming the address the agent will listen on', async () => {
    await publishOne();
    const dir = await world.dir();
    const certs = join(dir, 'certs.d');
    const dropIn = join(dir, 'registries.conf.d', 'satellite.conf');
    const file = await world.configFile({ listen: '127.0.0.1:9585', mirrors: { containerd: certs, registriesConf: dropIn, containerdConfig: join(dir, 'none.toml') } });
    const run = await runBundle(['--once', '--config', file]);
    expect(run.code, run.out).to.equal(0);
    const hosts = parseToml(await readFile(join(certs, world.registryHost, 'hosts.toml'), 'utf8')) as { server: string; host: Record<string, unknown> };
    expect(hosts.server).to.equal(world.registryUrl);
    expect(Object.keys(hosts.host), 'the mirror is the configured listen address').to.deep.equal(['http://127.0.0.1:9585']);
    const conf = parseToml(await readFile(dropIn, 'utf8')) as { registry: { prefix: string; mirror: { location: string }[] }[] };
    expect(conf.registry.map((r) => [r.prefix, r.mirror[0]!.location])).to.deep.equal([[world.registryHost, '127.0.0.1:9585']]);
  });

  /**
   * Runs `status` with no --config, in a private mount namespace whose /etc is an overlay of
   * the machine's (so the machine's /etc is never written), holding `file` (or nothing) as
   * /etc/satellite/agent.yaml.
   */
  async function statusWithDefaultConfig(file: string | undefined) {
    const dir = await world.dir();
    const setup = [`mkdir -p '${dir}/upper' '${dir}/work'`, `mount -t overlay overlay -o lowerdir=/etc,upperdir='${dir}/upper',workdir='${dir}/work' /etc`, 'rm -rf /etc/satellite'];
    if (file) setup.push('mkdir /etc/satellite', `cp '${file}' /etc/satellite/agent.yaml`);
    return runBundle([], { shell: `${setup.join(' && ')} && unset SATELLITE_AGENT_CONFIG && exec ${process.execPath} ${BUNDLE} status --json` });
  }

  it('when status is run without --config, then it reads /etc/satellite/agent.yaml', async () => {
    await publishOne();
    const file = await world.configFile();
    expect((await runBundle(['--once', '--config', file])).code).to.equal(0);
    const run = await statusWithDefaultConfig(file);
    expect(run.code, run.out).to.equal(0);
    expect(JSON.parse(run.out).groups[0]).to.include({ name: 'edge', version: 1 });
  });

  it('when status is run without --config and /etc/satellite/agent.yaml does not exist, then it exits 2 naming the file it looked for', async () => {
    const run = await statusWithDefaultConfig(undefined);
    expect(run.code, run.out).to.equal(2);
    expect(run.out).to.include('no configuration file: /etc/satellite/agent.yaml does not exist and neither --config nor SATELLITE_AGENT_CONFIG names one');
  });
});
