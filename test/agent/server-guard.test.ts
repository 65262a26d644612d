import { expect } from 'chai';
import { writeFile } from 'node:fs/promises';
import { get as httpGet } from 'node:http';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { AgentConfigError, loadAgentConfig } from '../../agent/config/config.js';
import { pushImage, useAgentWorld } from '../support/agent.js';
import { image, randomLayer } from '../support/oci.js';
import { until } from '../support/process.js';

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

  it('when the server\'s bounds are configured so that one client could take every stream, then the configuration is refused naming them', async () => {
    const file = await world.configFile({ server: { maxStreams: 8, maxStreamsPerClient: 8 } });
    expect(() => loadAgentConfig(file, {})).to.throw(AgentConfigError, /server\.maxStreamsPerClient \(8\) must be below server\.maxStreams \(8\)/);
    const defaults = loadAgentConfig(await world.configFile(), {}).server;
    expect(defaults).to.deep.equal({ maxStreams: 128, maxStreamsPerClient: 32, idleTimeoutMs: 60_000, pullThrough: false });
  });
});

/** What a raw HTTP/1.1 GET got: its status, Retry-After and (for a refusal) its body. */
interface RawAnswer {
  status: number;
  retryAfter: string | undefined;
  body: string;
  socket: Socket;
}

/**
 * A GET that reads the answer's head and, for a 200, then stops reading: a client that asks
 * for a blob and never takes it. A refusal is read whole.
 */
function stalledGet(port: number, path: string, localAddress = '127.0.0.1'): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port, localAddress });
    let head = Buffer.alloc(0);
    socket.once('connect', () => socket.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n\r\n`));
    socket.on('error', reject);
    const onData = (chunk: Buffer) => {
      head = Buffer.concat([head, chunk]);
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) return;
      const lines = head.subarray(0, end).toString('latin1').split('\r\n');
      const status = Number(lines[0]!.split(' ')[1]);
      const header = (name: string) => lines.find((l) => l.toLowerCase().startsWith(`${name}:`))?.slice(name.length + 1).trim();
      if (status === 200) {
        socket.off('data', onData);
        socket.pause();
        resolve({ status, retryAfter: undefined, body: '', socket });
        return;
      }
      const length = Number(header('content-length') ?? 0);
      if (head.length - end - 4 < length) return;
      socket.off('data', onData);
      resolve({ status, retryAfter: header('retry-after'), body: head.subarray(end + 4, end + 4 + length).toString('utf8'), socket });
    };
    socket.on('data', onData);
  });
}

/** A whole GET from another local address: status and body. */
function getFrom(localAddress: string, url: string): Promise<{ status: number; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = httpGet(url, { localAddress, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
  });
}

describe('the edge agent\'s server under a flood of downloads', function () {
  this.timeout(180_000);
  const world = useAgentWorld();
  const sockets: Socket[] = [];
  afterEach(() => {
    for (const s of sockets.splice(0)) s.destroy();
  });

  const publishBig = async () => {
    // Far more than the socket buffers of a client that does not read can take.
    const img = image({ layers: [randomLayer(16 * 1024 * 1024)] });
    await pushImage(world.client(), 'library/big', img);
    await world.record('edge', 'library/big', img, '1');
    await world.publish('edge');
    return img;
  };

  it('when one client opens 2,000 blob downloads at once and reads none, then past its share it gets 429 with Retry-After, and another client still pulls a manifest and a blob', async () => {
    const img = await publishBig();
    const agent = await world.start(await world.config());
    expect((await agent.firstSync).failedImages).to.equal(0);
    const port = Number(new URL(agent.url).port);
    const blobPath = `/v2/library/big/blobs/${img.layers[0]!.digest}`;
    const flood: RawAnswer[] = [];
    for (let batch = 0; batch < 10; batch++) {
      const answers = await Promise.all(Array.from({ length: 200 }, () => stalledGet(port, blobPath)));
      sockets.push(...answers.map((a) => a.socket));
      flood.push(...answers);
    }
    const served = flood.filter((a) => a.status === 200).length;
    const refused = flood.filter((a) => a.status === 429);
    const cap = agent.agent.config.server.maxStreamsPerClient;
    expect(served, 'downloads the flooding client got').to.equal(cap);
    expect(refused.length, 'the rest were refused').to.equal(2000 - cap);
    for (const r of refused.slice(0, 50)) {
      expect(Number(r.retryAfter), 'Retry-After').to.be.at.least(1);
      expect(JSON.parse(r.body).errors[0].code).to.equal('TOOMANYREQUESTS');
    }

    // The runtime, from another address, while the flood holds its streams.
    const manifest = await getFrom('127.0.0.2', `${agent.url}/v2/library/big/manifests/${img.manifest.digest}`);
    expect(manifest.status, 'the manifest').to.equal(200);
    expect(manifest.body.equals(img.manifest.bytes)).to.equal(true);
    const layer = await getFrom('127.0.0.2', `${agent.url}${blobPath}`);
    expect(layer.status, 'the blob').to.equal(200);
    expect(layer.body.equals(img.layers[0]!.bytes), 'byte for byte').to.equal(true);
    expect(await (await fetch(`${agent.url}/metrics`)).text()).to.include(`satellite_agent_streams_refused_total{reason="client"} ${2000 - cap}`);
  });

  it('when several clients together pass the total, then the one past it gets 503 with Retry-After, and a client that stops reading is cut after the idle timeout, giving its stream back', async () => {
    const img = await publishBig();
    const agent = await world.start(await world.config({ server: { maxStreams: 4, maxStreamsPerClient: 2, idleTimeout: '2s' } }));
    expect((await agent.firstSync).failedImages).to.equal(0);
    const port = Number(new URL(agent.url).port);
    const blobPath = `/v2/library/big/blobs/${img.layers[0]!.digest}`;
    const take = async (from: string) => {
      const a = await stalledGet(port, blobPath, from);
      sockets.push(a.socket);
      return a;
    };
    for (const from of ['127.0.0.2', '127.0.0.2', '127.0.0.3', '127.0.0.3']) expect((await take(from)).status, from).to.equal(200);
    const third = await take('127.0.0.2');
    expect(third.status, 'past one client\'s share').to.equal(429);
    const other = await take('127.0.0.4');
    expect(other.status, 'past the total').to.equal(503);
    expect(other.retryAfter).to.equal('1');
    expect(JSON.parse(other.body).errors[0].code).to.equal('UNAVAILABLE');
    // The four stalled readers are cut by the server once nothing moved for 2 s.
    const later = await until('a stream given back by a stalled reader', async () => {
      const a = await take('127.0.0.4');
      return a.status === 200 ? a : undefined;
    });
    expect(later.status).to.equal(200);
  });
});
