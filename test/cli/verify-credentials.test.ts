import { expect } from 'chai';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createLogger } from '../../core/logger.js';
import { RegistryClient } from '../../core/registry/registry-client.js';
import { loadPrivateKey } from '../../core/cosign/keys.js';
import { KeySigner } from '../../worker/signer.js';
import { makeBuilder } from '../../worker/state-worker.js';
import { startAuthProxy, type AuthProxy } from '../support/auth-proxy.js';
import { createTestDatabase, type TestDatabase } from '../support/db.js';
import { image } from '../support/oci.js';
import { satellite } from '../support/run.js';
import { KEY_PASSWORD, record, useRegistryAndKeys, workerConfig } from '../support/worker.js';

const ROBOT = { username: 'robot$satellite', password: 'state-registry-secret-77' };

describe('satellite verify and the state registry credential', function () {
  this.timeout(60_000);
  const shared = useRegistryAndKeys();
  let db: TestDatabase;
  let proxy: AuthProxy;
  let foreign: Server;
  const seen: string[] = [];

  before(async () => {
    db = await createTestDatabase();
    proxy = await startAuthProxy(shared.registry.url, 'basic', ROBOT.username, ROBOT.password);
    const config = workerConfig({ STATE_REGISTRY: proxy.url, COSIGN_KEY: shared.keys.keyPath });
    const client = new RegistryClient(proxy.url, ROBOT);
    const builder = makeBuilder(config, db.pool, client, new KeySigner(client, loadPrivateKey(shared.keys.privatePem, KEY_PASSWORD)), createLogger('silent'));
    await record(db.pool, 'edge-v', 'library/alpine', image(), '1');
    await builder.build('edge-v');
    // Another host, answering every request with a Basic challenge, as a registry would.
    foreign = createServer((req, res) => {
      seen.push(`${req.method} ${req.url} ${req.headers.authorization ?? '-'}`);
      res.writeHead(401, { 'WWW-Authenticate': 'Basic realm="elsewhere"', 'Content-Type': 'application/json' }).end('{"errors":[{"code":"UNAUTHORIZED","message":"who are you"}]}');
    });
    await new Promise<void>((r) => foreign.listen(0, '127.0.0.1', r));
  });
  after(async () => {
    foreign?.closeAllConnections();
    await new Promise((r) => foreign?.close(r));
    await proxy?.close();
    await db?.drop();
  });

  const env = () => ({ STATE_REGISTRY: proxy.url, STATE_REGISTRY_USERNAME: ROBOT.username, STATE_REGISTRY_PASSWORD: ROBOT.password });

  it('when the reference names the state registry, then its credential is used and the state verifies', async () => {
    const ok = await satellite(['verify', `${proxy.host}/satellite/group-state/edge-v/state:latest`, '--key', shared.keys.pubPath, '--plain-http'], env());
    expect(ok.stdout).to.include('docker-manifest-digest');
  });

  it('when the reference names another host, then that host never receives the credential', async () => {
    const port = (foreign.address() as AddressInfo).port;
    await satellite(['verify', `127.0.0.1:${port}/satellite/group-state/edge-v/state:latest`, '--key', shared.keys.pubPath, '--plain-http'], env())
      .then(() => expect.fail('verified against a foreign host'), (e: { code: number }) => expect(e.code).to.not.equal(0));
    expect(seen.length, 'the foreign host was asked').to.be.greaterThan(0);
    for (const line of seen) expect(line, line).to.match(/ -$/);
    expect(seen.join('\n')).to.not.include(Buffer.from(`${ROBOT.username}:${ROBOT.password}`).toString('base64'));
  });
});
