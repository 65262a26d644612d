import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, readFile, rename, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { Agent } from 'undici';
import { createTestDatabase, type TestDatabase } from '../support/db.js';
import { basic, PASSWORD, USERNAME, viaDispatcher } from '../support/endpoint.js';
import { image, imageBlobs, writeLayout } from '../support/oci.js';
import { freePort, spawnSatellite, until, type Spawned } from '../support/process.js';
import { dropPrefix, REDIS_URL, testPrefix } from '../support/redis.js';
import { satellite } from '../support/run.js';
import { makeCa, serialOf, servedSerial, trusting, type Issued, type TestCa } from '../support/tls.js';

const exec = promisify(execFile);

// `satellite adapter` with TLS_CERT_FILE / TLS_KEY_FILE (and TLS_CLIENT_CA_FILE): the
// endpoint, the admin API on its port and the operations port answer HTTPS only, with a
// certificate from a CA the test makes; a certificate replaced on disk is what the next
// connection gets, without a restart.

describe('HTTPS on the endpoint, the admin API and the operations port', function () {
  this.timeout(90_000);
  const ADMIN = { username: 'operator', password: 'admin-secret-for-tls' };
  let dir: string;
  let ca: TestCa;
  let server: Issued;
  let db: TestDatabase;
  let prefix: string;
  let running: Spawned | undefined;
  const dispatchers: Agent[] = [];
  const trust = (client?: Issued) => {
    const d = trusting(ca.cert, client);
    dispatchers.push(d);
    return d;
  };

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'satellite-tls-'));
    ca = await makeCa(join(dir, 'ca'));
    server = await ca.issue('endpoint');
    await mkdir(join(dir, 'live'));
  });
  after(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });
  beforeEach(async () => {
    db = await createTestDatabase();
    prefix = testPrefix();
    // The files the service reads, as a Secret volume holds them.
    await copyFile(server.certFile, join(dir, 'live', 'tls.crt'));
    await copyFile(server.keyFile, join(dir, 'live', 'tls.key'));
  });
  afterEach(async () => {
    if (running) {
      running.child.kill('SIGKILL');
      await running.exited;
      running = undefined;
    }
    await Promise.all(dispatchers.splice(0).map((d) => d.close()));
    await db.drop();
    await dropPrefix(prefix);
  });

  const env = (port: number, metricsPort: number, extra: Record<string, string> = {}) => ({
    DATABASE_URL: db.url, REDIS_URL, QUEUE_PREFIX: prefix, HOST: '127.0.0.1', PORT: String(port), METRICS_PORT: String(metricsPort),
    ENDPOINT_USERNAME: USERNAME, ENDPOINT_PASSWORD: PASSWORD, ADMIN_USERNAME: ADMIN.username, ADMIN_PASSWORD: ADMIN.password,
    HARBOR_URL: '', HARBOR_PASSWORD: '', TLS_CERT_FILE: join(dir, 'live', 'tls.crt'), TLS_KEY_FILE: join(dir, 'live', 'tls.key'), ...extra,
  });
  const start = async (extra: Record<string, string> = {}) => {
    const [port, metricsPort] = [await freePort(), await freePort()];
    running = await spawnSatellite(['adapter'], { ...env(port, metricsPort), ...extra }, 'operations listening');
    return { endpoint: `https://127.0.0.1:${port}`, ops: `https://127.0.0.1:${metricsPort}` };
  };

  it('when TLS_CERT_FILE and TLS_KEY_FILE are set, then the endpoint, the admin API and /readyz answer over HTTPS with the certificate, and plain HTTP gets no answer', async () => {
    const { endpoint, ops } = await start();
    const d = trust();
    const v2 = await fetch(`${endpoint}/v2/`, { headers: { Authorization: basic() }, ...viaDispatcher(d) });
    expect(v2.status).to.equal(200);
    const groups = await fetch(`${endpoint}/api/v1/groups`, { headers: { Authorization: basic(ADMIN.username, ADMIN.password) }, ...viaDispatcher(d) });
    expect(groups.status).to.equal(200);
    const ready = await fetch(`${ops}/readyz`, viaDispatcher(d));
    expect(ready.status).to.equal(200);
    expect(await servedSerial(endpoint, ca.cert)).to.equal(await serialOf(server.cert));
    // A client that does not trust the test's CA refuses the certificate.
    const untrusted = await fetch(`${endpoint}/v2/`).then(() => 'answered', (err: Error) => String((err.cause as Error | undefined)?.message ?? err.message));
    expect(untrusted).to.match(/self.signed|unable to verify|certificate/i);
    for (const url of [endpoint, ops]) {
      const plain = await fetch(url.replace('https:', 'http:') + '/readyz').then((r) => r.status, () => 'no answer');
      expect(plain, `${url} over plain HTTP`).to.equal('no answer');
    }
  });

  it('when skopeo pushes with the test CA in --dest-cert-dir, then the push is verified and recorded; without the CA skopeo refuses the certificate', async () => {
    const { endpoint } = await start();
    const img = image();
    const layout = join(dir, 'layout');
    await writeLayout(layout, 'v1', img.manifest, imageBlobs(img));
    const certDir = join(dir, 'skopeo-certs');
    await mkdir(certDir, { recursive: true });
    await copyFile(ca.certFile, join(certDir, 'ca.crt'));
    const host = endpoint.replace('https://', '');
    const push = (extra: string[]) => exec('skopeo', [
      '--insecure-policy', 'copy', '--preserve-digests', '--retry-times', '0', '--dest-creds', `${USERNAME}:${PASSWORD}`,
      ...extra, `oci:${layout}:v1`, `docker://${host}/edge-eu/library/tls:v1`,
    ]);
    const refused = await push(['--dest-tls-verify=true']).then(() => 'pushed', (err: { stderr: string }) => err.stderr);
    expect(refused).to.match(/x509|certificate/);
    await push(['--dest-tls-verify=true', '--dest-cert-dir', certDir]);
    const { stdout } = await satellite(['list', 'edge-eu', '--json'], { DATABASE_URL: db.url, IMAGE_REGISTRY: 'https://harbor.example.com' });
    const entries = (JSON.parse(stdout) as { artifacts: { repository: string; digest: string }[] }).artifacts.map((a) => [a.repository, a.digest]);
    expect(entries).to.deep.equal([['library/tls', img.manifest.digest]]);
  });

  it('when the certificate is replaced on disk, then the next connection gets the new one from the same process, and a broken pair keeps the old one served', async () => {
    const { endpoint, ops } = await start({ TLS_RELOAD_SECONDS: '1' });
    const pid = running!.child.pid;
    const first = await serialOf(server.cert);
    expect(await servedSerial(endpoint, ca.cert)).to.equal(first);

    // A key that is not the certificate's (a half-finished rotation): still the old pair.
    const renewed = await ca.issue('endpoint');
    await copyFile(renewed.certFile, join(dir, 'live', 'tls.crt.new'));
    await rename(join(dir, 'live', 'tls.crt.new'), join(dir, 'live', 'tls.crt'));
    await until('the reload to be refused', async () => running!.output().includes('TLS files not reloaded') || undefined, 10_000);
    expect(await servedSerial(endpoint, ca.cert)).to.equal(first);

    // The key follows: the new pair is served, on both ports.
    await copyFile(renewed.keyFile, join(dir, 'live', 'tls.key.new'));
    await rename(join(dir, 'live', 'tls.key.new'), join(dir, 'live', 'tls.key'));
    const next = await serialOf(renewed.cert);
    await until('the new certificate to be served', async () => (await servedSerial(endpoint, ca.cert)) === next || undefined, 10_000);
    await until('the new certificate on the operations port', async () => (await servedSerial(ops, ca.cert)) === next || undefined, 10_000);
    expect(running!.child.pid).to.equal(pid);
    expect(running!.child.exitCode).to.equal(null);
    const v2 = await fetch(`${endpoint}/v2/`, { headers: { Authorization: basic() }, ...viaDispatcher(trust()) });
    expect(v2.status).to.equal(200);
  });

  it('when TLS_CLIENT_CA_FILE is set, then the endpoint takes a client certificate from that CA only, and the operations port asks for none', async () => {
    const { endpoint, ops } = await start({ TLS_CLIENT_CA_FILE: ca.certFile });
    const good = await ca.issue('ingress', { client: true });
    const rogueCa = await makeCa(join(dir, 'rogue'), 'rogue-ca');
    const rogue = await rogueCa.issue('ingress', { client: true });
    const v2 = (client?: Issued) => fetch(`${endpoint}/v2/`, { headers: { Authorization: basic() }, ...viaDispatcher(trust(client)) })
      .then((r) => r.status, () => 'handshake refused');
    expect(await v2(good)).to.equal(200);
    expect(await v2(rogue), 'a certificate from another CA').to.equal('handshake refused');
    expect(await v2(), 'no certificate').to.equal('handshake refused');
    const ready = await fetch(`${ops}/readyz`, viaDispatcher(trust()));
    expect(ready.status).to.equal(200);
  });

  it('when the image\'s health check runs, then it passes against the operations port over HTTPS and over HTTP, and fails once the process is gone', async () => {
    // The command of the service image's HEALTHCHECK, run here as the image would run it.
    const containerfile = await readFile('deploy/images/service.Containerfile', 'utf8');
    const command = JSON.parse(/^\s*CMD (\[.*\])$/m.exec(containerfile.slice(containerfile.indexOf('HEALTHCHECK')))![1]!) as string[];
    const health = (extra: Record<string, string>) => exec(command[0] === 'node' ? process.execPath : command[0]!, command.slice(1), { env: { ...process.env, ...extra } })
      .then(() => 0, (err: { code: number }) => err.code);
    const tlsPort = await freePort();
    await start({ METRICS_PORT: String(tlsPort) });
    expect(await health({ METRICS_PORT: String(tlsPort), TLS_CERT_FILE: join(dir, 'live', 'tls.crt') }), 'over HTTPS').to.equal(0);
    running!.child.kill('SIGKILL');
    await running!.exited;
    running = undefined;
    expect(await health({ METRICS_PORT: String(tlsPort), TLS_CERT_FILE: join(dir, 'live', 'tls.crt') }), 'nothing answering').to.not.equal(0);
    const plainPort = await freePort();
    await start({ METRICS_PORT: String(plainPort), TLS_CERT_FILE: '', TLS_KEY_FILE: '' });
    expect(await health({ METRICS_PORT: String(plainPort), TLS_CERT_FILE: '' }), 'over HTTP').to.equal(0);
  });

  it('when a TLS file cannot be used, then the service does not start and the error names the variable and the file', async () => {
    const [port, metricsPort] = [await freePort(), await freePort()];
    const missing = join(dir, 'live', 'nothing.key');
    const run = (extra: Record<string, string>) => satellite(['adapter'], env(port, metricsPort, extra)).then(
      () => ({ code: 0, stderr: '' }), (err: { code: number; stderr: string }) => ({ code: err.code, stderr: err.stderr }));
    const unreadable = await run({ TLS_KEY_FILE: missing });
    expect(unreadable.code).to.equal(78);
    expect(unreadable.stderr).to.include(`TLS_KEY_FILE=${missing} cannot be read`);
    const mismatched = await run({ TLS_KEY_FILE: ca.keyFile });
    expect(mismatched.code).to.equal(78);
    expect(mismatched.stderr).to.include('cannot be used').and.include('TLS_KEY_FILE');
    const alone = await run({ TLS_KEY_FILE: '' });
    expect(alone.code).to.equal(78);
    expect(alone.stderr).to.include('TLS_CERT_FILE and TLS_KEY_FILE go together');
  });
});
