import { expect } from 'chai';
import { createHash, randomBytes } from 'node:crypto';
import type { RunningEndpoint } from '../../adapter/server.js';
import { buildState } from '../../core/state/render.js';
import { ArtifactStore } from '../../core/store/artifact-store.js';
import { createTestDatabase, type TestDatabase } from '../support/db.js';
import { client, IMAGE_REGISTRY, json, startTestEndpoint } from '../support/endpoint.js';
import { image } from '../support/oci.js';

const sha512 = (b: Buffer) => `sha512:${createHash('sha512').update(b).digest('hex')}`;
const sha256 = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

describe('digests other than sha256, and blob HEAD and GET', () => {
  let db: TestDatabase;
  let endpoint: RunningEndpoint;
  let api: ReturnType<typeof client>;
  const name = 'edge-eu/library/alpine';

  before(async () => {
    db = await createTestDatabase();
    endpoint = await startTestEndpoint(db.url);
    api = client(endpoint.url);
  });
  after(async () => {
    await endpoint?.stop();
    await db?.drop();
  });

  it('when a manifest is pushed by its sha512 digest, then it is verified with sha512, answered and listed under that digest', async () => {
    const img = image();
    const digest = sha512(img.manifest.bytes);
    const put = await api(`/v2/${name}/manifests/${digest}`, { method: 'PUT', headers: { 'Content-Type': img.manifest.mediaType }, body: img.manifest.bytes });
    expect(put.status).to.equal(201);
    expect(put.headers.get('location')).to.equal(`/v2/${name}/manifests/${digest}`);
    expect(put.headers.get('docker-content-digest')).to.equal(digest);
    const get = await api(`/v2/${name}/manifests/${digest}`);
    expect(get.status).to.equal(200);
    expect(get.headers.get('docker-content-digest')).to.equal(digest);
    expect(Buffer.from(await get.arrayBuffer()).equals(img.manifest.bytes)).to.equal(true);
    const state = buildState('edge-eu', 'https://harbor.example.com', await new ArtifactStore(db.pool).listGroup('edge-eu', 24));
    expect(state.artifacts.map((a) => a.digest)).to.include(digest);

    const other = image();
    const wrong = await api(`/v2/${name}/manifests/${sha512(other.manifest.bytes)}`, { method: 'PUT', headers: { 'Content-Type': img.manifest.mediaType }, body: img.manifest.bytes });
    expect(wrong.status).to.equal(400);
    expect((await json(wrong)).errors[0].code).to.equal('DIGEST_INVALID');
  });

  it('when a blob is uploaded in one request with a sha512 digest, then it is checked with sha512', async () => {
    const bytes = randomBytes(5000);
    const ok = await api(`/v2/${name}/blobs/uploads/?digest=${sha512(bytes)}`, { method: 'POST', headers: { 'Content-Type': 'application/octet-stream' }, body: bytes });
    expect(ok.status).to.equal(201);
    expect(ok.headers.get('docker-content-digest')).to.equal(sha512(bytes));
    const bad = await api(`/v2/${name}/blobs/uploads/?digest=${sha512(randomBytes(10))}`, { method: 'POST', body: bytes });
    expect(bad.status).to.equal(400);
    expect((await json(bad)).errors[0].code).to.equal('DIGEST_INVALID');
  });

  it('when a chunked upload starts with ?digest-algorithm=sha512, then its chunks are hashed with sha512 across requests and checked at the end', async () => {
    const bytes = randomBytes(200_000);
    const start = await api(`/v2/${name}/blobs/uploads/?digest-algorithm=sha512`, { method: 'POST', headers: { 'Content-Length': '0' } });
    expect(start.status).to.equal(202);
    const location = start.headers.get('location')!;
    expect((await api(location, { method: 'PATCH', headers: { 'Content-Range': '0-99999' }, body: bytes.subarray(0, 100_000) })).status).to.equal(202);
    const done = await api(`${location}?digest=${sha512(bytes)}`, { method: 'PUT', headers: { 'Content-Range': '100000-199999' }, body: bytes.subarray(100_000) });
    expect(done.status).to.equal(201);
    expect(done.headers.get('docker-content-digest')).to.equal(sha512(bytes));

    // A sha512 session finished with a wrong sha512 digest, and a sha256 session finished with a sha512 digest.
    for (const [algorithm, digest] of [['sha512', sha512(randomBytes(8))], ['sha256', sha512(bytes)]] as const) {
      const s = await api(`/v2/${name}/blobs/uploads/?digest-algorithm=${algorithm}`, { method: 'POST' });
      const res = await api(`${s.headers.get('location')}?digest=${digest}`, { method: 'PUT', body: bytes });
      expect(res.status, algorithm).to.equal(400);
      expect((await json(res)).errors[0].code, algorithm).to.equal('DIGEST_INVALID');
    }
  });

  it('when a blob is HEADed, then it is present, with its real size once a manifest or an upload named it, else 0', async () => {
    const img = image();
    const layer = img.layers[0]!;
    const before = await api(`/v2/${name}/blobs/${layer.digest}`, { method: 'HEAD' });
    expect(before.status).to.equal(200);
    expect(before.headers.get('content-length')).to.equal('0');
    expect(before.headers.get('docker-content-digest')).to.equal(layer.digest);
    await api(`/v2/${name}/manifests/1`, { method: 'PUT', headers: { 'Content-Type': img.manifest.mediaType }, body: img.manifest.bytes });
    for (const b of [img.config, ...img.layers]) {
      const head = await api(`/v2/${name}/blobs/${b.digest}`, { method: 'HEAD' });
      expect(head.headers.get('content-length'), b.digest).to.equal(String(b.size));
    }
    const uploaded = randomBytes(777);
    await api(`/v2/${name}/blobs/uploads/?digest=${sha256(uploaded)}`, { method: 'POST', body: uploaded });
    expect((await api(`/v2/${name}/blobs/${sha256(uploaded)}`, { method: 'HEAD' })).headers.get('content-length')).to.equal('777');
    // Sizes are per group: another group has not named the blob.
    expect((await api(`/v2/edge-us/library/alpine/blobs/${layer.digest}`, { method: 'HEAD' })).headers.get('content-length')).to.equal('0');
  });

  it('when many blob sizes are asked at once (one query answers them together), then each gets its own blob\'s size, known or not', async () => {
    const { randomLayer } = await import('../support/oci.js');
    const images = Array.from({ length: 12 }, (_, i) => image({ layers: [randomLayer(100 + i * 37), randomLayer(5000 + i)] }));
    for (const [i, img] of images.entries()) {
      await api(`/v2/edge-many/library/app${i % 3}/manifests/${i}`, { method: 'PUT', headers: { 'Content-Type': img.manifest.mediaType }, body: img.manifest.bytes });
    }
    const unknown = image().layers[0]!;
    const asked = images.flatMap((img, i) => [img.config, ...img.layers].map((b) => ({ repository: `library/app${i % 3}`, b })));
    asked.splice(7, 0, { repository: 'library/app0', b: unknown });
    // Asked in the same turn of the event loop, as a burst of Harbor's HEADs is.
    const store = new ArtifactStore(db.pool);
    const sizes = await Promise.all(asked.map(({ repository, b }) => store.blobSize({ group: 'edge-many', repository }, b.digest)));
    expect(sizes).to.deep.equal(asked.map(({ b }) => (b === unknown ? undefined : b.size)));
    const head = await api(`/v2/edge-many/library/app1/blobs/${images[1]!.layers[1]!.digest}`, { method: 'HEAD' });
    expect(head.headers.get('content-length')).to.equal(String(images[1]!.layers[1]!.size));
  });

  it('when a blob is fetched with GET, then the answer is a 307 to the source repository in Harbor, never a 404', async () => {
    const digest = sha256(randomBytes(10));
    const res = await api(`/v2/${name}/blobs/${digest}`, { redirect: 'manual' });
    expect(res.status).to.equal(307);
    expect(res.headers.get('location')).to.equal(`${IMAGE_REGISTRY}/v2/library/alpine/blobs/${digest}`);
    expect(res.headers.get('docker-content-digest')).to.equal(digest);
  });

  it('when a manifest is HEADed, then Content-Length is the size of its exact bytes', async () => {
    const img = image();
    await api(`/v2/${name}/manifests/head`, { method: 'PUT', headers: { 'Content-Type': img.manifest.mediaType }, body: img.manifest.bytes });
    for (const ref of ['head', img.manifest.digest]) {
      const head = await api(`/v2/${name}/manifests/${ref}`, { method: 'HEAD' });
      expect(head.status).to.equal(200);
      expect(head.headers.get('content-length'), ref).to.equal(String(img.manifest.size));
    }
  });
});
