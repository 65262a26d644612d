import { expect } from 'chai';
import type { RunningEndpoint } from '../../adapter/server.js';
import { createTestDatabase, type TestDatabase } from '../support/db.js';
import { basic, client, json, startTestEndpoint } from '../support/endpoint.js';
import { image } from '../support/oci.js';
import { satellite } from '../support/run.js';

describe('per-group endpoint credentials', function () {
  this.timeout(30_000);
  let db: TestDatabase;
  let endpoint: RunningEndpoint;
  before(async () => {
    db = await createTestDatabase();
    endpoint = await startTestEndpoint(db.url);
  });
  after(async () => {
    await endpoint?.stop();
    await db?.drop();
  });

  const create = async (group: string) => {
    const { stdout } = await satellite(['credentials', 'create', group], { DATABASE_URL: db.url });
    return { username: /Access ID:\s+(\S+)/.exec(stdout)![1]!, secret: /Access Secret:\s+(\S+)/.exec(stdout)![1]! };
  };
  const put = (auth: string, name: string) => {
    const img = image();
    return client(endpoint.url, auth)(`/v2/${name}/manifests/1`, { method: 'PUT', headers: { 'Content-Type': img.manifest.mediaType }, body: img.manifest.bytes });
  };

  it('when a group has its own credential, then it writes that group and gets 403 DENIED on any other', async () => {
    const eu = await create('edge-eu');
    const auth = basic(eu.username, eu.secret);
    expect((await client(endpoint.url, auth)('/v2/')).status).to.equal(200);
    expect((await put(auth, 'edge-eu/library/alpine')).status).to.equal(201);
    const other = await put(auth, 'edge-us/library/alpine');
    expect(other.status).to.equal(403);
    expect((await json(other)).errors[0].code).to.equal('DENIED');
    const peek = await client(endpoint.url, auth)('/v2/edge-us/library/alpine/manifests/1', { method: 'HEAD' });
    expect(peek.status).to.equal(403);
    const { rowCount } = await db.pool.query("SELECT 1 FROM artifacts WHERE group_name = 'edge-us'");
    expect(rowCount).to.equal(0);
    // The endpoint's own credential still writes every group.
    expect((await put(basic(), 'edge-us/library/alpine')).status).to.equal(201);
  });

  it('when the secret is wrong, then 401; the database holds only an scrypt hash of it', async () => {
    const ap = await create('edge-ap');
    expect((await put(basic(ap.username, `${ap.secret}x`), 'edge-ap/library/alpine')).status).to.equal(401);
    const { rows } = await db.pool.query("SELECT secret_hash FROM group_credentials WHERE group_name = 'edge-ap'");
    expect(rows[0].secret_hash).to.match(/^scrypt\$16384\$8\$1\$/).and.not.include(ap.secret);
  });

  it('when a credential is revoked, then every running replica refuses it at its next request', async () => {
    const x = await create('edge-x');
    const replica = await startTestEndpoint(db.url);
    try {
      const auth = basic(x.username, x.secret);
      // Both replicas have verified (and remembered) the credential.
      for (const e of [endpoint, replica]) expect((await client(e.url, auth)('/v2/')).status).to.equal(200);
      await satellite(['credentials', 'revoke', 'edge-x'], { DATABASE_URL: db.url });
      for (const e of [endpoint, replica]) {
        expect((await client(e.url, auth)('/v2/')).status, e.url).to.equal(401);
        expect((await put(auth, 'edge-x/library/alpine')).status).to.equal(401);
      }
      // A replaced secret: the old one stops at once, the new one works.
      const y1 = await create('edge-y');
      expect((await client(replica.url, basic(y1.username, y1.secret))('/v2/')).status).to.equal(200);
      const y2 = await create('edge-y');
      expect((await client(replica.url, basic(y1.username, y1.secret))('/v2/')).status).to.equal(401);
      expect((await client(replica.url, basic(y2.username, y2.secret))('/v2/')).status).to.equal(200);
    } finally {
      await replica.stop();
    }
  });

  it('when a credential of group "edge" names "edge-eu" (or any other group) on any route, then 403 DENIED; its own group passes', async () => {
    const edge = await create('edge');
    const api = client(endpoint.url, basic(edge.username, edge.secret));
    const img = image();
    // A real upload session of edge-eu, opened with the endpoint credential.
    const opened = await client(endpoint.url)('/v2/edge-eu/library/alpine/blobs/uploads/', { method: 'POST' });
    const session = opened.headers.get('location')!;
    const d = img.config.digest;
    const denied: [string, string][] = [
      ['GET', '/v2/edge-eu/library/alpine/tags/list'],
      ['GET', '/v2/edge-eu/library/alpine/manifests/1'], ['HEAD', '/v2/edge-eu/library/alpine/manifests/1'],
      ['PUT', '/v2/edge-eu/library/alpine/manifests/1'], ['DELETE', `/v2/edge-eu/library/alpine/manifests/${img.manifest.digest}`],
      ['POST', '/v2/edge-eu/library/alpine/blobs/uploads/'], ['POST', `/v2/edge-eu/library/alpine/blobs/uploads/?digest=${d}`],
      ['POST', `/v2/edge/library/alpine/blobs/uploads/?mount=${d}&from=edge-eu/library/alpine`],
      ['GET', session], ['PATCH', session], ['PUT', `${session}?digest=${d}`], ['DELETE', session],
      ['HEAD', `/v2/edge-eu/library/alpine/blobs/${d}`], ['GET', `/v2/edge-eu/library/alpine/blobs/${d}`], ['DELETE', `/v2/edge-eu/library/alpine/blobs/${d}`],
      ['GET', `/v2/edge-eu/library/alpine/referrers/${img.manifest.digest}`],
      ['GET', `/v2/edgex/library/alpine/manifests/1`], ['GET', `/v2/e/library/alpine/manifests/1`],
    ];
    for (const [method, path] of denied) {
      const res = await api(path, { method, headers: { 'Content-Type': img.manifest.mediaType }, body: method === 'PUT' || method === 'PATCH' ? img.manifest.bytes : undefined });
      expect(res.status, `${method} ${path}`).to.equal(403);
      if (method !== 'HEAD') expect((await json(res)).errors[0].code, `${method} ${path}`).to.equal('DENIED');
    }
    expect((await client(endpoint.url)(session)).status, 'the other group\'s session is untouched').to.equal(204);
    expect((await put(basic(edge.username, edge.secret), 'edge/library/alpine')).status).to.equal(201);
    expect((await api(`/v2/edge/library/alpine/blobs/${d}`, { method: 'HEAD' })).status).to.equal(200);
    expect((await api('/v2/edge/library/alpine/blobs/uploads/', { method: 'POST' })).status).to.equal(202);
  });
});
