import { expect } from 'chai';
import { request as httpRequest } from 'node:http';
import type { RunningEndpoint } from '../../adapter/server.js';
import { createTestDatabase, type TestDatabase } from '../support/db.js';
import { basic, client, json, startTestEndpoint } from '../support/endpoint.js';
import { image, randomLayer, sha256 } from '../support/oci.js';

/** A request whose path reaches the server byte for byte (fetch would normalise "..").*/
function rawRequest(base: string, method: string, path: string, headers: Record<string, string> = {}, body?: Buffer): Promise<{ status: number; body: string }> {
  const u = new URL(base);
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: u.hostname, port: u.port, method, path, headers: { Authorization: basic(), ...headers } }, (res) => {
      let data = '';
      res.setEncoding('utf8');
      res.on('data', (c) => (data += c));
      res.on('end', () => resolve({ status: res.statusCode!, body: data }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

describe('bad input gets its spec error and changes nothing', () => {
  let db: TestDatabase;
  let endpoint: RunningEndpoint;
  let api: ReturnType<typeof client>;
  let snapshot: string;
  const good = image();
  const OCI = 'application/vnd.oci.image.manifest.v1+json';

  before(async () => {
    db = await createTestDatabase();
    endpoint = await startTestEndpoint(db.url);
    api = client(endpoint.url);
    // Some real content first, so "unchanged" is checked against a non-empty database.
    const put = await api('/v2/edge-eu/library/alpine/manifests/3.20', { method: 'PUT', headers: { 'Content-Type': OCI }, body: good.manifest.bytes });
    expect(put.status).to.equal(201);
    snapshot = await db.dump();
  });
  afterEach(async () => {
    expect(await db.dump(), 'the database is unchanged').to.equal(snapshot);
  });
  after(async () => {
    await endpoint?.stop();
    await db?.drop();
  });

  async function expectError(res: Response, status: number, code: string): Promise<string> {
    expect(res.status).to.equal(status);
    expect(res.headers.get('content-type')).to.match(/^application\/json/);
    const body = await json(res);
    expect(body.errors).to.be.an('array').with.length(1);
    expect(body.errors[0].code).to.equal(code);
    expect(body.errors[0].message).to.be.a('string').and.not.empty;
    return body.errors[0].message;
  }
  const put = (name: string, ref: string, body: Buffer | string, type = OCI) =>
    api(`/v2/${name}/manifests/${ref}`, { method: 'PUT', headers: { 'Content-Type': type }, body });

  it('when the manifest is not JSON, then MANIFEST_INVALID', async () => {
    await expectError(await put('edge-eu/library/alpine', 'x', '{"schemaVersion": 2,'), 400, 'MANIFEST_INVALID');
  });

  it('when the media type is unknown or contradicts the body, then MANIFEST_INVALID', async () => {
    await expectError(await put('edge-eu/library/alpine', 'x', good.manifest.bytes, 'text/plain'), 400, 'MANIFEST_INVALID');
    await expectError(await put('edge-eu/library/alpine', 'x', good.manifest.bytes, 'application/vnd.docker.distribution.manifest.v2+json'), 400, 'MANIFEST_INVALID');
    const schema1 = JSON.stringify({ schemaVersion: 1, name: 'x', tag: 'y', fsLayers: [] });
    await expectError(await put('edge-eu/library/alpine', 'x', schema1, 'application/vnd.docker.distribution.manifest.v1+prettyjws'), 400, 'MANIFEST_INVALID');
  });

  it('when a descriptor is malformed, then MANIFEST_INVALID names the field', async () => {
    const bad = JSON.parse(good.manifest.bytes.toString());
    bad.layers[1].digest = 'sha256:not-hex';
    const message = await expectError(await put('edge-eu/library/alpine', 'x', JSON.stringify(bad)), 400, 'MANIFEST_INVALID');
    expect(message).to.include('layers[1].digest');
    const noConfig = JSON.parse(good.manifest.bytes.toString());
    delete noConfig.config;
    await expectError(await put('edge-eu/library/alpine', 'x', JSON.stringify(noConfig)), 400, 'MANIFEST_INVALID');
    const negative = JSON.parse(good.manifest.bytes.toString());
    negative.config.size = -1;
    await expectError(await put('edge-eu/library/alpine', 'x', JSON.stringify(negative)), 400, 'MANIFEST_INVALID');
  });

  it('when the manifest is over 4 MiB, then 413 SIZE_INVALID', async () => {
    const big = JSON.parse(good.manifest.bytes.toString());
    big.annotations = { filler: 'x'.repeat(4 * 1024 * 1024) };
    await expectError(await put('edge-eu/library/alpine', 'big', JSON.stringify(big)), 413, 'SIZE_INVALID');
  });

  it('when the body does not hash to the digest in the URL, then DIGEST_INVALID', async () => {
    const other = image();
    await expectError(await put('edge-eu/library/alpine', other.manifest.digest, good.manifest.bytes), 400, 'DIGEST_INVALID');
    await expectError(await put('edge-eu/library/alpine', 'sha256:abc', good.manifest.bytes), 400, 'DIGEST_INVALID');
  });

  it('when a name breaks the grammar or has no group, then NAME_INVALID, and the flattening case says what to change', async () => {
    await expectError(await put('Edge-EU/Library/Alpine', 'x', good.manifest.bytes), 400, 'NAME_INVALID');
    await expectError(await put('edge-eu/library//alpine', 'x', good.manifest.bytes), 400, 'NAME_INVALID');
    const flat = await expectError(await put('edge-eu/alpine', 'x', good.manifest.bytes), 400, 'NAME_INVALID');
    expect(flat).to.include('No Flattening');
    const lone = await expectError(await put('alpine', 'x', good.manifest.bytes), 400, 'NAME_INVALID');
    expect(lone).to.include('No Flattening');
  });

  it('when a tag is malformed, then TAG_INVALID', async () => {
    await expectError(await put('edge-eu/library/alpine', '-leading-dash', good.manifest.bytes), 400, 'TAG_INVALID');
    await expectError(await put('edge-eu/library/alpine', 'a'.repeat(129), good.manifest.bytes), 400, 'TAG_INVALID');
  });

  it('when the path tries to climb out with .. (plain or encoded), then NAME_INVALID', async () => {
    for (const path of ['/v2/edge-eu/../../etc/manifests/latest', '/v2/edge-eu/%2e%2e/library/alpine/manifests/latest', '/v2/edge-eu/library/..%2f..%2fetc/manifests/latest']) {
      const res = await rawRequest(endpoint.url, 'PUT', path, { 'Content-Type': OCI }, good.manifest.bytes);
      expect(res.status, path).to.equal(400);
      expect(JSON.parse(res.body).errors[0].code, path).to.equal('NAME_INVALID');
    }
  });

  it('when credentials are missing or wrong, then 401 UNAUTHORIZED with a challenge, on every route', async () => {
    const anon = client(endpoint.url, null);
    const wrong = client(endpoint.url, basic('harbor', 'not-the-secret'));
    for (const c of [anon, wrong]) {
      const res = await c('/v2/edge-eu/library/alpine/manifests/evil', { method: 'PUT', headers: { 'Content-Type': OCI }, body: good.manifest.bytes });
      await expectError(res, 401, 'UNAUTHORIZED');
      expect(res.headers.get('www-authenticate')).to.match(/^Basic /);
      await expectError(await c(`/v2/edge-eu/library/alpine/manifests/${good.manifest.digest}`, { method: 'DELETE' }), 401, 'UNAUTHORIZED');
      await expectError(await c('/v2/edge-eu/library/alpine/blobs/uploads/', { method: 'POST' }), 401, 'UNAUTHORIZED');
    }
  });

  it('when a monolithic blob upload does not match its digest, then DIGEST_INVALID', async () => {
    const b = randomLayer();
    const res = await api(`/v2/edge-eu/library/alpine/blobs/uploads/?digest=${sha256(Buffer.from('other'))}`, { method: 'POST', headers: { 'Content-Type': 'application/octet-stream' }, body: b.bytes });
    await expectError(res, 400, 'DIGEST_INVALID');
  });

  it('when an upload session is unknown or malformed, then BLOB_UPLOAD_UNKNOWN', async () => {
    await expectError(await api('/v2/edge-eu/library/alpine/blobs/uploads/00000000-0000-4000-8000-000000000000'), 404, 'BLOB_UPLOAD_UNKNOWN');
    await expectError(await api('/v2/edge-eu/library/alpine/blobs/uploads/not-a-uuid', { method: 'PATCH', body: 'x' }), 404, 'BLOB_UPLOAD_UNKNOWN');
  });

  it('when a method is not part of the API for a resource, then 405 UNSUPPORTED with Allow', async () => {
    const res = await api('/v2/edge-eu/library/alpine/tags/list', { method: 'DELETE' });
    await expectError(res, 405, 'UNSUPPORTED');
    expect(res.headers.get('allow')).to.equal('GET');
  });

  it('when a delete names something unknown, then 404 MANIFEST_UNKNOWN', async () => {
    await expectError(await api(`/v2/edge-eu/library/alpine/manifests/${image().manifest.digest}`, { method: 'DELETE' }), 404, 'MANIFEST_UNKNOWN');
    await expectError(await api('/v2/edge-eu/library/alpine/manifests/never-tagged', { method: 'DELETE' }), 404, 'MANIFEST_UNKNOWN');
  });
});

describe('repeated failed logins', () => {
  let db: TestDatabase;
  let endpoint: RunningEndpoint;
  before(async () => {
    db = await createTestDatabase();
    endpoint = await startTestEndpoint(db.url, 3);
  });
  after(async () => {
    await endpoint?.stop();
    await db?.drop();
  });

  it('when one address fails past the limit, then it gets 429 with Retry-After, even with the right secret', async () => {
    const wrong = client(endpoint.url, basic('harbor', 'guess'));
    for (let i = 0; i < 3; i++) expect((await wrong('/v2/')).status).to.equal(401);
    const blocked = await wrong('/v2/');
    expect(blocked.status).to.equal(429);
    expect(Number(blocked.headers.get('retry-after'))).to.be.greaterThan(0);
    expect((await json(blocked)).errors[0].code).to.equal('TOOMANYREQUESTS');
    expect((await client(endpoint.url)('/v2/')).status).to.equal(429);
  });

  it('when a client sends no credentials at all (the ping), then that is not counted as a failure', async () => {
    const db2 = await createTestDatabase();
    const e2 = await startTestEndpoint(db2.url, 2);
    try {
      for (let i = 0; i < 5; i++) expect((await fetch(`${e2.url}/v2/`)).status).to.equal(401);
      expect((await client(e2.url)('/v2/')).status).to.equal(200);
    } finally {
      await e2.stop();
      await db2.drop();
    }
  });

  it('when the endpoint sits behind a trusted proxy (TRUST_PROXY), then failures are counted per forwarded client, not per proxy', async () => {
    const db3 = await createTestDatabase();
    const e3 = await startTestEndpoint(db3.url, 2, 'loopback');
    try {
      const from = (ip: string, auth: string) => fetch(`${e3.url}/v2/`, { headers: { Authorization: auth, 'X-Forwarded-For': ip } });
      for (let i = 0; i < 2; i++) expect((await from('203.0.113.7', basic('harbor', 'guess'))).status).to.equal(401);
      expect((await from('203.0.113.7', basic())).status).to.equal(429);
      expect((await from('198.51.100.4', basic())).status, 'another client behind the same proxy').to.equal(200);
    } finally {
      await e3.stop();
      await db3.drop();
    }
  });
});
