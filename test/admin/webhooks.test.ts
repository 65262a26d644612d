import { expect } from 'chai';
import { image } from '../support/oci.js';
import { record } from '../support/worker.js';
import { startAdminHarness, type AdminHarness } from '../support/admin.js';
import type { ReplicationNotice } from '../../harbor-dev/harbor-double.js';
import { GroupService } from '../../harbor/group-service.js';

// Replays Harbor's webhook job: a POST of the "Default" payload with the policy target's
// auth header as Authorization (goharbor/harbor src/pkg/notifier/handler/notification).

describe("Harbor's webhook notifications", function () {
  this.timeout(60_000);
  let h: AdminHarness;
  let secret: string;
  const nginx = image();
  beforeEach(async () => {
    h = await startAdminHarness();
    h.harbor.addArtifact({ repository: 'library/nginx', digest: nginx.manifest.digest, tags: ['1.27'] });
    h.harbor.addArtifact({ repository: 'tools/curl', digest: `sha256:${'7'.repeat(64)}`, tags: ['8'] });
    expect((await h.api('/api/v1/groups', { method: 'POST', body: { name: 'edge-eu', filters: [{ type: 'name', value: 'library/**' }] } })).status).to.equal(201);
    expect((await h.api('/api/v1/groups', { method: 'POST', body: { name: 'edge-us', filters: [{ type: 'name', value: 'library/**' }] } })).status).to.equal(201);
    secret = (h.harbor.webhooks[0]!.targets as { auth_header: string }[])[0]!.auth_header;
    await record(h.db.pool, 'edge-eu', 'library/nginx', nginx, '1.27');
    await h.db.pool.query('DELETE FROM outbox');
  });
  afterEach(async () => {
    expect(h.harbor.violations).to.deep.equal([]);
    await h.close();
  });

  const queued = async () => ({
    builds: (await h.db.pool.query('SELECT group_name FROM outbox ORDER BY id')).rows.map((r) => r.group_name),
    jobs: (await h.db.pool.query('SELECT job, data FROM harbor_outbox ORDER BY id')).rows,
  });
  const notify = (payload: unknown, auth: string | null = secret) => h.api('/api/v1/webhooks/harbor', { method: 'POST', auth, body: payload });
  // Harbor's own REPLICATION payload, as the double builds it from goharbor/harbor v2.15.2
  // (src/controller/event/handler/webhook/artifact/replication.go): no rule id in it; the
  // execution id since Harbor 2.13; the group as src_resource.namespace.
  const replication = (policyId: number, options: ReplicationNotice = {}) => {
    const execution = { id: 900 + policyId, policy_id: policyId, status: 'Succeed', trigger: 'event_based', start_time: new Date().toISOString() };
    h.harbor.executions.push(execution);
    return h.harbor.replicationPayload(execution.id, 'library', 'Success', { repository: 'library/nginx', references: ['1.27'], ...options });
  };

  it('when a notification comes with a wrong or no secret, then 401 and nothing is queued', async () => {
    const payload = replication(h.harbor.policies[0]!.id as number);
    for (const auth of [null, 'whs_wrong', `Basic ${Buffer.from('operator:admin-secret-0123').toString('base64')}`]) {
      const res = await notify(payload, auth);
      expect(res.status).to.equal(401);
      expect(res.headers.get('www-authenticate')).to.equal(null);
    }
    expect(await queued()).to.deep.equal({ builds: [], jobs: [] });
  });

  it('when a group\'s rule replicated, then that group\'s build is queued through the outbox, and only that group\'s', async () => {
    const edgeUs = h.harbor.policies.find((p) => p.dest_namespace === 'edge-us')!;
    const res = await notify(replication(edgeUs.id as number));
    expect(res.status).to.equal(200);
    expect(res.body).to.deep.equal({ event: 'REPLICATION', groups: ['edge-us'] });
    expect(await queued()).to.deep.equal({ builds: ['edge-us'], jobs: [] });
  });

  it('when Harbor sends its replication payload, then it carries what Harbor\'s carries: the group as src_resource.namespace, the project as dest_resource.namespace, no rule id', async () => {
    const edgeUs = h.harbor.policies.find((p) => p.dest_namespace === 'edge-us')!;
    const payload = replication(edgeUs.id as number) as { event_data: { replication: Record<string, unknown> } };
    expect(Object.keys(payload.event_data.replication).sort()).to.deep.equal([
      'artifact_type', 'authentication_type', 'description', 'dest_resource', 'execution_id', 'execution_timestamp', 'harbor_hostname', 'job_status',
      'override_mode', 'policy_creator', 'src_resource', 'successful_artifact', 'task_id', 'trigger_type',
    ]);
    expect(payload.event_data.replication).to.deep.include({
      src_resource: { registry_type: 'harbor', endpoint: 'https://harbor.example.com', namespace: 'edge-us' },
      dest_resource: { registry_name: 'satellite', registry_type: 'docker-registry', endpoint: h.url, namespace: 'library' },
      successful_artifact: [{ type: 'artifact', status: 'Success', name_tag: 'nginx [1 item(s) in total]', references: ['1.27'] }],
    });
  });

  it('when a Harbor older than 2.13 sends a replication (no execution id), then the group is told by the payload\'s namespace, and only it is built', async () => {
    const edgeUs = h.harbor.policies.find((p) => p.dest_namespace === 'edge-us')!;
    const res = await notify(replication(edgeUs.id as number, { withoutIds: true }));
    expect(res.status).to.equal(200);
    expect(res.body).to.deep.equal({ event: 'REPLICATION', groups: ['edge-us'] });
    expect(await queued()).to.deep.equal({ builds: ['edge-us'], jobs: [] });
    expect(h.harbor.calls, 'nothing to look up').to.not.include('getReplicationExecution');
  });

  it('when Harbor cannot say which execution a replication was, then the payload\'s namespace still names the group', async () => {
    const edgeUs = h.harbor.policies.find((p) => p.dest_namespace === 'edge-us')!;
    h.harbor.failNext('getReplicationExecution', 503);
    const res = await notify(replication(edgeUs.id as number));
    expect(res.status).to.equal(200);
    expect(res.body).to.deep.equal({ event: 'REPLICATION', groups: ['edge-us'] });
    expect(h.harbor.calls.filter((c) => c === 'getReplicationExecution'), 'Harbor was asked first').to.have.length(1);
  });

  it('when neither Harbor nor the payload says which rule replicated, then every group replicating from the project is built, so none is missed', async () => {
    const edgeUs = h.harbor.policies.find((p) => p.dest_namespace === 'edge-us')!;
    const payload = replication(edgeUs.id as number, { withoutIds: true }) as { event_data: { replication: { src_resource: { namespace?: string } } } };
    payload.event_data.replication.src_resource.namespace = 'edge-xx'; // a rule we did not make
    const res = await notify(payload);
    expect(res.status).to.equal(200);
    expect(res.body).to.deep.equal({ event: 'REPLICATION', groups: ['edge-eu', 'edge-us'] });
    expect(await queued()).to.deep.equal({ builds: ['edge-eu', 'edge-us'], jobs: [] });
  });

  it('when the double\'s replication job notifies the project, then Harbor\'s payload reaches us with the policy\'s secret and queues that group\'s build', async () => {
    const edgeEu = h.harbor.policies.find((p) => p.dest_namespace === 'edge-eu')!;
    const execution = { id: 990, policy_id: edgeEu.id, status: 'Succeed', trigger: 'event_based', start_time: new Date().toISOString() };
    h.harbor.executions.push(execution);
    await h.harbor.notifyReplication(execution.id, 'library', 'Success', { repository: 'library/nginx', references: ['1.27'], withoutIds: true });
    expect(h.harbor.deliveries).to.deep.equal([{ address: `${h.url}/api/v1/webhooks/harbor`, event: 'REPLICATION', status: 200 }]);
    expect(await queued()).to.deep.equal({ builds: ['edge-eu'], jobs: [] });
  });

  it('when one of two groups replicating from a project is deleted, then the project\'s webhook stays with its secret, and the other group\'s replications still queue its build', async () => {
    const library = h.harbor.projects.find((p) => p.name === 'library')!.project_id;
    const before = h.harbor.webhooks.filter((w) => w.project_id === library);
    expect(before).to.have.length(1);
    expect((await h.api('/api/v1/groups/edge-us', { method: 'DELETE' })).status).to.equal(200);
    const after = h.harbor.webhooks.filter((w) => w.project_id === library);
    expect(after, 'edge-eu still replicates from library').to.have.length(1);
    expect(after[0]).to.deep.include({ id: before[0]!.id, targets: before[0]!.targets });
    expect(h.harbor.calls).to.not.include('DeleteWebhookPolicyOfProject');
    await h.db.pool.query('DELETE FROM outbox; DELETE FROM harbor_outbox'); // the deletion's own build and robot sync

    const edgeEu = h.harbor.policies.find((p) => p.dest_namespace === 'edge-eu')!;
    const execution = { id: 991, policy_id: edgeEu.id, status: 'Succeed', trigger: 'event_based', start_time: new Date().toISOString() };
    h.harbor.executions.push(execution);
    await h.harbor.notifyReplication(execution.id, 'library', 'Success', { repository: 'library/nginx', references: ['1.27'] });
    expect(h.harbor.deliveries).to.deep.equal([{ address: `${h.url}/api/v1/webhooks/harbor`, event: 'REPLICATION', status: 200 }]);
    expect(await queued()).to.deep.equal({ builds: ['edge-eu'], jobs: [] });
  });

  describe('a webhook policy that drifted in Harbor', () => {
    const hook = () => {
      const w = h.harbor.webhooks.find((x) => x.name === 'satellite-for-harbor')!;
      return { id: w.id, enabled: w.enabled, events: w.event_types, target: (w.targets as { address: string; auth_header: string }[])[0]! };
    };

    it('when ENDPOINT_URL changes, then the next reconcile points the webhook at the new address, with the same policy and secret', async () => {
      const before = hook();
      const moved = new GroupService({ ...h.ctx, settings: { ...h.ctx.settings, endpointUrl: 'https://satellite.example.com' } });
      await moved.refreshProjects();
      const after = hook();
      expect(after.target.address).to.equal('https://satellite.example.com/api/v1/webhooks/harbor');
      expect(after).to.deep.include({ id: before.id, enabled: true });
      expect(after.target.auth_header, 'the secret stays: notifications in flight still authenticate').to.equal(secret);
      expect(h.harbor.calls).to.include('UpdateWebhookPolicyOfProject');
      expect((await notify({ type: 'PING' })).status).to.equal(200);
      // In step now: a further pass changes nothing.
      h.harbor.calls.splice(0);
      await moved.refreshProjects();
      expect(h.harbor.calls).to.not.include('UpdateWebhookPolicyOfProject');
    });

    it('when the policy was disabled, given other events and another auth header by hand, then the reconcile puts ours back with a new secret, and the hand-set header is refused', async () => {
      const w = h.harbor.webhooks.find((x) => x.name === 'satellite-for-harbor')!;
      Object.assign(w, { enabled: false, event_types: ['PUSH_ARTIFACT'] });
      (w.targets as { auth_header: string }[])[0]!.auth_header = 'set-by-hand';
      await new GroupService(h.ctx).refreshProjects();
      const after = hook();
      expect(after).to.deep.include({ id: w.id, enabled: true });
      expect([...(after.events as string[])].sort()).to.deep.equal(['DELETE_ARTIFACT', 'REPLICATION']);
      expect(after.target.address).to.equal(`${h.url}/api/v1/webhooks/harbor`);
      expect(after.target.auth_header).to.match(/^whs_/).and.not.equal(secret);
      expect((await notify({ type: 'PING' }, 'set-by-hand')).status).to.equal(401);
      expect((await notify({ type: 'PING' }, secret)).status, 'the old secret is no longer ours').to.equal(401);
      expect((await notify({ type: 'PING' }, after.target.auth_header)).status).to.equal(200);
    });

    it('when only the policy was disabled, or only its event types changed, then it is put back and keeps its secret', async () => {
      h.harbor.webhooks.find((x) => x.name === 'satellite-for-harbor')!.enabled = false;
      await new GroupService(h.ctx).refreshProjects();
      expect(hook()).to.deep.include({ enabled: true });
      expect(hook().target.auth_header).to.equal(secret);
      h.harbor.webhooks.find((x) => x.name === 'satellite-for-harbor')!.event_types = ['REPLICATION'];
      await new GroupService(h.ctx).refreshProjects();
      expect([...(hook().events as string[])].sort()).to.deep.equal(['DELETE_ARTIFACT', 'REPLICATION']);
      expect(hook().target.auth_header).to.equal(secret);
    });
  });

  it('when Harbor deletes an artifact a group lists, then its own webhook delivery queues a reconcile of that artifact', async () => {
    await h.harbor.removeArtifact('library/nginx', nginx.manifest.digest);
    expect(h.harbor.deliveries).to.deep.equal([{ address: `${h.url}/api/v1/webhooks/harbor`, event: 'DELETE_ARTIFACT', status: 200 }]);
    expect(await queued()).to.deep.equal({ builds: [], jobs: [{ job: 'reconcile-deleted', data: { repository: 'library/nginx', digest: nginx.manifest.digest } }] });
  });

  it('when a notification is about another project than its secret\'s, or has no type, then 400 and nothing is queued', async () => {
    const other = await notify({ type: 'DELETE_ARTIFACT', event_data: { repository: { repo_full_name: 'tools/curl' }, resources: [{ digest: `sha256:${'7'.repeat(64)}` }] } });
    expect(other.status).to.equal(400);
    expect(other.body.errors[0].field).to.equal('event_data.repository.repo_full_name');
    const untyped = await notify({ occur_at: 1 });
    expect(untyped.status).to.equal(400);
    expect(untyped.body.errors[0].field).to.equal('type');
    expect(await queued()).to.deep.equal({ builds: [], jobs: [] });
  });
});
