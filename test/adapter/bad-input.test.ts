import { expect } from 'chai';
import { randomBytes } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import type { RunningEndpoint } from '../../adapter/server.js';
import { createTestDatabase, type TestDatabase } from '../support/db.js';
import { basic, client, json, startTestEndpoint } from '../support/endpoint.js';
import { image, index, randomLayer, sha256 } from '../support/oci.js';

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

  it('when credentials are missing or wrong, then 401 UNAUTHORIZED with a challenge, on every route and method', async () => {
    const anon = client(endpoint.url, null);
    const wrong = client(endpoint.url, basic('harbor', 'not-the-secret'));
    const name = 'edge-eu/library/alpine';
    const session = `/v2/${name}/blobs/uploads/00000000-0000-4000-8000-000000000000`;
    const blob = `/v2/${name}/blobs/${good.config.digest}`;
    // Every route of adapter/routes.ts with every method it serves, the API root, and a
    // path no route matches: credentials are checked before anything else.
    const routes: [string, string, Buffer?][] = [
      ['GET', '/v2/'], ['HEAD', '/v2/'],
      ['GET', `/v2/${name}/tags/list`],
      ['GET', `/v2/${name}/manifests/3.20`], ['HEAD', `/v2/${name}/manifests/3.20`],
      ['PUT', `/v2/${name}/manifests/evil`, good.manifest.bytes], ['DELETE', `/v2/${name}/manifests/${good.manifest.digest}`],
      ['POST', `/v2/${name}/blobs/uploads/`], ['POST', `/v2/${name}/blobs/uploads/?digest=${good.config.digest}`, good.config.bytes],
      ['POST', `/v2/${name}/blobs/uploads/?mount=${good.config.digest}&from=edge-eu/library/other`],
      ['GET', session], ['PATCH', session, Buffer.from('x')], ['PUT', `${session}?digest=${good.config.digest}`], ['DELETE', session],
      ['HEAD', blob], ['GET', blob], ['DELETE', blob],
      ['GET', `/v2/${name}/referrers/${good.manifest.digest}`],
      ['GET', '/v2/_catalog'], ['DELETE', `/v2/${name}/tags/list`],
    ];
    for (const c of [anon, wrong]) {
      for (const [method, path, body] of routes) {
        const res = await c(path, { method, headers: body ? { 'Content-Type': OCI } : {}, body });
        expect(res.status, `${method} ${path}`).to.equal(401);
        expect(res.headers.get('www-authenticate'), `${method} ${path}`).to.match(/^Basic realm="/);
        if (method !== 'HEAD') expect((await json(res)).errors[0].code, `${method} ${path}`).to.equal('UNAUTHORIZED');
      }
    }
  });

  it('when a manifest holds a NUL character, a lone UTF-16 surrogate or bytes that are not UTF-8, anywhere, then MANIFEST_INVALID, never 500', async () => {
    const text = good.manifest.bytes.toString();
    const withField = (field: string) => text.replace(/}$/, `,${field}}`);
    const idx = index([{ architecture: 'amd64', os: 'linux' }]).manifest.bytes.toString();
    const cases: [string, string | Buffer, string?][] = [
      ['NUL in an annotation value', withField('"annotations":{"a":"x\\u0000y"}')],
      ['NUL in an annotation key', withField('"annotations":{"a\\u0000":"x"}')],
      ['lone high surrogate in an annotation value', withField('"annotations":{"a":"\\ud800"}')],
      ['lone low surrogate in a nested custom field', withField('"custom":{"deep":["ok","\\udc00"]}')],
      ['NUL in a platform field', idx.replace('"os":"linux"', '"os":"linux\\u0000"'), 'application/vnd.oci.image.index.v1+json'],
      ['lone surrogate in a platform variant', idx.replace('"os":"linux"', '"os":"linux","variant":"\\udbff"'), 'application/vnd.oci.image.index.v1+json'],
      ['bytes that are not UTF-8', Buffer.concat([Buffer.from(withField('"annotations":{"a":"')), Buffer.from([0xff, 0xfe]), Buffer.from('"}}')]).subarray(0, -1)],
    ];
    for (const [what, body, type] of cases) {
      const res = await put('edge-eu/library/alpine', 'nul', body, type);
      expect(res.status, what).to.equal(400);
      expect((await json(res)).errors[0].code, what).to.equal('MANIFEST_INVALID');
    }
  });

  it('when a manifest nests arrays or objects thousands deep, then 400 MANIFEST_INVALID naming the limit, never 500', async () => {
    const text = good.manifest.bytes.toString();
    const deep = (open: string, close: string, n: number) => text.replace(/}$/, `,"custom":${open.repeat(n)}0${close.repeat(n)}}`);
    const cases: [string, string][] = [
      ['arrays 3,000 deep', deep('[', ']', 3000)],
      ['objects 3,000 deep', deep('{"a":', '}', 3000)],
      ['arrays 1,000,000 deep (under 4 MiB)', deep('[', ']', 1_000_000)],
    ];
    for (const [what, body] of cases) {
      const message = await expectError(await put('edge-eu/library/alpine', 'deep', body), 400, 'MANIFEST_INVALID');
      expect(message, what).to.match(/nests arrays and objects more than \d+ deep/);
    }
  });

  it('when a query or path parameter holds what Postgres cannot take (NUL, bad UTF-8, a huge n), on any route that queries, then its spec error in the OCI format, never 5xx', async () => {
    const name = 'edge-eu/library/alpine';
    const digest = good.manifest.digest;
    const session = '00000000-0000-4000-8000-000000000000';
    const nul = (user: string) => `Basic ${Buffer.from(`${user}:x`).toString('base64')}`;
    // [what, method, path, expected status, expected code (undefined: a success answer)]
    const cases: [string, string, string, number, string | undefined, Record<string, string>?][] = [
      ['tags last= NUL', 'GET', `/v2/${name}/tags/list?last=%00`, 400, 'TAG_INVALID'],
      ['tags last= NUL inside a tag', 'GET', `/v2/${name}/tags/list?last=3.%0020`, 400, 'TAG_INVALID'],
      ['tags last= bytes that are not UTF-8', 'GET', `/v2/${name}/tags/list?last=%ff%fe`, 200, undefined],
      ['tags last= a lone surrogate, UTF-8 encoded', 'GET', `/v2/${name}/tags/list?last=%ed%a0%80`, 200, undefined],
      ['tags n= NUL', 'GET', `/v2/${name}/tags/list?n=%00`, 200, undefined],
      ['tags n= huge', 'GET', `/v2/${name}/tags/list?n=99999999999999999999999`, 200, undefined],
      ['tags n= negative', 'GET', `/v2/${name}/tags/list?n=-5`, 200, undefined],
      ['tags of a name with NUL', 'GET', '/v2/edge-eu/library/al%00pine/tags/list', 400, 'NAME_INVALID'],
      ['referrers artifactType= NUL', 'GET', `/v2/${name}/referrers/${digest}?artifactType=%00`, 400, 'UNSUPPORTED'],
      ['referrers artifactType= NUL in a media type', 'GET', `/v2/${name}/referrers/${digest}?artifactType=application/x%00y`, 400, 'UNSUPPORTED'],
      ['referrers artifactType= bytes that are not UTF-8', 'GET', `/v2/${name}/referrers/${digest}?artifactType=%ff`, 200, undefined],
      ['referrers by a digest with NUL', 'GET', `/v2/${name}/referrers/sha256:${'a'.repeat(63)}%00`, 400, 'DIGEST_INVALID'],
      ['manifest by a tag with NUL', 'GET', `/v2/${name}/manifests/3.%0020`, 400, 'TAG_INVALID'],
      ['manifest HEAD by a digest with NUL', 'HEAD', `/v2/${name}/manifests/sha256:%00`, 400, undefined],
      ['manifest of a name with NUL', 'GET', '/v2/edge-eu/library/%00/manifests/3.20', 400, 'NAME_INVALID'],
      ['manifest DELETE by a tag with NUL', 'DELETE', `/v2/${name}/manifests/x%00`, 400, 'TAG_INVALID'],
      ['blob by a digest with NUL', 'GET', `/v2/${name}/blobs/sha256:%00`, 400, 'DIGEST_INVALID'],
      ['blob of a name with NUL', 'HEAD', `/v2/edge-eu/%00/alpine/blobs/${good.config.digest}`, 400, undefined],
      ['upload session id with NUL', 'GET', `/v2/${name}/blobs/uploads/${session.slice(0, -1)}%00`, 404, 'BLOB_UPLOAD_UNKNOWN'],
      ['upload PUT ?digest= NUL', 'PUT', `/v2/${name}/blobs/uploads/${session}?digest=%00`, 400, 'DIGEST_INVALID'],
      ['upload POST ?mount= NUL', 'POST', `/v2/${name}/blobs/uploads/?mount=%00&from=edge-eu/library/other`, 400, 'DIGEST_INVALID'],
      ['upload POST ?from= NUL', 'POST', `/v2/${name}/blobs/uploads/?mount=${good.config.digest}&from=edge-eu/%00`, 400, 'NAME_INVALID'],
      ['upload POST ?digest-algorithm= NUL', 'POST', `/v2/${name}/blobs/uploads/?digest-algorithm=%00`, 400, 'DIGEST_INVALID'],
      ['a username with NUL (looked up as a group credential)', 'GET', '/v2/', 401, 'UNAUTHORIZED', { Authorization: nul('group-edge\u0000eu') }],
    ];
    const failures: string[] = [];
    for (const [what, method, path, status, code, headers] of cases) {
      const res = await rawRequest(endpoint.url, method, path, headers);
      const got = method === 'HEAD' || res.body === '' ? undefined : JSON.parse(res.body);
      const gotCode: string | undefined = got?.errors?.[0]?.code;
      if (res.status !== status || (code !== undefined && gotCode !== code) || (code !== undefined && typeof got.errors[0].message !== 'string')) {
        failures.push(`${what}: ${method} ${path} answered ${res.status} ${gotCode ?? res.body.slice(0, 80)}, expected ${status} ${code ?? ''}`);
      }
    }
    expect(failures).to.deep.equal([]);
  });

  it('when index children, a subject or a Docker schema 2 manifest are not valid descriptors, then MANIFEST_INVALID', async () => {
    const idxDoc = () => JSON.parse(index([{ architecture: 'amd64', os: 'linux' }]).manifest.bytes.toString());
    const docker = () => {
      const d = JSON.parse(good.manifest.bytes.toString());
      d.mediaType = 'application/vnd.docker.distribution.manifest.v2+json';
      d.config.mediaType = 'application/vnd.docker.container.image.v1+json';
      return d;
    };
    const INDEX = 'application/vnd.oci.image.index.v1+json';
    const DOCKER = 'application/vnd.docker.distribution.manifest.v2+json';
    const cases: [string, unknown, string][] = [
      ['index child digest', ((d) => ((d.manifests[0].digest = 'sha256:1234'), d))(idxDoc()), INDEX],
      ['index child size', ((d) => ((d.manifests[0].size = -5), d))(idxDoc()), INDEX],
      ['index child media type', ((d) => (delete d.manifests[0].mediaType, d))(idxDoc()), INDEX],
      ['subject digest', ((d) => ((d.subject = { mediaType: OCI, digest: 'md5:abc', size: 3 }), d))(JSON.parse(good.manifest.bytes.toString())), OCI],
      ['subject size', ((d) => ((d.subject = { mediaType: OCI, digest: good.manifest.digest, size: -1 }), d))(JSON.parse(good.manifest.bytes.toString())), OCI],
      ['Docker layer size', ((d) => ((d.layers[0].size = -1), d))(docker()), DOCKER],
      ['Docker layer digest', ((d) => ((d.layers[0].digest = 'sha256:zz'), d))(docker()), DOCKER],
      ['Docker image without layers', ((d) => ((d.layers = []), d))(docker()), DOCKER],
      ['Docker manifest list child media type', ((d) => ((d.mediaType = 'application/vnd.docker.distribution.manifest.list.v2+json'), (d.manifests[0].mediaType = 'not a type'), d))(idxDoc()), 'application/vnd.docker.distribution.manifest.list.v2+json'],
    ];
    for (const [what, doc, type] of cases) {
      const res = await put('edge-eu/library/alpine', 'desc', JSON.stringify(doc), type);
      expect(res.status, what).to.equal(400);
      expect((await json(res)).errors[0].code, what).to.equal('MANIFEST_INVALID');
    }
  });

  it('when a digest names an algorithm other than sha256 and sha512, then DIGEST_INVALID, never 5xx', async () => {
    const sha384 = `sha384:${'a'.repeat(96)}`;
    await expectError(await put('edge-eu/library/alpine', sha384, good.manifest.bytes), 400, 'DIGEST_INVALID');
    await expectError(await api(`/v2/edge-eu/library/alpine/blobs/${sha384}`), 400, 'DIGEST_INVALID');
    await expectError(await api(`/v2/edge-eu/library/alpine/blobs/uploads/?digest=blake3:${'b'.repeat(64)}`, { method: 'POST', body: 'x' }), 400, 'DIGEST_INVALID');
    await expectError(await api('/v2/edge-eu/library/alpine/blobs/uploads/?digest-algorithm=md5', { method: 'POST' }), 400, 'DIGEST_INVALID');
    const head = await api(`/v2/edge-eu/library/alpine/blobs/${sha384}`, { method: 'HEAD' });
    expect(head.status).to.equal(400);
  });

  it('when the last chunk of an upload does not hash to the digest given, then DIGEST_INVALID and the session is gone', async () => {
    const bytes = randomBytes(1000);
    const start = await api('/v2/edge-eu/library/alpine/blobs/uploads/', { method: 'POST' });
    const location = start.headers.get('location')!;
    expect((await api(location, { method: 'PATCH', headers: { 'Content-Range': '0-499' }, body: bytes.subarray(0, 500) })).status).to.equal(202);
    const wrongDigest = sha256(Buffer.concat([bytes.subarray(0, 999), Buffer.from('!')]));
    await expectError(await api(`${location}?digest=${wrongDigest}`, { method: 'PUT', headers: { 'Content-Range': '500-999' }, body: bytes.subarray(500) }), 400, 'DIGEST_INVALID');
    await expectError(await api(location), 404, 'BLOB_UPLOAD_UNKNOWN');
  });

  it('when a chunk carries fewer or more bytes than its Content-Range announces, then 416 and the upload stays where it was', async () => {
    const start = await api('/v2/edge-eu/library/alpine/blobs/uploads/', { method: 'POST' });
    const location = start.headers.get('location')!;
    await expectError(await api(location, { method: 'PATCH', headers: { 'Content-Range': '0-99' }, body: Buffer.alloc(50) }), 416, 'BLOB_UPLOAD_INVALID');
    await expectError(await api(location, { method: 'PATCH', headers: { 'Content-Range': '0-9' }, body: Buffer.alloc(20) }), 416, 'BLOB_UPLOAD_INVALID');
    const status = await api(location);
    expect(status.status).to.equal(204);
    expect(status.headers.get('range')).to.equal('0-0');
    const last = Buffer.alloc(30);
    await expectError(await api(`${location}?digest=${sha256(last)}`, { method: 'PUT', headers: { 'Content-Range': '0-9' }, body: last }), 416, 'BLOB_UPLOAD_INVALID');
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
