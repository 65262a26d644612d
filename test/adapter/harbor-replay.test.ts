import { expect } from 'chai';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Dispatcher } from 'undici';
import type { RunningEndpoint } from '../../adapter/server.js';
import { ArtifactStore } from '../../core/store/artifact-store.js';
import { buildState } from '../../core/state/render.js';
import { createTestDatabase, type TestDatabase } from '../support/db.js';
import { client, json, startTestEndpoint, viaDispatcher } from '../support/endpoint.js';
import { makeCa, trusting } from '../support/tls.js';
import { cosignSignature, image, index, randomLayer, signatureTag, artifact } from '../support/oci.js';

// Replays, request by request, what Harbor's native "Docker Registry" adapter sends during a
// replication (src/pkg/registry/client.go and the replication transfer of Harbor 2.x), with
// its headers, and checks each answer is the one Harbor acts on correctly. Over plain HTTP,
// and over HTTPS (TLS_CERT_FILE / TLS_KEY_FILE) with a certificate from a CA the test makes,
// which the client trusts as Harbor trusts the CA a registry endpoint is registered with.

const HARBOR_UA = { 'User-Agent': 'harbor-registry-client' };
// The Accept list Harbor's ManifestExist sends.
const MANIFEST_ACCEPT = [
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
  'application/vnd.docker.distribution.manifest.v2+json',
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.docker.distribution.manifest.v1+prettyjws',
  'application/vnd.docker.distribution.manifest.v1+json',
].join(', ');

