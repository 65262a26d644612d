import { expect } from 'chai';
import { image } from '../support/oci.js';
import { record } from '../support/worker.js';
import { startAdminHarness, type AdminHarness } from '../support/admin.js';

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
  const replication = (policyId: number) => {
    const execution = { id: 900 + policyId, policy_id: policyId, status: 'Succeed', trigger: 'event_based', start_time: new Date().toISOString() };
    h.harbor.executions.push(execution);
    return {
      type: 'REPLICATION', occur_at: 1_700_000_000, operator: '',
      event_data: { replication: { harbor_hostname: 'harbor.example.com', job_status: 'Success', execution_id: execution.id, task_id: 1, trigger_type: 'event_based' } },
    };
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

  it('when Harbor cannot say which rule a replication was, then every group replicating from the project is built, so none is missed', async () => {
    const edgeUs = h.harbor.policies.find((p) => p.dest_namespace === 'edge-us')!;
    h.harbor.failNext('getReplicationExecution', 503);
    const res = await notify(replication(edgeUs.id as number));
    expect(res.status).to.equal(200);
    expect(res.body).to.deep.equal({ event: 'REPLICATION', groups: ['edge-eu', 'edge-us'] });
    expect(await queued()).to.deep.equal({ builds: ['edge-eu', 'edge-us'], jobs: [] });
    expect(h.harbor.calls.filter((c) => c === 'getReplicationExecution'), 'Harbor was asked first').to.have.length(1);
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
