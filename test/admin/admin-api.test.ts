import { expect } from 'chai';
import { createHarborClient, HarborSetup } from '@harbor-api/client';
import { adminApiDocument } from '../../adapter/admin/openapi.js';
import { adminRouter } from '../../adapter/admin/router.js';
import { basic, PASSWORD, USERNAME } from '../support/endpoint.js';
import { ADMIN, basicAuth, HARBOR_ADMIN, startAdminHarness, type AdminHarness } from '../support/admin.js';

type Doc = { paths: Record<string, Record<string, { security?: unknown[] }>> };

describe('the admin API: one document, one error format, one credential', function () {
  this.timeout(60_000);
  let h: AdminHarness;
  afterEach(async () => {
    if (h) expect(h.harbor.violations, 'requests that break Harbor\'s spec').to.deep.equal([]);
    await h?.close();
  });

  it('when the OpenAPI document is compared with the route table, then each documents the other exactly', async () => {
    h = await startAdminHarness({ STATE_LAYOUT: 'harbor-satellite' });
    const served = await h.api('/api/v1/openapi.json', { auth: null });
    expect(served.status).to.equal(200);
    expect(served.body).to.deep.equal(adminApiDocument());
    const doc = served.body as Doc;
    const documented = Object.entries(doc.paths).flatMap(([path, item]) =>
      Object.keys(item).filter((m) => m !== 'parameters').map((m) => `${m.toUpperCase()} ${path}`)).sort();
    const router = adminRouter({ ctx: h.ctx, admin: ADMIN, authFailureLimit: 10, registrationRateLimit: 10, tombstoneRetentionHours: 1 }) as unknown as { table: [string, string][] };
    const routed = router.table.map(([m, p]) => `${m.toUpperCase()} ${p.replace(/:(\w+)/g, '{$1}')}`);
    expect(documented).to.deep.equal([...routed, 'GET /api/v1/openapi.json'].sort());
  });

  it('when each documented operation is called, then its own route answers, with the answer that route gives (never express\'s "not found")', async () => {
    h = await startAdminHarness({ STATE_LAYOUT: 'harbor-satellite' });
    const doc = adminApiDocument() as Doc;
    // What each route answers an admin for an empty body and names that do not exist: the
    // route's own checks, so a missing route (express's HTML 404, or another route's) fails.
    const group404 = [404, 'NOT_FOUND', 'group nothing-here does not exist'];
    const satellite404 = [404, 'NOT_FOUND', 'satellite nothing-here does not exist'];
    const robot401 = [401, 'UNAUTHORIZED', 'a satellite reports with its robot credential (HTTP Basic)'];
    const expected: Record<string, (string | number)[]> = {
      'GET /api/v1/openapi.json': [200],
      'GET /api/v1/groups': [200],
      'POST /api/v1/groups': [400, 'BAD_REQUEST', "name: must have required property 'name'"],
      'POST /api/v1/groups/adopt': [400, 'BAD_REQUEST', "policy: must have required property 'policy'"],
      'GET /api/v1/groups/{name}': group404,
      'PATCH /api/v1/groups/{name}': [400, 'BAD_REQUEST', 'body: must NOT have fewer than 1 properties'],
      'DELETE /api/v1/groups/{name}': group404,
      'POST /api/v1/groups/{name}/replicate': group404,
      'POST /api/v1/groups/{name}/reconcile': group404,
      'GET /api/v1/satellites': [200],
      'POST /api/v1/satellites': [400, 'BAD_REQUEST', "name: must have required property 'name'"],
      'POST /api/v1/satellites/register': [400, 'BAD_REQUEST', "token: must have required property 'token'"],
      'GET /api/v1/satellites/{name}': satellite404,
      'PATCH /api/v1/satellites/{name}': [400, 'BAD_REQUEST', "groups: must have required property 'groups'"],
      'DELETE /api/v1/satellites/{name}': satellite404,
      'POST /api/v1/satellites/{name}/token': satellite404,
      'POST /api/v1/satellites/{name}/rotate': satellite404,
      'POST /api/v1/satellites/{name}/status': robot401,
      'POST /api/v1/webhooks/harbor': [401, 'UNAUTHORIZED', 'the Authorization header is not the secret of any webhook policy this service configured'],
      'GET /satellites/ztr/{token}': [401, 'UNAUTHORIZED', 'the registration token is unknown, used, expired or revoked'],
      'POST /satellites/sync': robot401,
      'GET /api/v1/fleet': [200],
      'GET /api/v1/groups/{name}/versions': group404,
      'GET /api/v1/groups/{name}/diff': [400, 'BAD_REQUEST', "from: must have required property 'from'"],
      'GET /api/v1/satellites/{name}/report': satellite404,
    };
    const seen: string[] = [];
    for (const [path, item] of Object.entries(doc.paths)) {
      for (const method of Object.keys(item).filter((m) => m !== 'parameters')) {
        const op = `${method.toUpperCase()} ${path}`;
        seen.push(op);
        expect(expected, `an expected answer for ${op}`).to.have.property(op);
        const [status, code, message] = expected[op]!;
        const url = path.replace('{name}', 'nothing-here').replace('{token}', 'sat_unknown');
        const res = await h.api(url, { method: method.toUpperCase(), ...(method === 'get' ? {} : { body: {} }) });
        expect(res.status, `${op} answered ${res.status} ${JSON.stringify(res.body)}`).to.equal(status);
        if (code !== undefined) expect(res.body, op).to.deep.equal({ errors: [{ code, message, ...(String(message).includes('required property') ? { field: String(message).split(':')[0] } : {}), ...(String(message).startsWith('body:') ? { field: 'body' } : {}) }] });
      }
    }
    expect(seen.sort()).to.deep.equal(Object.keys(expected).sort());
  });

  it('when a request has no or wrong credentials, then 401 with a Basic challenge, and the endpoint\'s secret never opens it', async () => {
    h = await startAdminHarness();
    for (const auth of [null, basicAuth(ADMIN.username, 'wrong-password-123'), basic(USERNAME, PASSWORD)]) {
      const res = await h.api('/api/v1/groups', { auth });
      expect(res.status).to.equal(401);
      expect(res.headers.get('www-authenticate')).to.match(/^Basic realm=/);
      expect(res.body).to.deep.equal({ errors: [{ code: 'UNAUTHORIZED', message: res.body.errors[0].message }] });
    }
    // Nothing about the input is answered to a stranger: a bad body still gets 401.
    expect((await h.api('/api/v1/groups', { method: 'POST', auth: null, body: { name: 'NOPE' } })).status).to.equal(401);
    expect((await h.api('/api/v1/groups')).status).to.equal(200);
  });

  it('when ADMIN_USERNAME / ADMIN_PASSWORD are not configured, then the admin API is not served (503 naming them), whatever the credential', async () => {
    h = await startAdminHarness({}, { admin: false });
    for (const auth of [null, basic(USERNAME, PASSWORD)]) {
      const res = await h.api('/api/v1/groups', { auth });
      expect(res.status).to.equal(503);
      expect(res.body.errors[0].message).to.include('ADMIN_USERNAME').and.include('ADMIN_PASSWORD');
    }
  });

  it('when the input is bad, then 400 names the field, in the one error format, and nothing changes', async () => {
    h = await startAdminHarness();
    h.harbor.addArtifact({ repository: 'library/nginx', digest: `sha256:${'a'.repeat(64)}`, tags: ['1'] });
    const before = await h.db.dump();
    const calls = h.harbor.calls.length;
    const cases: [unknown, string][] = [
      [{ name: 'Edge EU', filters: [] }, 'name'],
      [{ name: 'edge-eu' }, 'filters'],
      [{ name: 'edge-eu', filters: [{ type: 'nope', value: 'x' }] }, 'filters[0].type'],
      [{ name: 'edge-eu', filters: [{ type: 'name', value: 'library/**' }], extra: true }, 'extra'],
      [{ name: 'edge-eu', filters: [{ type: 'label', value: 'not-a-list' }] }, 'filters[0].value'],
      [{ name: 'edge-eu', filters: [], trigger: { type: 'scheduled' } }, 'trigger.trigger_settings.cron'],
      ['{"name": "edge-eu", "filters": [', 'body'],
    ];
    for (const [body, field] of cases) {
      const res = await h.api('/api/v1/groups', { method: 'POST', body });
      expect(res.status, JSON.stringify(body)).to.equal(400);
      expect(res.body.errors[0]).to.include({ code: 'BAD_REQUEST', field });
      expect(res.body.errors[0].message).to.include(field);
    }
    const sat = await h.api('/api/v1/satellites', { method: 'POST', body: { name: 'store-1', groups: ['no-such-group'] } });
    expect(sat.status).to.equal(400);
    expect(sat.body.errors[0]).to.include({ field: 'groups[0]' });
    expect(await h.db.dump()).to.equal(before);
    expect(h.harbor.calls.slice(calls), 'Harbor was not called for bad input').to.deep.equal([]);
  });

  it('when Harbor refuses a change, then its own message is passed on with its status; when it is unreachable, 502 and nothing is recorded', async () => {
    h = await startAdminHarness();
    const harbor = new HarborSetup(createHarborClient({ url: h.harbor.url, ...HARBOR_ADMIN }));
    const registryId = await harbor.ensureRegistry({ name: 'elsewhere', url: 'http://elsewhere:8080', accessKey: 'a', accessSecret: 'b' });
    await harbor.ensureGroupPolicy({ group: 'edge-flat', registryId, filters: [] });
    h.harbor.policies[0]!.dest_namespace_replace_count = 1;
    h.harbor.registries.splice(0); // the rule's registry is gone: Harbor refuses to update the rule
    const refused = await h.api('/api/v1/groups/adopt', { method: 'POST', body: { policy: 'satellite-edge-flat', fix: true } });
    expect(refused.status).to.equal(400);
    expect(refused.body.errors[0].code).to.equal('HARBOR_ERROR');
    expect(refused.body.errors[0].message).to.include('destination registry not found');

    const before = await h.db.dump();
    await h.harbor.close(); // Harbor goes away
    const down = await h.api('/api/v1/groups', { method: 'POST', body: { name: 'edge-eu', filters: [{ type: 'name', value: 'library/**' }] } });
    expect(down.status).to.equal(502);
    expect(down.body.errors[0].message).to.match(/Harbor is unreachable/);
    expect(await h.db.dump()).to.equal(before);
    h.harbor.violations.splice(0);
  });
});
