import { expect } from 'chai';
import { RobotService } from '../../harbor/robots.js';
import { image } from '../support/oci.js';
import { KEY_PASSWORD, record, useTestKeys } from '../support/worker.js';
import { basicAuth, HARBOR_ADMIN, startAdminHarness, type AdminHarness } from '../support/admin.js';
import { satellite } from '../support/run.js';

const digestOf = (c: string) => `sha256:${c.repeat(64)}`;

describe('satellites: one-time registration, least-privilege robots, fleet view', function () {
  this.timeout(60_000);
  let h: AdminHarness;
  const keys = useTestKeys();
  beforeEach(async () => {
    h = await startAdminHarness({ COSIGN_PUBLIC_KEY: keys.pubPath });
    h.harbor.addArtifact({ repository: 'library/nginx', digest: digestOf('1'), tags: ['1.27'] });
    h.harbor.addArtifact({ repository: 'tools/busybox', digest: digestOf('2'), tags: ['1'] });
    h.harbor.addArtifact({ repository: 'secret/db', digest: digestOf('3'), tags: ['1'] });
    expect((await h.api('/api/v1/groups', { method: 'POST', body: { name: 'edge-eu', filters: [{ type: 'name', value: 'library/**' }] } })).status).to.equal(201);
    expect((await h.api('/api/v1/groups', { method: 'POST', body: { name: 'edge-us', filters: [{ type: 'name', value: 'tools/**' }] } })).status).to.equal(201);
    await record(h.db.pool, 'edge-eu', 'library/nginx', image(), '1.27');
    await record(h.db.pool, 'edge-us', 'tools/busybox', image(), '1');
  });
  afterEach(async () => {
    expect(h.harbor.violations, 'requests that break Harbor\'s spec').to.deep.equal([]);
    await h.close();
  });

  const createSatellite = async (name: string, groups: string[], extra: Record<string, unknown> = {}) => {
    const res = await h.api('/api/v1/satellites', { method: 'POST', body: { name, groups, ...extra } });
    expect(res.status, JSON.stringify(res.body)).to.equal(201);
    return res.body as { name: string; token: string; expiresAt: string };
  };
  const register = (token: string) => h.api('/api/v1/satellites/register', { method: 'POST', auth: null, body: { token } });

  it('when a satellite registers with its token, then it gets exactly what its agent needs, and its robot may pull the state project and its images\' projects only', async () => {
    const issued = await createSatellite('store-042', ['edge-eu']);
    expect(issued.token).to.match(/^sat_/);
    expect(Date.parse(issued.expiresAt) - Date.now()).to.be.closeTo(24 * 3_600_000, 60_000);
    expect(await h.db.dump(), 'only a hash of the token is stored').to.not.include(issued.token);
    const res = await register(issued.token);
    expect(res.status).to.equal(200);
    expect(Object.keys(res.body).sort()).to.deep.equal(['groups', 'name', 'password', 'publicKey', 'registry', 'statusUrl', 'username']);
    expect(res.body).to.deep.include({
      name: 'store-042', registry: 'https://harbor.example.com', username: 'robot$satellite-store-042', publicKey: keys.publicPem,
      // identity: what the worker's signatures name (STATE_REGISTRY's host, 127.0.0.1:5000 by
      // default here), not IMAGE_REGISTRY's name the device reaches Harbor by.
      groups: [{ name: 'edge-eu', state: 'satellite/group-state/edge-eu/state', identity: '127.0.0.1:5000/satellite/group-state/edge-eu/state' }], statusUrl: `${h.url}/api/v1/satellites/store-042/status`,
    });
    const robot = h.harbor.robots.find((r) => r.name === 'satellite-store-042')!;
    expect(robot.secret).to.equal(res.body.password);
    expect(robot).to.deep.include({ level: 'system', duration: -1 });
    expect(robot.permissions).to.deep.equal([
      { kind: 'project', namespace: 'library', access: [{ resource: 'repository', action: 'pull' }] },
      { kind: 'project', namespace: 'satellite', access: [{ resource: 'repository', action: 'pull' }] },
    ]);
    expect(h.harbor.mayPull(res.body.username, 'library')).to.equal(true);
    expect(h.harbor.mayPull(res.body.username, 'satellite')).to.equal(true);
    expect(h.harbor.mayPull(res.body.username, 'tools')).to.equal(false);
    expect(h.harbor.mayPull(res.body.username, 'secret')).to.equal(false);
    // Harbor's token service says the same to the robot itself.
    const token = await fetch(`${h.harbor.url}/service/token?service=harbor-registry&scope=repository:library/nginx:pull,push`, {
      headers: { Authorization: basicAuth(res.body.username, res.body.password) },
    }).then((r) => r.json()) as { token: string };
    const claims = JSON.parse(Buffer.from(token.token.split('.')[1]!, 'base64url').toString());
    expect(claims.access).to.deep.equal([{ type: 'repository', name: 'library/nginx', actions: ['pull'] }]);
  });

  it('when a token is used twice, has expired, or was revoked, then 401 and nothing is created in Harbor or here', async () => {
    const used = await createSatellite('store-1', ['edge-eu']);
    expect((await register(used.token)).status).to.equal(200);
    const expired = await createSatellite('store-2', ['edge-eu']);
    await h.db.pool.query("UPDATE registration_tokens SET expires_at = now() - interval '1 second' WHERE satellite = 'store-2'");
    const replaced = await createSatellite('store-3', ['edge-eu']);
    expect((await h.api('/api/v1/satellites/store-3/token', { method: 'POST', body: {} })).status).to.equal(201); // the first token is revoked
    const revokedSatellite = await createSatellite('store-4', ['edge-eu']);
    expect((await h.api('/api/v1/satellites/store-4', { method: 'DELETE' })).status).to.equal(204);
    const robots = h.harbor.robots.length;
    const before = await h.db.dump();
    for (const token of [used.token, expired.token, replaced.token, revokedSatellite.token, 'sat_never-issued']) {
      const res = await register(token);
      expect(res.status, token).to.equal(401);
      expect(res.body.errors[0]).to.include({ code: 'UNAUTHORIZED' });
    }
    expect(h.harbor.robots).to.have.length(robots);
    expect(await h.db.dump()).to.equal(before);
  });

  it('when Harbor fails during registration, then the token stays usable and a retry succeeds', async () => {
    const issued = await createSatellite('store-9', ['edge-eu']);
    const url = h.harbor.url;
    await h.harbor.close();
    const down = await register(issued.token);
    expect(down.status).to.equal(502);
    expect((await h.db.pool.query("SELECT used_at FROM registration_tokens WHERE satellite = 'store-9'")).rows[0].used_at).to.equal(null);
    // Harbor is back (a new double on the same address would be needed; here the service's Harbor is swapped).
    const { startHarborDouble } = await import('../../harbor-dev/harbor-double.js');
    const port = Number(new URL(url).port);
    const again = await startHarborDouble((await import('../support/admin.js')).UPSTREAM, HARBOR_ADMIN, { port });
    try {
      again.addArtifact({ repository: 'library/nginx', digest: digestOf('1') });
      again.addArtifact({ repository: 'satellite/group-state/edge-eu/state', digest: digestOf('f') });
      const ok = await register(issued.token);
      expect(ok.status).to.equal(200);
      expect(again.mayPull(ok.body.username, 'library')).to.equal(true);
    } finally {
      await again.close();
    }
  });

  it('when devices register from one address, then only refused tokens count against REGISTRATION_RATE_LIMIT: good tokens, and a good token retried while Harbor fails, still register past it', async () => {
    await h.close();
    h = await startAdminHarness({ COSIGN_PUBLIC_KEY: keys.pubPath, REGISTRATION_RATE_LIMIT: '2' });
    h.harbor.addArtifact({ repository: 'library/nginx', digest: digestOf('1'), tags: ['1.27'] });
    expect((await h.api('/api/v1/groups', { method: 'POST', body: { name: 'edge-eu', filters: [{ type: 'name', value: 'library/**' }] } })).status).to.equal(201);
    // A site registering four devices from behind one address.
    for (let i = 0; i < 4; i++) expect((await register((await createSatellite(`store-${i}`, ['edge-eu'])).token)).status, `device ${i}`).to.equal(200);
    // A device retrying while Harbor fails: its own tries never use up the budget.
    const retried = await createSatellite('store-retry', ['edge-eu']);
    h.harbor.failNext('CreateRobot', 503, 4);
    for (let i = 0; i < 4; i++) expect((await register(retried.token)).status, `try ${i} while Harbor fails`).to.equal(502);
    expect((await register(retried.token)).status, 'once Harbor is back').to.equal(200);
    // Wrong tokens still count: the third from this address is not even looked at.
    const late = await createSatellite('store-late', ['edge-eu']);
    expect((await Promise.all([0, 1, 2, 3, 4].map((i) => register(`sat_guess-${i}`)))).map((r) => r.status).sort()).to.deep.equal([401, 401, 429, 429, 429]);
    expect((await register(late.token)).status, 'a flood of wrong tokens holds up a good one too').to.equal(429);
  });

  it('when a group lists an image from a new project, or the satellite changes groups, then its robot is kept in step', async () => {
    const reg = (await register((await createSatellite('store-5', ['edge-eu'])).token)).body;
    await record(h.db.pool, 'edge-eu', 'tools/busybox', image(), '2');
    const robots = new RobotService(h.ctx);
    expect(await robots.syncMany('edge-eu')).to.deep.equal({ 'store-5': 'updated' });
    expect(h.harbor.mayPull(reg.username, 'tools')).to.equal(true);
    expect(await robots.syncMany('edge-eu'), 'nothing to do the second time').to.deep.equal({ 'store-5': 'unchanged' });
    const moved = await h.api('/api/v1/satellites/store-5', { method: 'PATCH', body: { groups: ['edge-us'] } });
    expect(moved.status).to.equal(200);
    expect(moved.body.robot.projects).to.deep.equal(['satellite', 'tools']);
    expect(h.harbor.mayPull(reg.username, 'library')).to.equal(false);
    expect(h.harbor.mayPull(reg.username, 'tools')).to.equal(true);
  });

  it('when a satellite\'s secret is rotated, then the old one no longer reports; when it is revoked, its robot is gone from Harbor', async () => {
    const reg = (await register((await createSatellite('store-6', ['edge-eu'])).token)).body;
    const report = { agentVersion: '1.0.0', syncedAt: new Date().toISOString(), groups: [] };
    const send = (password: string) => h.api('/api/v1/satellites/store-6/status', { method: 'POST', auth: basicAuth(reg.username, password), body: report });
    expect((await send(reg.password)).status).to.equal(204);
    const rotated = await h.api('/api/v1/satellites/store-6/rotate', { method: 'POST' });
    expect(rotated.status).to.equal(200);
    expect(rotated.body.password).to.not.equal(reg.password);
    expect((await send(reg.password)).status).to.equal(401);
    expect((await send(rotated.body.password)).status).to.equal(204);
    expect((await h.api('/api/v1/satellites/store-6', { method: 'DELETE' })).status).to.equal(204);
    expect(h.harbor.robots.map((r) => r.name)).to.not.include('satellite-store-6');
    expect((await send(rotated.body.password)).status).to.equal(401);
    expect((await h.api('/api/v1/satellites/store-6')).body.status).to.equal('revoked');
  });

  it('when satellites report what they run, then the fleet view shows up to date, behind by N versions, failing, and last seen; another satellite\'s credential is refused', async () => {
    const publish = (group: string, version: number, c: string) => h.db.pool.query(
      `INSERT INTO state_versions (group_name, version, content_digest, status, layout, repository, artifact_count, manifest_digest, published_at)
       VALUES ($1, $2, $3, 'published', 'oci', 'r', 1, $4, now())`, [group, version, `sha256:content-${version}`, digestOf(c)]);
    await publish('edge-eu', 1, 'a');
    await publish('edge-eu', 2, 'b');
    await publish('edge-eu', 3, 'c');
    await publish('edge-us', 1, 'd');
    const a = (await register((await createSatellite('store-a', ['edge-eu'])).token)).body;
    const b = (await register((await createSatellite('store-b', ['edge-eu', 'edge-us'])).token)).body;
    const c = (await register((await createSatellite('store-c', ['edge-us'])).token)).body;
    await createSatellite('store-d', ['edge-us']);
    const group = (name: string, version: number | null, digest: string | null, failed = 0) => ({
      name, version, digest, appliedAt: null, checkedAt: new Date().toISOString(), images: { present: 3, pending: 0, failed },
      failures: failed ? [{ repository: 'library/nginx', digest: digestOf('9'), reason: 'blob sha256:… digest mismatch' }] : [],
    });
    const syncedAt = '2026-11-24T18:00:00.000Z';
    const report = (who: { username: string; password: string }, name: string, groups: unknown[]) =>
      h.api(`/api/v1/satellites/${name}/status`, { method: 'POST', auth: basicAuth(who.username, who.password), body: { agentVersion: '0.3.0', syncedAt, groups } });
    expect((await report(a, 'store-a', [group('edge-eu', 3, digestOf('c'))])).status).to.equal(204);
    expect((await report(b, 'store-b', [group('edge-eu', 1, digestOf('a')), group('edge-us', 1, digestOf('d'))])).status).to.equal(204);
    expect((await report(c, 'store-c', [group('edge-us', 1, digestOf('d'), 2)])).status).to.equal(204);
    const stolen = await report(a, 'store-c', []);
    expect(stolen.status).to.equal(403);
    const bad = await report(a, 'store-a', [{ name: 'edge-eu' }]);
    expect(bad.status).to.equal(400);
    expect(bad.body.errors[0].field).to.match(/^groups\[0\]/);

    const fleet = await h.api('/api/v1/satellites');
    const byName = Object.fromEntries((fleet.body as { name: string }[]).map((s) => [s.name, s])) as unknown as Record<string, { status: string; lastSeen: string | null; lastSynced: string | null; drift: { group: string; summary: string }[] }>;
    expect(byName['store-a']!.status).to.equal('up to date');
    expect(byName['store-b']!.status).to.equal('behind');
    expect(byName['store-b']!.drift.map((d) => [d.group, d.summary])).to.deep.equal([['edge-eu', 'behind by 2 versions'], ['edge-us', 'up to date']]);
    expect(byName['store-c']!.status).to.equal('failing');
    expect(byName['store-c']!.drift[0]!.summary).to.equal('failing (2 images)');
    expect(byName['store-d']!.status).to.equal('not registered');
    expect(byName['store-a']!.lastSeen).to.be.a('string');
    expect(byName['store-a'], 'when its last sync ended, as the agent said').to.deep.include({ lastSynced: syncedAt });
    expect(byName['store-d']).to.deep.include({ lastSynced: null });

    const env = { DATABASE_URL: h.db.url, HARBOR_URL: h.harbor.url, HARBOR_PASSWORD: HARBOR_ADMIN.password, COSIGN_KEY: keys.keyPath, COSIGN_PASSWORD: KEY_PASSWORD };
    const table = (await satellite(['satellites', 'list'], env)).stdout.split('\n');
    expect(table[0]).to.match(/^SATELLITE\s+STATUS\s+GROUPS\s+DRIFT\s+LAST SEEN$/);
    expect(table.find((l) => l.startsWith('store-b'))).to.match(/store-b\s+behind\s+edge-eu,edge-us\s+edge-eu: behind by 2 versions; edge-us: up to date\s+\d{4}-\d\d-\d\d .*ago\)/);
    expect(table.find((l) => l.startsWith('store-d'))).to.match(/store-d\s+not registered\s+edge-us\s+-\s+never/);
  });

  it('when harbor robot makes a robot for a group\'s satellites, then it may pull the state project and the projects of the images the group lists, nothing else', async () => {
    const env = { DATABASE_URL: h.db.url, HARBOR_URL: h.harbor.url, HARBOR_PASSWORD: HARBOR_ADMIN.password };
    const { stdout } = await satellite(['harbor', 'robot', 'edge-eu-pull', '--group', 'edge-eu'], env);
    const username = /username: (\S+)/.exec(stdout)?.[1];
    const secret = /secret: +(\S+)/.exec(stdout)?.[1];
    expect(username).to.equal('robot$edge-eu-pull');
    expect(h.harbor.robots.find((r) => r.name === 'edge-eu-pull')!.secret).to.equal(secret);
    expect(h.harbor.mayPull(username!, 'satellite'), 'its group state').to.equal(true);
    expect(h.harbor.mayPull(username!, 'library'), 'the images edge-eu lists').to.equal(true);
    expect(h.harbor.mayPull(username!, 'tools'), 'another group\'s images').to.equal(false);
    expect(h.harbor.mayPull(username!, 'secret')).to.equal(false);
    // Pull only: Harbor's token service grants it nothing more.
    const token = await fetch(`${h.harbor.url}/service/token?service=harbor-registry&scope=repository:library/nginx:pull,push`, {
      headers: { Authorization: basicAuth(username!, secret!) },
    }).then((r) => r.json()) as { token: string };
    expect(JSON.parse(Buffer.from(token.token.split('.')[1]!, 'base64url').toString()).access).to.deep.equal([{ type: 'repository', name: 'library/nginx', actions: ['pull'] }]);

    const robots = h.harbor.robots.length;
    for (const args of [['--group', 'no-such-group'], []]) {
      const refused = await satellite(['harbor', 'robot', 'other-pull', ...args], env).then(() => undefined, (e: { code: number; stderr: string }) => e);
      expect(refused?.code, args.join(' ')).to.equal(2);
      expect(refused!.stderr).to.include(args.length ? 'no group no-such-group' : '--group');
    }
    expect(h.harbor.robots, 'nothing created for bad input').to.have.length(robots);
  });

  it('when the CLI creates a satellite, then it prints the token once; registering with it works', async () => {
    const env = { DATABASE_URL: h.db.url, HARBOR_URL: h.harbor.url, HARBOR_PASSWORD: HARBOR_ADMIN.password, ENDPOINT_URL: h.url };
    const { stdout } = await satellite(['satellites', 'create', 'store-cli', '--group', 'edge-us', '--expires-in-hours', '2'], env);
    const token = /(sat_\S+)/.exec(stdout)?.[1];
    expect(token).to.be.a('string');
    expect(stdout).to.include(`satellite agent register --url ${h.url}`);
    expect((await register(token!)).status).to.equal(200);
  });
});
