import { expect } from 'chai';
import { pino } from 'pino';
import type { RunningEndpoint } from '../../adapter/server.js';
import { createTestDatabase, type TestDatabase } from '../support/db.js';
import { basic, client, startTestEndpoint } from '../support/endpoint.js';
import { image } from '../support/oci.js';

// Issue 11 item 5: at `info` the endpoint logs what an operator needs (writes, refusals,
// failures), not a line per blob HEAD of a healthy replication.

describe('what the endpoint logs at info', () => {
  let db: TestDatabase;
  let endpoint: RunningEndpoint;
  const lines: { level: number; msg: string; method?: string; path?: string; status?: number }[] = [];

  before(async () => {
    db = await createTestDatabase();
    const log = pino({ level: 'info' }, { write: (l: string) => void lines.push(JSON.parse(l)) });
    endpoint = await startTestEndpoint(db.url, 1000, undefined, { log });
  });
  after(async () => {
    await endpoint?.stop();
    await db?.drop();
  });

  it('when Harbor replicates an image, then only the manifest PUT is logged, and a failed login and a refused manifest still are', async () => {
    const harbor = client(endpoint.url);
    const repo = 'edge-eu/library/alpine';
    const img = image();
    // A healthy replication: challenge, ping, existence check, blob HEADs, the PUT, a read.
    expect((await fetch(`${endpoint.url}/v2/`)).status).to.equal(401);
    expect((await harbor('/v2/')).status).to.equal(200);
    expect((await harbor(`/v2/${repo}/manifests/3.20`, { method: 'HEAD' })).status).to.equal(404);
    for (const b of [img.config, ...img.layers]) expect((await harbor(`/v2/${repo}/blobs/${b.digest}`, { method: 'HEAD' })).status).to.equal(200);
    const put = await harbor(`/v2/${repo}/manifests/3.20`, { method: 'PUT', headers: { 'Content-Type': img.manifest.mediaType }, body: img.manifest.bytes });
    expect(put.status).to.equal(201);
    expect((await harbor(`/v2/${repo}/manifests/3.20`)).status).to.equal(200);
    // What an operator must see.
    expect((await client(endpoint.url, basic('harbor', 'not-the-secret-at-all'))('/v2/')).status).to.equal(401);
    const bad = await harbor(`/v2/${repo}/manifests/bad`, { method: 'PUT', headers: { 'Content-Type': img.manifest.mediaType }, body: '{"schemaVersion":2' });
    expect(bad.status).to.equal(400);
    await new Promise((r) => setTimeout(r, 50)); // the last 'finish' events

    const logged = lines.filter((l) => l.msg === 'request').map((l) => `${l.method} ${l.path} ${l.status}`);
    expect(logged).to.deep.equal([
      `PUT /v2/${repo}/manifests/3.20 201`,
      'GET /v2/ 401',
      `PUT /v2/${repo}/manifests/bad 400`,
    ]);
  });
});
