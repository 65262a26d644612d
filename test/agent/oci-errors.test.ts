import { expect } from 'chai';
import type { RunningEndpoint } from '../../adapter/server.js';
import { pushImage, useAgentWorld } from '../support/agent.js';
import { createTestDatabase, type TestDatabase } from '../support/db.js';
import { client, startTestEndpoint } from '../support/endpoint.js';
import { image, sha256, type Image } from '../support/oci.js';

// Both /v2 servers, the endpoint's and the agent's, answer a request they cannot serve from
// one catalog (core/oci/errors.ts): the spec's status and code, the {"errors":[…]} envelope,
// the API version header.

interface Answer {
  status: number;
  headers: Headers;
  body: string;
}

async function ask(base: string, path: string, init: RequestInit = {}): Promise<Answer> {
  const res = await fetch(base + path, init);
  return { status: res.status, headers: res.headers, body: await res.text() };
}

/** `v2`: the answer is the registry API's, so it names the API version (a path outside it need not). */
function expectEnvelope(a: Answer, status: number, code: string, what: string, v2 = true): { code: string; message: string; detail?: unknown } {
  expect(a.status, what).to.equal(status);
  expect(a.headers.get('content-type'), what).to.equal('application/json; charset=utf-8');
  if (v2) expect(a.headers.get('docker-distribution-api-version'), what).to.equal('registry/2.0');
  const body = JSON.parse(a.body) as { errors: { code: string; message: string; detail?: unknown }[] };
  expect(Object.keys(body), what).to.deep.equal(['errors']);
  expect(body.errors, what).to.have.length(1);
  expect(body.errors[0]!.code, what).to.equal(code);
  expect(body.errors[0]!.message, what).to.be.a('string').and.not.empty;
  return body.errors[0]!;
}

describe('the OCI error answers of both /v2 servers', function () {
  this.timeout(60_000);
  const world = useAgentWorld();
  let db: TestDatabase | undefined;
  let endpoint: RunningEndpoint | undefined;

  afterEach(async () => {
    await endpoint?.stop();
    await db?.drop();
    endpoint = undefined;
    db = undefined;
  });

  const agentServing = async (img: Image) => {
    await pushImage(world.client(), 'library/app', img);
    await world.record('edge', 'library/app', img, '1');
    await world.publish('edge');
    return world.start(await world.config());
  };

  it('when a runtime asks the agent for what it does not serve or cannot do, then each answer has the catalog\'s status and code in the spec\'s envelope', async () => {
    const img = image();
    const agent = await agentServing(img);
    expect((await agent.firstSync).failedImages).to.equal(0);
    const layer = img.layers[0]!;
    const unknown = sha256(Buffer.from('nothing serves this'));

    const missing = expectEnvelope(await ask(agent.url, '/v2/library/app/manifests/2'), 404, 'MANIFEST_UNKNOWN', 'an unknown tag');
    expect(missing.detail).to.deep.equal({ name: 'library/app', reference: '2' });
    expectEnvelope(await ask(agent.url, `/v2/library/app/blobs/${unknown}`), 404, 'BLOB_UNKNOWN', 'an unknown blob');
    expectEnvelope(await ask(agent.url, '/v2/library/app/blobs/sha256:abc'), 400, 'DIGEST_INVALID', 'a malformed digest');
    expectEnvelope(await ask(agent.url, '/v2/Library/App/tags/list'), 400, 'NAME_INVALID', 'a name outside the grammar');
    expectEnvelope(await ask(agent.url, '/v2/library/other/tags/list'), 404, 'NAME_UNKNOWN', 'a repository not served');
    expectEnvelope(await ask(agent.url, '/elsewhere'), 404, 'NOT_FOUND', 'a path outside the API');

    const put = await ask(agent.url, '/v2/library/app/manifests/1', { method: 'PUT', body: img.manifest.bytes });
    expectEnvelope(put, 405, 'UNSUPPORTED', 'a write');
    expect(put.headers.get('allow')).to.equal('GET, HEAD');

    const range = await ask(agent.url, `/v2/library/app/blobs/${layer.digest}`, { headers: { Range: `bytes=${layer.size}-` } });
    expectEnvelope(range, 416, 'BLOB_UNKNOWN', 'a range past the blob');
    expect(range.headers.get('content-range')).to.equal(`bytes */${layer.size}`);

    const head = await ask(agent.url, '/v2/library/app/manifests/2', { method: 'HEAD' });
    expect(head.status).to.equal(404);
    expect(head.headers.get('docker-distribution-api-version')).to.equal('registry/2.0');
    expect(head.headers.get('content-type')).to.equal('application/json; charset=utf-8');
  });

  it('when the endpoint and the agent are asked for a manifest neither holds, or a path outside the API, then they answer alike', async () => {
    db = await createTestDatabase();
    endpoint = await startTestEndpoint(db.url);
    const agent = await agentServing(image());
    await agent.firstSync;
    const auth = client(endpoint.url);
    const fromEndpoint = async (path: string, init: RequestInit = {}): Promise<Answer> => {
      const res = await auth(path, init as RequestInit & { headers?: Record<string, string> });
      return { status: res.status, headers: res.headers, body: await res.text() };
    };
    for (const [path, status, code] of [['/v2/edge/library/app/manifests/9', 404, 'MANIFEST_UNKNOWN'], ['/elsewhere', 404, 'NOT_FOUND']] as const) {
      const agentPath = path.replace('/v2/edge/', '/v2/');
      const v2 = path.startsWith('/v2/');
      expectEnvelope(await fromEndpoint(path), status, code, `the endpoint: ${path}`, v2);
      expectEnvelope(await ask(agent.url, agentPath), status, code, `the agent: ${agentPath}`, v2);
    }
  });
});
