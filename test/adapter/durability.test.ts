import { expect } from 'chai';
import { createTestDatabase, type TestDatabase } from '../support/db.js';
import { basic } from '../support/endpoint.js';
import { image, randomLayer } from '../support/oci.js';
import { freePort, spawnSatellite } from '../support/process.js';

const PASSWORD = 'durability-secret-42';
const OCI = 'application/vnd.oci.image.manifest.v1+json';

describe('durability of acknowledged manifests', function () {
  this.timeout(120_000);
  let db: TestDatabase;

  beforeEach(async () => {
    db = await createTestDatabase();
  });
  afterEach(async () => {
    await db?.drop();
  });

  const env = (port: number) => ({ DATABASE_URL: db.url, PORT: String(port), HOST: '127.0.0.1', ENDPOINT_PASSWORD: PASSWORD, METRICS_PORT: '0' });
  const auth = { Authorization: basic('harbor', PASSWORD) };

  it('when the endpoint is killed with SIGKILL during concurrent PUTs, then after restart every manifest that got a 201 is recorded', async () => {
    const port = await freePort();
    const proc = await spawnSatellite(['adapter'], env(port), 'endpoint listening');
    const acknowledged: { name: string; digest: string; tag: string }[] = [];
    let stop = false;
    let sent = 0;
    const sharedLayers = [randomLayer(), randomLayer()];
    const worker = async (w: number) => {
      for (let i = 0; !stop; i++) {
        const img = image({ layers: sharedLayers });
        const name = `edge-eu/library/app${w}`;
        const tag = `v${i}`;
        sent++;
        try {
          const res = await fetch(`http://127.0.0.1:${port}/v2/${name}/manifests/${tag}`, { method: 'PUT', headers: { ...auth, 'Content-Type': OCI }, body: img.manifest.bytes });
          if (res.status === 201) acknowledged.push({ name, digest: img.manifest.digest, tag });
        } catch {
          return; // the connection died with the process
        }
      }
    };
    const workers = Array.from({ length: 16 }, (_, w) => worker(w));
    // Kill once a good number of writes is acknowledged, mid-stream.
    while (acknowledged.length < 300) await new Promise((r) => setTimeout(r, 10));
    proc.child.kill('SIGKILL');
    stop = true;
    await Promise.all(workers);
    await proc.exited;
    expect(sent).to.be.greaterThan(acknowledged.length);

    const again = await spawnSatellite(['adapter'], env(port), 'endpoint listening');
    try {
      const { rows } = await db.pool.query<{ repository: string; tag: string; digest: string }>(
        "SELECT a.repository, t.tag, a.digest FROM artifacts a JOIN tags t USING (group_name, repository, digest) WHERE a.group_name = 'edge-eu'");
      const recorded = new Set(rows.map((r) => `${r.repository}:${r.tag}@${r.digest}`));
      const missing = acknowledged.filter((a) => !recorded.has(`${a.name.slice('edge-eu/'.length)}:${a.tag}@${a.digest}`));
      expect(missing, `${missing.length} of ${acknowledged.length} acknowledged manifests are missing`).to.deep.equal([]);
      // And the restarted endpoint serves them.
      const sample = acknowledged[acknowledged.length - 1]!;
      const head = await fetch(`http://127.0.0.1:${port}/v2/${sample.name}/manifests/${sample.tag}`, { method: 'HEAD', headers: auth });
      expect(head.status).to.equal(200);
      expect(head.headers.get('docker-content-digest')).to.equal(sample.digest);
      // Every acknowledged change also marked its group dirty for the worker.
      const { rows: outbox } = await db.pool.query<{ n: string }>("SELECT count(*) AS n FROM outbox WHERE group_name = 'edge-eu'");
      expect(Number(outbox[0]!.n)).to.be.at.least(acknowledged.length);
    } finally {
      again.child.kill('SIGKILL');
      await again.exited;
    }
  });

  it('when the endpoint gets SIGTERM with a request in flight, then that request completes and the process exits 0', async () => {
    const port = await freePort();
    const proc = await spawnSatellite(['adapter'], env(port), 'endpoint listening');
    const img = image();
    // A slow upload: the body trickles in after SIGTERM has been sent.
    const { request } = await import('node:http');
    const status = new Promise<number>((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port, method: 'PUT', path: '/v2/edge-eu/library/slow/manifests/1', headers: { ...auth, 'Content-Type': OCI, 'Content-Length': String(img.manifest.size) } }, (res) => {
        res.resume();
        resolve(res.statusCode!);
      });
      req.on('error', reject);
      req.write(img.manifest.bytes.subarray(0, 10));
      setTimeout(() => {
        proc.child.kill('SIGTERM');
        setTimeout(() => req.end(img.manifest.bytes.subarray(10)), 300);
      }, 100);
    });
    expect(await status).to.equal(201);
    const { code } = await proc.exited;
    expect(code).to.equal(0);
    // Every log line about the request carries its id.
    const lines = proc.output().split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l));
    const requestLines = lines.filter((l) => l.msg === 'request');
    expect(requestLines).to.have.length.greaterThan(0);
    for (const l of requestLines) expect(l.requestId).to.be.a('string').with.length.greaterThan(8);
    const { rowCount } = await db.pool.query("SELECT 1 FROM tags WHERE repository = 'library/slow' AND tag = '1'");
    expect(rowCount).to.equal(1);
    // No longer accepting.
    await fetch(`http://127.0.0.1:${port}/healthz`).then(() => expect.fail('still accepting'), () => undefined);
  });
});
