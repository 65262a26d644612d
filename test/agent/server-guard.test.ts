import { expect } from 'chai';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { AgentConfigError, loadAgentConfig } from '../../agent/config.js';
import { pushImage, useAgentWorld } from '../support/agent.js';
import { image } from '../support/oci.js';

// The agent's local server faces the device's network: what it tells about itself
// (/status, /metrics) may need a credential, and what the runtime pulls never does.

const basic = (user: string, password: string) => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;

describe('the edge agent\'s server: the operations credential', function () {
  this.timeout(60_000);
  const world = useAgentWorld();
  const TOKEN = 'agent-ops-token-0123456789';
  const SCRAPER = { username: 'prometheus', password: 'agent-scrape-secret-01' };

  const publishOne = async () => {
    const img = image();
    await pushImage(world.client(), 'library/app', img);
    await world.record('edge', 'library/app', img, '1');
    await world.publish('edge');
    return img;
  };

  it('when an operations token and Basic pair are configured, then /status and /metrics want one of them (401 with a challenge otherwise) and /healthz and the images stay open to the runtime', async () => {
    const img = await publishOne();
    const dir = await world.dir();
    await writeFile(join(dir, 'token'), `${TOKEN}\n`, { mode: 0o600 });
    await writeFile(join(dir, 'password'), SCRAPER.password, { mode: 0o600 });
    const agent = await world.start(await world.config({ operations: { tokenFile: join(dir, 'token'), username: SCRAPER.username, passwordFile: join(dir, 'password') } }));
    expect((await agent.firstSync).failedImages).to.equal(0);
    const get = (path: string, authorization?: string) => fetch(`${agent.url}${path}`, { headers: authorization ? { Authorization: authorization } : {} });
    for (const path of ['/status', '/metrics']) {
      const none = await get(path);
      expect(none.status, `${path} without a credential`).to.equal(401);
      expect(none.headers.get('www-authenticate')).to.include('Bearer realm=').and.include('Basic realm=');
      const body = await none.text();
      expect(body, 'nothing of the status leaks').to.not.include('library/app');
      expect(body).to.not.include('satellite_agent_');
      for (const wrong of [`Bearer ${TOKEN.slice(0, -1)}X`, basic(SCRAPER.username, `${SCRAPER.password.slice(0, -1)}X`), `Bearer ${TOKEN}0`, `Bearer ${TOKEN.slice(1)}`, basic(SCRAPER.username, `${SCRAPER.password}x`), basic('root', SCRAPER.password), `Basic ${TOKEN}`, 'Bearer']) {
        expect((await get(path, wrong)).status, `${path} with ${wrong}`).to.equal(401);
      }
      expect((await get(path, `Bearer ${TOKEN}`)).status, `${path} with the token`).to.equal(200);
      expect((await get(path, basic(SCRAPER.username, SCRAPER.password))).status, `${path} with the Basic pair`).to.equal(200);
    }
    expect(await (await get('/status', `Bearer ${TOKEN}`)).text()).to.include('library/app');
    expect((await get('/healthz')).status, 'the probe is open').to.equal(200);
    const pulled = await get(`/v2/library/app/manifests/1`);
    expect(pulled.status, 'the runtime pulls without a credential').to.equal(200);
    expect(Buffer.from(await pulled.arrayBuffer()).equals(img.manifest.bytes)).to.equal(true);
    expect((await get(`/v2/library/app/blobs/${img.layers[0]!.digest}`)).status).to.equal(200);
  });

  it('when no operations credential is configured, then /status and /metrics answer anyone who reaches the server, as before', async () => {
    await publishOne();
    const agent = await world.start(await world.config());
    await agent.firstSync;
    expect((await fetch(`${agent.url}/status`)).status).to.equal(200);
    expect((await fetch(`${agent.url}/metrics`)).status).to.equal(200);
  });

  it('when the operations credential is misconfigured, then the configuration is refused naming the field', async () => {
    const dir = await world.dir();
    await writeFile(join(dir, 'short'), 'short\n');
    const problems = async (operations: Record<string, string>) => {
      try {
        loadAgentConfig(await world.configFile({ operations }), {});
      } catch (err) {
        expect(err).to.be.instanceOf(AgentConfigError);
        return (err as AgentConfigError).problems.join('\n');
      }
      return expect.fail('accepted');
    };
    expect(await problems({ tokenFile: join(dir, 'missing') })).to.match(/operations\.tokenFile: cannot read/);
    expect(await problems({ tokenFile: join(dir, 'short') })).to.match(/operations\.tokenFile: the secret in .* must be at least 12 characters/);
    expect(await problems({ username: 'prometheus' })).to.include('operations.username and operations.passwordFile go together');
    expect(await problems({ token: 'inline' } as Record<string, string>)).to.include('token');
  });
});
