import { expect } from 'chai';
import { readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { configFromRegistration } from '../../agent/cli/register.js';
import type { Registration } from '../../core/satellite-protocol.js';
import { pushImage, runBundle, useAgentWorld } from '../support/agent.js';
import { startAuthProxy } from '../support/auth-proxy.js';
import { startFaultProxy } from '../support/fault-proxy.js';
import { image } from '../support/oci.js';
import { freePort } from '../support/process.js';

// A device that reaches Harbor under another name than the worker does (a proxy, an
// internal vs. a public name): the state's signature names the worker's registry host, and
// the state names the registry the worker sees for images. Both through the real agent.

const STATE = 'satellite/group-state/edge/state';

describe('the edge agent reaching Harbor under another name than the worker', function () {
  this.timeout(60_000);
  const world = useAgentWorld();

  it('when the configuration comes from a registration, then the agent verifies the state with the identity the worker signs with, even through another registry name; without it every state is refused', async () => {
    const img = image();
    await pushImage(world.client(), 'library/app', img);
    await world.record('edge', 'library/app', img, '1');
    await world.publish('edge');
    const proxy = await startFaultProxy(world.registryUrl); // Harbor under another name (another host:port)
    try {
      const answer: Registration = {
        name: 'store-1', registry: proxy.url, username: 'robot$satellite-store-1', password: 'secret', publicKey: world.publicPem,
        // What the service answers (harbor/satellite-service.ts): STATE_REGISTRY's host and the state.
        groups: [{ name: 'edge', state: STATE, identity: `${world.registryHost}/${STATE}` }], statusUrl: null,
      };
      const dir = await world.dir();
      const write = async (r: Registration, name: string) => {
        const file = join(dir, name);
        await writeFile(file, configFromRegistration(r, { store: join(dir, `store-${name}`), listen: '127.0.0.1:0', platforms: ['linux/amd64'] }));
        return file;
      };
      const run = await runBundle(['--once', '--config', await write(answer, 'registered.yaml')]);
      expect(run.code, run.out).to.equal(0);
      expect(proxy.log.some((l) => l.includes(`/v2/${STATE}/manifests/latest`)), 'the state was read under the device\'s name').to.equal(true);

      const withoutIdentity = { ...answer, groups: [{ name: 'edge', state: STATE }] };
      const refused = await runBundle(['--once', '--config', await write(withoutIdentity, 'old.yaml')]);
      expect(refused.code, refused.out).to.equal(1);
      expect(refused.out).to.include('state refused');
    } finally {
      await proxy.close();
    }
  });

  it('when the state names a registry the device cannot reach, then registryAliases makes the agent pull the images from its own name for it, with its credential, and the mirror files name that', async () => {
    const img = image();
    await pushImage(world.client(), 'library/app', img);
    await world.record('edge', 'library/app', img, '1');
    const internal = `http://127.0.0.1:${await freePort()}`; // the worker's name for Harbor: nothing answers there for the device
    await world.publish('edge', internal);
    const harbor = await startAuthProxy(world.registryUrl, 'basic', 'robot$store-7', 's3cret'); // the device's name, credential required
    try {
      const dir = await world.dir();
      const base = { registry: harbor.url, username: 'robot$store-7', password: 's3cret', mirrors: { containerd: join(dir, 'certs.d'), containerdConfig: join(dir, 'none.toml') } };
      const group = { identity: `${world.registryHost}/${STATE}` };

      const without = await runBundle(['--once', '--config', await world.configFile(base, group)]);
      expect(without.code, 'the images cannot be pulled from the state\'s registry').to.equal(1);

      const file = await world.configFile({ ...base, mirrors: { ...base.mirrors, containerd: join(dir, 'certs-aliased.d') }, registryAliases: { [internal]: harbor.url } }, group);
      const run = await runBundle(['--once', '--config', file]);
      expect(run.code, run.out).to.equal(0);
      const status = JSON.parse((await runBundle(['status', '--json', '--config', file])).out) as { groups: { images: { present: number; failed: number } }[] };
      expect(status.groups[0]!.images).to.deep.include({ present: 1, failed: 0 });
      // Present: it came through the device's name (the state's registry does not answer), which
      // answers nothing without the credential.
      expect(await readdir(join(dir, 'certs.d')), 'without an alias: the state\'s name').to.deep.equal([new URL(internal).host]);
      expect(await readdir(join(dir, 'certs-aliased.d')), 'hosts.toml for the name the device reaches').to.deep.equal([new URL(harbor.url).host]);
    } finally {
      await harbor.close();
    }
  });

  it('when registryAliases maps a name to something that is not an http(s) URL, then the agent does not start and names the entry', async () => {
    const run = await runBundle(['--once', '--config', await world.configFile({ registryAliases: { 'http://harbor-core:80': 'harbor.example.com' } })]);
    expect(run.code, run.out).to.equal(2);
    expect(run.out).to.include('registryAliases["http://harbor-core:80"]: "harbor.example.com" is not an http(s) URL');
  });
});
