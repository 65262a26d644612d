import { expect } from 'chai';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse } from 'yaml';
import { startAdminHarness, type AdminHarness } from '../support/admin.js';
import { runBundle } from '../support/agent.js';
import { makeCa, trusting, type TestCa } from '../support/tls.js';
import { useTestKeys } from '../support/worker.js';

// `satellite agent register` against the service's admin API over HTTPS with a certificate
// from a private CA: --ca-file is trusted for the registration and written into the
// configuration as caFile, so everything the agent does after trusts it too.

describe('satellite agent register over HTTPS with a private CA (--ca-file)', function () {
  this.timeout(60_000);
  const keys = useTestKeys();
  let dir: string;
  let ca: TestCa;
  let h: AdminHarness;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'satellite-register-tls-'));
    ca = await makeCa(join(dir, 'ca'));
    const server = await ca.issue('satellite');
    h = await startAdminHarness({ COSIGN_PUBLIC_KEY: keys.pubPath }, {
      tls: { files: { certFile: server.certFile, keyFile: server.keyFile, reloadMs: 60_000 }, dispatcher: trusting(ca.cert) },
    });
    expect((await h.api('/api/v1/groups', { method: 'POST', body: { name: 'edge-eu', filters: [{ type: 'name', value: 'library/**' }] } })).status).to.equal(201);
  });
  afterEach(async () => {
    await h?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('when --ca-file names the CA, then the registration succeeds and the configuration carries caFile; without it the certificate is refused and the token stays unused', async () => {
    const issued = await h.api('/api/v1/satellites', { method: 'POST', body: { name: 'store-042', groups: ['edge-eu'] } });
    expect(issued.status, JSON.stringify(issued.body)).to.equal(201);
    const out = join(dir, 'agent.yaml');
    const args = ['register', '--url', h.url, '--token', issued.body.token, '--out', out, '--store', join(dir, 'store')];

    const refused = await runBundle(args);
    expect(refused.code, refused.out).to.not.equal(0);
    expect(refused.out).to.match(/cannot reach .*certificate/i);

    const registered = await runBundle([...args, '--ca-file', ca.certFile]);
    expect(registered.code, registered.out).to.equal(0);
    expect(registered.out).to.include('registered as store-042');
    expect(parse(await readFile(out, 'utf8'))).to.deep.include({ caFile: ca.certFile });
    // The file it wrote is one the agent takes (caFile read and checked at start).
    const status = await runBundle(['status', '--json', '--config', out]);
    expect(status.code, `not a configuration error: ${status.out}`).to.not.equal(2);
    expect(JSON.parse(status.out).groups.map((g: { name: string }) => g.name)).to.deep.equal(['edge-eu']);

    const notPem = await runBundle([...args, '--ca-file', ca.keyFile]);
    expect(notPem.code).to.equal(2);
    expect(notPem.out).to.include(`--ca-file ${ca.keyFile} is not a readable PEM certificate bundle`);
  });
});
