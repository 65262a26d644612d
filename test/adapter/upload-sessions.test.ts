import { expect } from 'chai';
import type { RunningEndpoint } from '../../adapter/server.js';
import { CredentialStore } from '../../core/store/credential-store.js';
import { createTestDatabase, type TestDatabase } from '../support/db.js';
import { basic, client, json, startTestEndpoint } from '../support/endpoint.js';

describe('bounded blob upload sessions', () => {
  let db: TestDatabase;
  let endpoint: RunningEndpoint;
  const LIMIT = 5;
  const start = (api: ReturnType<typeof client>, name = 'edge-eu/library/alpine') => api(`/v2/${name}/blobs/uploads/`, { method: 'POST' });

  before(async () => {
    db = await createTestDatabase();
    endpoint = await startTestEndpoint(db.url, 1000, undefined, { uploadLimits: { maxOpenPerOwner: LIMIT, idleMinutes: 10 } });
  });
  after(async () => {
    await endpoint?.stop();
    await db?.drop();
  });

  const sessions = async () => (await db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM uploads')).rows[0]!.n;

  it('when one credential opens more sessions than the cap, then 429 TOOMANYREQUESTS past it, others still open theirs, and closing one frees a place', async () => {
    const api = client(endpoint.url);
    const opened = await Promise.all(Array.from({ length: LIMIT * 3 }, () => start(api)));
    const created = opened.filter((r) => r.status === 202);
    const refused = opened.filter((r) => r.status === 429);
    expect(created).to.have.length(LIMIT);
    expect(refused).to.have.length(LIMIT * 2);
    expect((await json(refused[0]!)).errors[0].code).to.equal('TOOMANYREQUESTS');
    expect(Number(refused[0]!.headers.get('retry-after'))).to.be.greaterThan(0);
    expect(await sessions()).to.equal(LIMIT);

    const { username, secret } = await new CredentialStore(db.pool).create('edge-eu');
    expect((await start(client(endpoint.url, basic(username, secret)))).status, 'another credential has its own cap').to.equal(202);

    expect((await api(created[0]!.headers.get('location')!, { method: 'DELETE' })).status).to.equal(204);
    expect((await start(api)).status).to.equal(202);
  });

  it('when a session stays idle longer than the idle limit, then it is gone and no longer counts', async () => {
    await db.pool.query('DELETE FROM uploads');
    const api = client(endpoint.url);
    const first = await start(api);
    const location = first.headers.get('location')!;
    for (let i = 1; i < LIMIT; i++) expect((await start(api)).status).to.equal(202);
    expect((await start(api)).status).to.equal(429);
    await db.pool.query("UPDATE uploads SET updated_at = now() - interval '11 minutes'");
    const status = await api(location);
    expect(status.status).to.equal(404);
    expect((await json(status)).errors[0].code).to.equal('BLOB_UPLOAD_UNKNOWN');
    expect((await start(api)).status, 'idle sessions no longer count').to.equal(202);
    expect(await sessions(), 'and they were deleted').to.equal(1);
  });
});