for (const transport of ['HTTP', 'HTTPS'] as const) describe(`Harbor's replication call sequence against the endpoint, over ${transport}`, () => {
  let db: TestDatabase;
  let endpoint: RunningEndpoint;
  let harbor: ReturnType<typeof client>;
  let certs: string | undefined;
  let dispatcher: Dispatcher | undefined;
  const repo = 'edge-eu/library/alpine';

  before(async () => {
    db = await createTestDatabase();
    if (transport === 'HTTPS') {
      certs = await mkdtemp(join(tmpdir(), 'satellite-replay-tls-'));
      const ca = await makeCa(certs);
      const server = await ca.issue('endpoint');
      endpoint = await startTestEndpoint(db.url, 1000, undefined, { tls: { certFile: server.certFile, keyFile: server.keyFile, reloadMs: 60_000 } });
      expect(endpoint.url).to.match(/^https:/);
      dispatcher = trusting(ca.cert);
    } else {
      endpoint = await startTestEndpoint(db.url);
    }
    harbor = client(endpoint.url, undefined, dispatcher);
  });
  after(async () => {
    await endpoint?.stop();
    await db?.drop();
    await dispatcher?.close();
    if (certs) await rm(certs, { recursive: true, force: true });
  });

  const state = async () => buildState('edge-eu', 'https://harbor.example.com', await new ArtifactStore(db.pool).listGroup('edge-eu', 24));
  const headManifest = (name: string, ref: string) => harbor(`/v2/${name}/manifests/${ref}`, { method: 'HEAD', headers: { ...HARBOR_UA, Accept: MANIFEST_ACCEPT } });
  const putManifest = (name: string, ref: string, m: { mediaType: string; bytes: Buffer }) =>
    harbor(`/v2/${name}/manifests/${ref}`, { method: 'PUT', headers: { ...HARBOR_UA, 'Content-Type': m.mediaType }, body: m.bytes });

  it('when Harbor pings without credentials, then it gets a 401 Basic challenge, and with them a 200', async () => {
    const anon = await fetch(`${endpoint.url}/v2/`, { headers: HARBOR_UA, ...viaDispatcher(dispatcher) });
    expect(anon.status).to.equal(401);
    expect(anon.headers.get('www-authenticate')).to.match(/^Basic realm="/);
    expect(anon.headers.get('docker-distribution-api-version')).to.equal('registry/2.0');
    expect((await json(anon)).errors[0].code).to.equal('UNAUTHORIZED');
    const authed = await harbor('/v2/', { headers: HARBOR_UA });
    expect(authed.status).to.equal(200);
  });

  it('when Harbor replicates a tag, then HEAD says absent, every blob HEAD says present, and the PUT records it', async () => {
    const img = image();
    expect((await headManifest(repo, '3.20')).status).to.equal(404);
    for (const b of [img.config, ...img.layers]) {
      const res = await harbor(`/v2/${repo}/blobs/${b.digest}`, { method: 'HEAD', headers: HARBOR_UA });
      expect(res.status, 'blob present, so Harbor sends no layer bytes').to.equal(200);
    }
    const put = await putManifest(repo, '3.20', img.manifest);
    expect(put.status).to.equal(201);
    expect(put.headers.get('docker-content-digest')).to.equal(img.manifest.digest);
    expect(put.headers.get('location')).to.equal(`/v2/${repo}/manifests/${img.manifest.digest}`);

    // The next run's HEAD returns the source digest, so Harbor skips the tag.
    const again = await headManifest(repo, '3.20');
    expect(again.status).to.equal(200);
    expect(again.headers.get('docker-content-digest')).to.equal(img.manifest.digest);
    expect(again.headers.get('content-type')).to.equal(img.manifest.mediaType);
    expect((await state()).artifacts.map((a) => [a.repository, a.tag, a.digest])).to.deep.include(['library/alpine', ['3.20'], img.manifest.digest]);
  });

  it('when Harbor replicates an index, then children pushed first by digest end up inside the index entry', async () => {
    const idx = index([{ architecture: 'amd64', os: 'linux' }, { architecture: 'arm', os: 'linux', variant: 'v7' }]);
    const name = 'edge-eu/library/nginx';
    for (const child of idx.children) {
      expect((await headManifest(name, child.manifest.digest)).status).to.equal(404);
      expect((await putManifest(name, child.manifest.digest, child.manifest)).status).to.equal(201);
    }
    const mid = (await state()).artifacts.filter((a) => a.repository === 'library/nginx');
    expect(mid, 'before the index arrives, the children are recorded').to.have.length(2);
    expect((await putManifest(name, '1.27', idx.manifest)).status).to.equal(201);
    const entries = (await state()).artifacts.filter((a) => a.repository === 'library/nginx');
    expect(entries).to.have.length(1);
    expect(entries[0]!.digest).to.equal(idx.manifest.digest);
    expect(entries[0]!.platforms!.map((p) => [p.digest, p.architecture, p.variant])).to.deep.equal([
      [idx.children[0]!.manifest.digest, 'amd64', undefined],
      [idx.children[1]!.manifest.digest, 'arm', 'v7'],
    ]);
  });

  it('when Harbor copies a blob by chunks, then every answer carries Location and Range and the last PUT checks the digest', async () => {
    const blob = randomLayer(300_000);
    const start = await harbor(`/v2/${repo}/blobs/uploads/`, { method: 'POST', headers: { ...HARBOR_UA, 'Content-Length': '0' } });
    expect(start.status).to.equal(202);
    let location = start.headers.get('location')!;
    expect(location).to.match(new RegExp(`^/v2/${repo}/blobs/uploads/[0-9a-f-]{36}$`));
    expect(start.headers.get('range')).to.equal('0-0');
    const chunk = 100_000;
    for (let at = 0; at < blob.size; at += chunk) {
      const end = Math.min(at + chunk, blob.size) - 1;
      const last = end === blob.size - 1;
      const url = last ? `${location}?digest=${blob.digest}` : location;
      const res = await harbor(url, {
        method: last ? 'PUT' : 'PATCH',
        headers: { ...HARBOR_UA, 'Content-Range': `${at}-${end}`, 'Content-Length': String(end - at + 1) },
        body: blob.bytes.subarray(at, end + 1),
      });
      if (last) {
        expect(res.status).to.equal(201);
        expect(res.headers.get('docker-content-digest')).to.equal(blob.digest);
        expect(res.headers.get('location')).to.equal(`/v2/${repo}/blobs/${blob.digest}`);
      } else {
        expect(res.status).to.equal(202);
        expect(res.headers.get('range')).to.equal(`0-${end}`);
        location = res.headers.get('location')!;
        // After an interruption Harbor asks where the upload stands (GET, Range).
        const status = await harbor(location, { headers: HARBOR_UA });
        expect(status.status).to.equal(204);
        expect(status.headers.get('range')).to.equal(`0-${end}`);
        expect(status.headers.get('location')).to.equal(location);
      }
    }
  });

  it('when a chunk arrives out of order, then 416 with the offset the upload stands at', async () => {
    const start = await harbor(`/v2/${repo}/blobs/uploads/`, { method: 'POST' });
    const location = start.headers.get('location')!;
    await harbor(location, { method: 'PATCH', headers: { 'Content-Range': '0-9' }, body: Buffer.alloc(10) });
    const skipped = await harbor(location, { method: 'PATCH', headers: { 'Content-Range': '20-29' }, body: Buffer.alloc(10) });
    expect(skipped.status).to.equal(416);
    expect((await json(skipped)).errors[0].code).to.equal('BLOB_UPLOAD_INVALID');
    const cancel = await harbor(location, { method: 'DELETE' });
    expect(cancel.status).to.equal(204);
    expect((await harbor(location)).status).to.equal(404);
  });

  it('when Harbor replicates a cosign signature tag, then it is recorded as a SIGNATURE of the image it signs', async () => {
    const img = image();
    expect((await putManifest(repo, '3.21', img.manifest)).status).to.equal(201);
    const sig = cosignSignature(img.manifest, `harbor.example.com/library/alpine`);
    const tag = signatureTag(img.manifest.digest);
    expect((await headManifest(repo, tag)).status).to.equal(404);
    expect((await putManifest(repo, tag, sig.manifest)).status).to.equal(201);
    const entry = (await state()).artifacts.find((a) => a.digest === sig.manifest.digest)!;
    expect(entry).to.include({ repository: 'library/alpine', type: 'SIGNATURE', subject: img.manifest.digest });
    expect(entry.tag).to.deep.equal([tag]);
  });

  it('when an artifact with a subject is pushed by digest, then the answer names the subject and the referrers API lists it', async () => {
    const img = image();
    expect((await putManifest(repo, '3.22', img.manifest)).status).to.equal(201);
    const sbom = artifact('application/vnd.cyclonedx+json', Buffer.from('{"bomFormat":"CycloneDX"}'), 'application/vnd.cyclonedx+json', img.manifest);
    const put = await putManifest(repo, sbom.manifest.digest, sbom.manifest);
    expect(put.status).to.equal(201);
    expect(put.headers.get('oci-subject')).to.equal(img.manifest.digest);
    const refs = await harbor(`/v2/${repo}/referrers/${img.manifest.digest}`);
    expect(refs.status).to.equal(200);
    expect(refs.headers.get('content-type')).to.match(/^application\/vnd\.oci\.image\.index\.v1\+json/);
    const body = await json(refs);
    expect(body.manifests).to.deep.equal([{ mediaType: sbom.manifest.mediaType, digest: sbom.manifest.digest, size: sbom.manifest.size, artifactType: 'application/vnd.cyclonedx+json' }]);
    const filtered = await harbor(`/v2/${repo}/referrers/${img.manifest.digest}?artifactType=application/example`);
    expect(filtered.headers.get('oci-filters-applied')).to.equal('artifactType');
    expect((await json(filtered)).manifests).to.deep.equal([]);
    const entry = (await state()).artifacts.find((a) => a.digest === sbom.manifest.digest)!;
    expect(entry).to.include({ type: 'SBOM', subject: img.manifest.digest });
  });

  it('when Harbor replicates a deletion, then two HEADs find the tag, DELETE by digest answers 202 and the state keeps a tombstone', async () => {
    const img = image();
    const name = 'edge-eu/library/busybox';
    expect((await putManifest(name, '1.36', img.manifest)).status).to.equal(201);
    for (let i = 0; i < 2; i++) {
      const head = await headManifest(name, '1.36');
      expect(head.status).to.equal(200);
      expect(head.headers.get('docker-content-digest')).to.equal(img.manifest.digest);
    }
    const del = await harbor(`/v2/${name}/manifests/${img.manifest.digest}`, { method: 'DELETE', headers: HARBOR_UA });
    expect(del.status).to.equal(202);
    expect((await headManifest(name, '1.36')).status).to.equal(404);
    expect((await headManifest(name, img.manifest.digest)).status).to.equal(404);
    const entry = (await state()).artifacts.find((a) => a.repository === 'library/busybox')!;
    expect(entry).to.include({ digest: img.manifest.digest, deleted: true });
    expect(entry.tag).to.deep.equal(['1.36']);
    // A second delete of the same digest finds nothing: 404, as a registry would answer.
    const again = await harbor(`/v2/${name}/manifests/${img.manifest.digest}`, { method: 'DELETE', headers: HARBOR_UA });
    expect(again.status).to.equal(404);
    expect((await json(again)).errors[0].code).to.equal('MANIFEST_UNKNOWN');
  });

  it('when a deleted image is replicated again, then it is live again with its tag', async () => {
    const name = 'edge-eu/library/redis';
    const img = image();
    await putManifest(name, '7', img.manifest);
    await harbor(`/v2/${name}/manifests/${img.manifest.digest}`, { method: 'DELETE' });
    expect((await putManifest(name, '7', img.manifest)).status).to.equal(201);
    const entry = (await state()).artifacts.find((a) => a.repository === 'library/redis')!;
    expect(entry).to.include({ deleted: false });
    expect(entry.tag).to.deep.equal(['7']);
  });

  it('when Harbor lists tags, then they come sorted and paginated with a Link header', async () => {
    const name = 'edge-eu/library/tags';
    const img = image({ layers: [randomLayer()] });
    for (const t of ['b', 'a', 'c']) expect((await putManifest(name, t, img.manifest)).status).to.equal(201);
    const page1 = await harbor(`/v2/${name}/tags/list?n=2`);
    expect(await json(page1)).to.deep.equal({ name, tags: ['a', 'b'] });
    expect(page1.headers.get('link')).to.equal(`</v2/${name}/tags/list?n=2&last=b>; rel="next"`);
    const page2 = await harbor(`/v2/${name}/tags/list?n=2&last=b`);
    expect(await json(page2)).to.deep.equal({ name, tags: ['c'] });
    expect(page2.headers.get('link')).to.equal(null);
    const unknown = await harbor('/v2/edge-eu/library/nothing/tags/list');
    expect(unknown.status).to.equal(404);
    expect((await json(unknown)).errors[0].code).to.equal('NAME_UNKNOWN');
  });

  it('when a client mounts a blob from another repository, then the mount succeeds at once', async () => {
    const b = randomLayer();
    const res = await harbor(`/v2/${repo}/blobs/uploads/?mount=${b.digest}&from=library/alpine`, { method: 'POST', headers: { 'Content-Length': '0' } });
    expect(res.status).to.equal(201);
    expect(res.headers.get('location')).to.equal(`/v2/${repo}/blobs/${b.digest}`);
  });

  it('when a manifest is unknown, then an authenticated HEAD gets 404, never 401 or 403', async () => {
    expect((await headManifest('edge-eu/other/repo', 'latest')).status).to.equal(404);
    expect((await headManifest('edge-eu/library/alpine', 'no-such-tag')).status).to.equal(404);
    // Credentials are checked on every route, not only the ping.
    const anon = await fetch(`${endpoint.url}/v2/${repo}/manifests/3.20`, { method: 'HEAD', ...viaDispatcher(dispatcher) });
    expect(anon.status).to.equal(401);
  });
});
