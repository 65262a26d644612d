import { expect } from 'chai';
import { createHarborClient, HarborSetup } from '@harbor-api/client';
import { ArtifactStore } from '../../core/store/artifact-store.js';
import { buildState } from '../../core/state/render.js';
import { sha256 as hash } from '../../harbor/tokens.js';
import { image } from '../support/oci.js';
import { record } from '../support/worker.js';
import { HARBOR_ADMIN, startAdminHarness, type AdminHarness } from '../support/admin.js';
import { satellite } from '../support/run.js';

const NGINX = `sha256:${'1'.repeat(64)}`;

describe('groups in Harbor through the admin API', function () {
  this.timeout(60_000);
  let h: AdminHarness;
  beforeEach(async () => {
    h = await startAdminHarness();
    h.harbor.addArtifact({ repository: 'library/nginx', digest: NGINX, tags: ['1.27'] });
    h.harbor.addArtifact({ repository: 'tools/busybox', digest: `sha256:${'2'.repeat(64)}`, tags: ['1'] });
  });
  afterEach(async () => {
    expect(h.harbor.violations, 'requests that break Harbor\'s spec').to.deep.equal([]);
    await h.close();
  });

  const create = (body: unknown) => h.api('/api/v1/groups', { method: 'POST', body });

  it('when a group is created, then Harbor gets the endpoint, the state project, a No-Flattening rule and a webhook with a secret kept only hashed', async () => {
    const res = await create({ name: 'edge-eu', filters: [{ type: 'name', value: 'library/**' }, { type: 'tag', value: '1.*' }], trigger: { type: 'event_based' } });
    expect(res.status).to.equal(201);
    expect(h.harbor.registries).to.have.length(1);
    expect(h.harbor.registries[0]).to.deep.include({ name: 'satellite', type: 'docker-registry', url: h.url, insecure: true });
    expect(h.harbor.projects.map((p) => p.name)).to.include('satellite');
    expect(h.harbor.policies).to.have.length(1);
    expect(h.harbor.policies[0]).to.deep.include({
      id: res.body.group.policyId, name: 'satellite-edge-eu', dest_namespace: 'edge-eu', dest_namespace_replace_count: 0,
      replicate_deletion: true, enabled: true, trigger: { type: 'event_based' },
      filters: [{ type: 'name', value: 'library/**' }, { type: 'tag', value: '1.*' }],
    });
    // A webhook on the source project only (not tools), with a random secret as its auth header.
    expect(h.harbor.webhooks).to.have.length(1);
    const hook = h.harbor.webhooks[0]!;
    expect(hook.project_id).to.equal(h.harbor.projects.find((p) => p.name === 'library')!.project_id);
    expect(hook.event_types).to.deep.equal(['REPLICATION', 'DELETE_ARTIFACT']);
    const target = (hook.targets as { address: string; auth_header: string }[])[0]!;
    expect(target.address).to.equal(`${h.url}/api/v1/webhooks/harbor`);
    expect(target.auth_header).to.match(/^whs_[A-Za-z0-9_-]{40,}$/);
    const dump = await h.db.dump();
    expect(dump, 'the secret is not stored in clear').to.not.include(target.auth_header);
    const { rows } = await h.db.pool.query('SELECT project, secret_hash FROM webhook_policies');
    expect(rows).to.deep.equal([{ project: 'library', secret_hash: hash(target.auth_header) }]);
    expect(res.body.group).to.deep.include({ name: 'edge-eu', policyId: h.harbor.policies[0]!.id, projects: ['library'], satellites: 0, state: null, lastExecution: null });
  });

  it('when the same group is created twice, then nothing in Harbor is duplicated; with other filters, 409 and nothing changes', async () => {
    const body = { name: 'edge-eu', filters: [{ type: 'name', value: 'library/**' }] };
    expect((await create(body)).status).to.equal(201);
    const secret = (h.harbor.webhooks[0]!.targets as { auth_header: string }[])[0]!.auth_header;
    const again = await create(body);
    expect(again.status).to.equal(200);
    expect(again.body.created).to.equal(false);
    expect([h.harbor.registries.length, h.harbor.policies.length, h.harbor.webhooks.length]).to.deep.equal([1, 1, 1]);
    expect((h.harbor.webhooks[0]!.targets as { auth_header: string }[])[0]!.auth_header, 'the secret stays').to.equal(secret);
    const other = await create({ name: 'edge-eu', filters: [{ type: 'name', value: 'tools/**' }] });
    expect(other.status).to.equal(409);
    expect(h.harbor.policies[0]!.filters).to.deep.equal(body.filters);
  });

  it('when a group is listed after a replication, then it shows its rule, the last execution, the published state and its satellites', async () => {
    const created = await create({ name: 'edge-eu', filters: [{ type: 'name', value: 'library/**' }], replicate: true });
    expect(created.body.executionId).to.be.a('number');
    expect(h.harbor.executions[0]).to.deep.include({ id: created.body.executionId, policy_id: created.body.group.policyId, trigger: 'manual' });
    await h.db.pool.query(`INSERT INTO state_versions (group_name, version, content_digest, status, layout, repository, artifact_count, manifest_digest, published_at)
      VALUES ('edge-eu', 3, 'sha256:x', 'published', 'oci', 'r', 0, $1, now())`, [`sha256:${'c'.repeat(64)}`]);
    await h.api('/api/v1/satellites', { method: 'POST', body: { name: 'store-1', groups: ['edge-eu'] } });
    const list = await h.api('/api/v1/groups');
    expect(list.status).to.equal(200);
    expect(list.body).to.have.length(1);
    expect(list.body[0]).to.deep.include({ name: 'edge-eu', policyId: created.body.group.policyId, satellites: 1 });
    expect(list.body[0].state).to.deep.include({ version: 3, digest: `sha256:${'c'.repeat(64)}` });
    expect(list.body[0].lastExecution).to.deep.include({ id: created.body.executionId, status: 'InProgress', trigger: 'manual' });
    const again = await h.api('/api/v1/groups/edge-eu/replicate', { method: 'POST' });
    expect(again.status).to.equal(202);
    expect(h.harbor.executions).to.have.length(2);
  });

  it('when a group\'s filters and trigger are changed, then its rule in Harbor changes and a new source project gets the webhook', async () => {
    await create({ name: 'edge-eu', filters: [{ type: 'name', value: 'library/**' }] });
    const res = await h.api('/api/v1/groups/edge-eu', {
      method: 'PATCH', body: { filters: [{ type: 'name', value: '{library,tools}/**' }], trigger: { type: 'scheduled', trigger_settings: { cron: '0 0 * * * *' } } },
    });
    expect(res.status).to.equal(200);
    expect(h.harbor.policies).to.have.length(1);
    expect(h.harbor.policies[0]).to.deep.include({
      filters: [{ type: 'name', value: '{library,tools}/**' }], trigger: { type: 'scheduled', trigger_settings: { cron: '0 0 * * * *' } }, dest_namespace_replace_count: 0,
    });
    expect(res.body.projects).to.deep.equal(['library', 'tools']);
    expect(h.harbor.webhooks).to.have.length(2);
  });

  it('when a group is deleted, then its rule leaves Harbor and every image it listed becomes a tombstone for its satellites', async () => {
    await create({ name: 'edge-eu', filters: [{ type: 'name', value: 'library/**' }] });
    const a = image();
    const b = image();
    await record(h.db.pool, 'edge-eu', 'library/nginx', a, '1.27');
    await record(h.db.pool, 'edge-eu', 'library/redis', b, '7');
    await h.db.pool.query('DELETE FROM outbox');
    const res = await h.api('/api/v1/groups/edge-eu', { method: 'DELETE' });
    expect(res.status).to.equal(200);
    expect(res.body).to.deep.equal({ tombstoned: 2 });
    expect(h.harbor.policies).to.deep.equal([]);
    expect(h.harbor.webhooks, 'no group needs the project\'s webhook any more').to.deep.equal([]);
    const state = buildState('edge-eu', 'r', await new ArtifactStore(h.db.pool).listGroup('edge-eu', 24));
    expect(state.artifacts.map((x) => [x.repository, x.deleted, x.tag])).to.deep.equal([['library/nginx', true, ['1.27']], ['library/redis', true, ['7']]]);
    expect((await h.db.pool.query('SELECT group_name FROM outbox')).rows).to.deep.equal([{ group_name: 'edge-eu' }]);
    expect((await h.db.pool.query('SELECT job, data FROM harbor_outbox')).rows).to.deep.equal([{ job: 'sync-robots', data: { group: 'edge-eu' } }]);
    expect((await h.api('/api/v1/groups/edge-eu')).status).to.equal(404);
  });

  describe('lifecycle: resuming, correcting, refusing', () => {
    for (const step of ['createReplicationPolicy', 'CreateWebhookPolicyOfProject']) {
      it(`when creating a group fails at ${step} once, then a retry completes it with nothing in Harbor twice`, async () => {
        const body = { name: 'edge-eu', filters: [{ type: 'name', value: 'library/**' }] };
        h.harbor.failNext(step, 500);
        const failed = await create(body);
        expect(failed.status).to.equal(502);
        expect(failed.body.errors[0].message).to.include(step);
        expect((await h.api('/api/v1/groups/edge-eu')).status, 'not recorded half-made').to.equal(404);
        const retried = await create(body);
        expect(retried.status, JSON.stringify(retried.body)).to.equal(201);
        expect(h.harbor.registries).to.have.length(1);
        expect(h.harbor.projects.filter((p) => p.name === 'satellite')).to.have.length(1);
        expect(h.harbor.policies).to.have.length(1);
        expect(h.harbor.policies[0]).to.deep.include({ name: 'satellite-edge-eu', dest_namespace: 'edge-eu', dest_namespace_replace_count: 0 });
        expect(h.harbor.webhooks).to.have.length(1);
        expect(retried.body.group).to.deep.include({ policyId: h.harbor.policies[0]!.id, projects: ['library'] });
      });
    }

    it('when Harbor\'s endpoint for this service has a stale URL or secret, then the next group change puts back ENDPOINT_URL and ENDPOINT_PASSWORD', async () => {
      await create({ name: 'edge-eu', filters: [{ type: 'name', value: 'library/**' }] });
      const registry = h.harbor.registries[0]!;
      expect(h.harbor.registrySecrets.get(registry.id as number)).to.equal(h.config.endpointPassword);
      registry.url = 'http://old-address.example:8080';
      registry.insecure = false;
      h.harbor.registrySecrets.set(registry.id as number, 'a-secret-since-rotated');
      expect((await create({ name: 'edge-us', filters: [{ type: 'name', value: 'tools/**' }] })).status).to.equal(201);
      expect(h.harbor.registries).to.have.length(1);
      expect(h.harbor.registries[0]).to.deep.include({ id: registry.id, url: h.url, insecure: true });
      expect(h.harbor.registrySecrets.get(registry.id as number)).to.equal(h.config.endpointPassword);
      expect(h.harbor.policies.map((p) => (p.dest_registry as { id: number }).id)).to.deep.equal([registry.id, registry.id]);
    });

    it('when a group is deleted while its rule replicates, then the refusal says to wait, and nothing is deleted or tombstoned', async () => {
      const created = await create({ name: 'edge-eu', filters: [{ type: 'name', value: 'library/**' }], replicate: true });
      await record(h.db.pool, 'edge-eu', 'library/nginx', image(), '1.27');
      const before = await h.db.dump();
      const res = await h.api('/api/v1/groups/edge-eu', { method: 'DELETE' });
      expect(res.status).to.equal(409);
      expect(res.body.errors).to.have.length(1);
      expect(res.body.errors[0].code).to.equal('CONFLICT');
      expect(res.body.errors[0].message).to.include('replicating now').and.include('Wait for it to finish').and.include(`policy ${created.body.group.policyId}`);
      expect(h.harbor.policies).to.have.length(1);
      expect(h.harbor.webhooks).to.have.length(1);
      expect(await h.db.dump()).to.equal(before);
      h.harbor.executions[0]!.status = 'Succeed';
      expect((await h.api('/api/v1/groups/edge-eu', { method: 'DELETE' })).body).to.deep.equal({ tombstoned: 1 });
    });

    it('when a group was deleted, then satellites can no longer be put in it, until it is created again', async () => {
      await create({ name: 'edge-eu', filters: [{ type: 'name', value: 'library/**' }] });
      await create({ name: 'edge-us', filters: [{ type: 'name', value: 'tools/**' }] });
      await record(h.db.pool, 'edge-eu', 'library/nginx', image(), '1.27');
      expect((await h.api('/api/v1/satellites', { method: 'POST', body: { name: 'store-1', groups: ['edge-us'] } })).status).to.equal(201);
      expect((await h.api('/api/v1/groups/edge-eu', { method: 'DELETE' })).status).to.equal(200);
      const before = await h.db.dump();
      const created = await h.api('/api/v1/satellites', { method: 'POST', body: { name: 'store-2', groups: ['edge-eu'] } });
      expect(created.status).to.equal(400);
      expect(created.body.errors[0]).to.include({ code: 'BAD_REQUEST', field: 'groups[0]' });
      expect(created.body.errors[0].message).to.include('no group edge-eu');
      const moved = await h.api('/api/v1/satellites/store-1', { method: 'PATCH', body: { groups: ['edge-us', 'edge-eu'] } });
      expect(moved.status).to.equal(400);
      expect(moved.body.errors[0]).to.include({ field: 'groups[1]' });
      expect(await h.db.dump(), 'nothing changed').to.equal(before);
      await create({ name: 'edge-eu', filters: [{ type: 'name', value: 'library/**' }] });
      expect((await h.api('/api/v1/satellites', { method: 'POST', body: { name: 'store-2', groups: ['edge-eu'] } })).status).to.equal(201);
    });
  });

  describe('adopting a rule made by hand', () => {
    let harbor: HarborSetup;
    let registryId: number;
    beforeEach(async () => {
      harbor = new HarborSetup(createHarborClient({ url: h.harbor.url, ...HARBOR_ADMIN }));
      registryId = await harbor.ensureRegistry({ name: 'satellite', url: h.url, accessKey: 'harbor', accessSecret: 'x' });
    });
    const handMade = async (replaceCount: number | undefined) => {
      const policy = harbor.groupPolicy({ group: 'edge-us', registryId, filters: [{ type: 'name', value: 'library/**' }] });
      const { dest_namespace_replace_count: _drop, ...rest } = policy;
      const created = await createHarborClient({ url: h.harbor.url, ...HARBOR_ADMIN }).POST('/replication/policies', {
        body: { ...rest, name: 'made-by-hand', ...(replaceCount === undefined ? {} : { dest_namespace_replace_count: replaceCount }) },
      });
      expect(created.response.status).to.equal(201);
    };

    it('when the rule flattens the path, then adopting is refused with what to change, and nothing is recorded', async () => {
      await handMade(1);
      const res = await h.api('/api/v1/groups/adopt', { method: 'POST', body: { policy: 'made-by-hand' } });
      expect(res.status).to.equal(409);
      expect(res.body.errors[0]).to.include({ code: 'FLATTENING', field: 'policy' });
      expect(res.body.errors[0].message).to.include('No Flattening').and.include('--fix').and.include('edge-us/nginx');
      expect(h.harbor.policies[0]!.dest_namespace_replace_count).to.equal(1);
      expect((await h.db.pool.query('SELECT 1 FROM group_policies')).rowCount).to.equal(0);
    });

    it('when the rule flattens and fix is asked for, then the rule is set to No Flattening and the group adopted', async () => {
      await handMade(undefined); // the API's default (-1): flattens everything
      const res = await h.api('/api/v1/groups/adopt', { method: 'POST', body: { policy: String(h.harbor.policies[0]!.id), fix: true } });
      expect(res.status).to.equal(200);
      expect(res.body).to.deep.include({ fixed: true });
      expect(h.harbor.policies[0]!.dest_namespace_replace_count).to.equal(0);
      expect(res.body.group).to.deep.include({ name: 'edge-us', adopted: true, policyId: h.harbor.policies[0]!.id, projects: ['library'] });
      expect(h.harbor.webhooks).to.have.length(1);
    });

    it('when an adopted group\'s filters and trigger are changed, then its own rule changes in Harbor (no second rule) and the webhooks follow the sources', async () => {
      await handMade(0);
      const rule = h.harbor.policies[0]!;
      expect((await h.api('/api/v1/groups/adopt', { method: 'POST', body: { policy: 'made-by-hand' } })).status).to.equal(200);
      const res = await h.api('/api/v1/groups/edge-us', { method: 'PATCH', body: { filters: [{ type: 'name', value: 'tools/**' }], trigger: { type: 'manual' } } });
      expect(res.status, JSON.stringify(res.body)).to.equal(200);
      expect(res.body).to.deep.include({ name: 'edge-us', adopted: true, policyId: rule.id, projects: ['tools'], filters: [{ type: 'name', value: 'tools/**' }], trigger: { type: 'manual' } });
      expect(h.harbor.policies, 'the hand-made rule is changed, not doubled').to.have.length(1);
      expect(h.harbor.policies[0]).to.deep.include({
        id: rule.id, name: 'made-by-hand', dest_namespace: 'edge-us', dest_namespace_replace_count: 0,
        filters: [{ type: 'name', value: 'tools/**' }], trigger: { type: 'manual' },
      });
      const tools = h.harbor.projects.find((p) => p.name === 'tools')!.project_id;
      expect(h.harbor.webhooks.map((w) => w.project_id), 'library no longer a source; tools is').to.deep.equal([tools]);
    });

    it('when the group already has another rule, then adopting is refused with 409 naming both rules, and nothing changes until replace is asked for', async () => {
      expect((await create({ name: 'edge-us', filters: [{ type: 'name', value: 'tools/**' }] })).status).to.equal(201);
      const own = h.harbor.policies.find((p) => p.name === 'satellite-edge-us')!;
      await handMade(1); // flattens too: refusing must come before the fix touches Harbor
      const byHand = h.harbor.policies.find((p) => p.name === 'made-by-hand')!;
      const before = await h.db.dump();
      const res = await h.api('/api/v1/groups/adopt', { method: 'POST', body: { policy: 'made-by-hand', fix: true } });
      expect(res.status).to.equal(409);
      expect(res.body.errors[0]).to.include({ code: 'CONFLICT', field: 'policy' });
      expect(res.body.errors[0].message).to.include(`satellite-edge-us (policy ${own.id})`).and.include(`made-by-hand (policy ${byHand.id})`).and.include('replace');
      expect(await h.db.dump()).to.equal(before);
      expect((await h.api('/api/v1/groups/edge-us')).body).to.deep.include({ policyId: own.id, adopted: false, filters: [{ type: 'name', value: 'tools/**' }] });
      expect(byHand.dest_namespace_replace_count, 'the rule was not fixed either').to.equal(1);

      const replaced = await h.api('/api/v1/groups/adopt', { method: 'POST', body: { policy: 'made-by-hand', fix: true, replace: true } });
      expect(replaced.status, JSON.stringify(replaced.body)).to.equal(200);
      expect(replaced.body.group).to.deep.include({ name: 'edge-us', policyId: byHand.id, adopted: true, filters: [{ type: 'name', value: 'library/**' }] });
      expect(replaced.body.warnings.join('\n')).to.include(`satellite-edge-us (policy ${own.id})`).and.include('still replicates');
    });

    it('when the CLI adopts a rule that keeps the path, then it is recorded as is, with a table for people', async () => {
      await handMade(0);
      const env = { DATABASE_URL: h.db.url, HARBOR_URL: h.harbor.url, HARBOR_PASSWORD: HARBOR_ADMIN.password, ENDPOINT_URL: h.url, ENDPOINT_PASSWORD: 'test-secret-0123456789' };
      const adopted = await satellite(['groups', 'adopt', 'made-by-hand'], env);
      expect(adopted.stdout).to.include('adopted as group edge-us');
      expect(h.harbor.calls).to.not.include('updateReplicationPolicy');
      const list = await satellite(['groups', 'list'], env);
      expect(list.stdout.split('\n')[0]).to.match(/^GROUP\s+RULE\s+FILTERS\s+TRIGGER\s+LAST EXECUTION\s+STATE\s+SATELLITES$/);
      expect(list.stdout).to.match(/edge-us\s+\d+ \(adopted\)\s+name=library\/\*\*\s+event_based/);
      const json = JSON.parse((await satellite(['groups', 'list', '--json'], env)).stdout);
      expect(json[0]).to.deep.include({ name: 'edge-us', adopted: true });
    });
  });
});
