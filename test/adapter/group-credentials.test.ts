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

  it('when a credential is revoked, then a fresh endpoint no longer accepts it', async () => {
    const x = await create('edge-x');
    await satellite(['credentials', 'revoke', 'edge-x'], { DATABASE_URL: db.url });
    const fresh = await startTestEndpoint(db.url);
    try {
      expect((await client(fresh.url, basic(x.username, x.secret))('/v2/')).status).to.equal(401);
    } finally {
      await fresh.stop();
    }
  });
});
