import { expect } from 'chai';
import type { RunningEndpoint } from '../../adapter/server.js';
import { createTestDatabase, type TestDatabase } from '../support/db.js';
import { client, json, startTestEndpoint } from '../support/endpoint.js';
import { image } from '../support/oci.js';

describe('a 201 means committed', () => {
  let db: TestDatabase;
  let endpoint: RunningEndpoint;
  before(async () => {
    db = await createTestDatabase();
    endpoint = await startTestEndpoint(db.url);
    // The real database refusing writes to one group, as a full disk would (SQLSTATE 53100).
    await db.pool.query(`
      CREATE FUNCTION refuse_full() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF NEW.group_name = 'edge-full' THEN RAISE EXCEPTION 'could not extend file' USING ERRCODE = '53100'; END IF;
        RETURN NEW;
      END $$;
      CREATE TRIGGER refuse_full BEFORE INSERT ON outbox FOR EACH ROW EXECUTE FUNCTION refuse_full();`);
  });
  after(async () => {
    await endpoint?.stop();
    await db?.drop();
  });

  it('when the database cannot commit the manifest, then the answer is 503 and never 201, and nothing of it is recorded', async () => {
    const img = image();
    const res = await client(endpoint.url)('/v2/edge-full/library/alpine/manifests/1', { method: 'PUT', headers: { 'Content-Type': img.manifest.mediaType }, body: img.manifest.bytes });
    expect(res.status).to.equal(503);
    expect((await json(res)).errors[0].code).to.equal('UNAVAILABLE');
    expect(Number(res.headers.get('retry-after'))).to.be.greaterThan(0);
    const { rowCount } = await db.pool.query("SELECT 1 FROM artifacts WHERE group_name = 'edge-full'");
    expect(rowCount, 'the statement was atomic: no record without its outbox row').to.equal(0);
    const ok = await client(endpoint.url)('/v2/edge-eu/library/alpine/manifests/1', { method: 'PUT', headers: { 'Content-Type': img.manifest.mediaType }, body: img.manifest.bytes });
    expect(ok.status).to.equal(201);
  });
});
