import { expect } from 'chai';
import { createServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { loadAgentConfig, AgentConfigError } from '../../agent/config/config.js';
import { pushImage, runBundle, useAgentWorld } from '../support/agent.js';
import { image } from '../support/oci.js';
import { until } from '../support/process.js';
import { makeCa, tlsFront, type TestCa } from '../support/tls.js';

// Harbor behind a certificate from a private CA: the agent trusts it only when its
// configuration names the CA (caFile), for every request to the registry (states, images,
// tokens) and for its status reports. The registry is a real docker-registry behind a TLS
// front with the test CA's certificate.

const STATE = 'satellite/group-state/edge/state';

describe('the edge agent and a registry whose certificate comes from a private CA (caFile)', function () {
  this.timeout(60_000);
  const world = useAgentWorld();
  let ca: TestCa;
  let front: Awaited<ReturnType<typeof tlsFront>>;

  beforeEach(async () => {
    ca = await makeCa(join(await world.dir(), 'ca'));
    front = await tlsFront(world.registryUrl, await ca.issue('harbor'));
  });
  afterEach(async () => front?.close());

  const publish = async () => {
    const img = image();
    await pushImage(world.client(), 'library/app', img);
    await world.record('edge', 'library/app', img, '1.0');
    // The state names the HTTPS address as where images are pulled from.
    await world.publish('edge', front.url);
    return img;
  };
  // Signatures name the registry the worker published to.
  const config = (extra: Record<string, unknown>) =>
    world.config({ registry: front.url, ...extra }, { identity: `${world.registryHost}/${STATE}` });

  it('when caFile names the CA, then the agent reads the state and pulls the image over HTTPS, serves it, and sends its status report over HTTPS', async () => {
    const img = await publish();
    const reports: unknown[] = [];
    const service = await ca.issue('satellite-service');
    const receiver = createServer({ cert: service.cert, key: service.key }, (req, res) => {
      let body = '';
      req.on('data', (d: Buffer) => (body += d.toString()));
      req.on('end', () => {
        reports.push(JSON.parse(body));
        res.writeHead(204).end();
      });
    });
    await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
    try {
      const report = { url: `https://127.0.0.1:${(receiver.address() as AddressInfo).port}/api/v1/satellites/store-042/status` };
      const agent = await world.start(await config({ caFile: ca.certFile, report }));
      expect(await agent.firstSync).to.deep.include({ groups: { edge: 'applied' }, failedImages: 0 });
      const res = await fetch(`${agent.url}/v2/library/app/manifests/1.0`);
      expect(res.status).to.equal(200);
      expect(Buffer.from(await res.arrayBuffer()).equals(img.manifest.bytes)).to.equal(true);
      await until('the status report', async () => (reports.length ? true : undefined), 10_000);
      expect(reports[0]).to.deep.include({ agentVersion: '0.1.0' });
    } finally {
      receiver.closeAllConnections();
      receiver.close();
    }
  });

  it('when caFile is not set, then the agent refuses the certificate: nothing is applied or served', async () => {
    await publish();
    const agent = await world.start(await config({}));
    const summary = await agent.firstSync;
    expect(summary.groups.edge, 'the registry cannot be reached over a certificate it does not trust').to.equal('unreachable');
    expect((await fetch(`${agent.url}/v2/library/app/manifests/1.0`)).status).to.equal(404);
  });

  it('when the agent bundle as it ships runs --once, then with caFile it exits 0, and without it 3 (unreachable), the certificate named as the reason', async () => {
    await publish();
    const group = { identity: `${world.registryHost}/${STATE}` };
    const trusted = await runBundle(['--once', '--config', await world.configFile({ registry: front.url, caFile: ca.certFile, logLevel: 'info' }, group)]);
    expect(trusted.code, trusted.out).to.equal(0);
    const untrusted = await runBundle(['--once', '--config', await world.configFile({ registry: front.url, logLevel: 'info' }, group)]);
    expect(untrusted.code, untrusted.out).to.equal(3);
    expect(untrusted.out).to.match(/certificate|UNABLE_TO_VERIFY/i);
  });

  it('when caFile cannot be read or holds no certificate, then the configuration is refused naming caFile', async () => {
    const path = await world.configFile({ caFile: join(await world.dir(), 'missing.crt') });
    expect(() => loadAgentConfig(path, {})).to.throw(AgentConfigError, /caFile: .*missing\.crt is not a readable PEM certificate bundle/);
    const notPem = await world.configFile({ caFile: ca.keyFile });
    expect(() => loadAgentConfig(notPem, {})).to.throw(AgentConfigError, /caFile: /);
  });
});
