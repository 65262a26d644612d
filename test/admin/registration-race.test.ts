import { expect } from 'chai';
import { image } from '../support/oci.js';
import { record, useTestKeys } from '../support/worker.js';
import { startAdminHarness, type AdminHarness } from '../support/admin.js';

// A registration token is used once, also when two devices (or one device retrying with a
// short timeout) present it at the same instant: Harbor is slowed down so the two
// registrations overlap for the whole time the robot is being made.

const SLOW_MS = 600;

describe('satellites: one token, one registration, even at the same instant', function () {
  this.timeout(60_000);
  let h: AdminHarness;
  const keys = useTestKeys();
  beforeEach(async () => {
    h = await startAdminHarness({ COSIGN_PUBLIC_KEY: keys.pubPath });
    h.harbor.addArtifact({ repository: 'library/nginx', digest: `sha256:${'1'.repeat(64)}`, tags: ['1.27'] });
    expect((await h.api('/api/v1/groups', { method: 'POST', body: { name: 'edge-eu', filters: [{ type: 'name', value: 'library/**' }] } })).status).to.equal(201);
    await record(h.db.pool, 'edge-eu', 'library/nginx', image(), '1.27');
  });
  afterEach(async () => {
    expect(h.harbor.violations, 'requests that break Harbor\'s spec').to.deep.equal([]);
    await h.close();
  });

  it('when two registrations with the same token race while Harbor is slow, then exactly one succeeds, the other is refused with 401, and Harbor holds one robot, the one answered', async () => {
    const created = await h.api('/api/v1/satellites', { method: 'POST', body: { name: 'store-7', groups: ['edge-eu'] } });
    expect(created.status).to.equal(201);
    const { token } = created.body as { token: string };
    for (const op of ['ListRobot', 'CreateRobot', 'UpdateRobot', 'RefreshSec']) h.harbor.delay(op, SLOW_MS);
    const calls = h.harbor.calls.length;

    const register = () => h.api('/api/v1/satellites/register', { method: 'POST', auth: null, body: { token } });
    const answers = await Promise.all([register(), register()]);

    expect(answers.map((a) => a.status).sort(), JSON.stringify(answers.map((a) => a.body))).to.deep.equal([200, 401]);
    const ok = answers.find((a) => a.status === 200)!;
    const refused = answers.find((a) => a.status === 401)!;
    expect(refused.body.errors[0]).to.include({ code: 'UNAUTHORIZED', message: 'the registration token is unknown, used, expired or revoked' });
    const robots = h.harbor.robots.filter((r) => r.name === 'satellite-store-7');
    expect(robots, 'one robot in Harbor').to.have.length(1);
    expect(ok.body.username).to.equal(h.harbor.robotFullName(robots[0]!.name));
    expect(ok.body.password, 'the secret answered is the robot\'s').to.equal(robots[0]!.secret);
    expect(h.harbor.calls.slice(calls), 'Harbor was asked for one robot, once').to.deep.equal(['ListRobot', 'CreateRobot']);
    const { rows } = await h.db.pool.query("SELECT robot_id, registered_at FROM satellites WHERE name = 'store-7'");
    expect(Number(rows[0].robot_id), 'the robot stored is the one in Harbor').to.equal(robots[0]!.id);
    expect(rows[0].registered_at).to.not.equal(null);
    const again = await register();
    expect(again.status, 'and the token stays used').to.equal(401);
  });
});
