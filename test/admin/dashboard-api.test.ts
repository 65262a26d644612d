import { expect } from 'chai';
import { RegistryClient } from '../../core/registry/registry-client.js';
import { stateRepository } from '../../core/state/artifact.js';
import { ArtifactStore } from '../../core/store/artifact-store.js';
import { image } from '../support/oci.js';
import { record, testBuilder, useRegistryAndKeys, workerConfig } from '../support/worker.js';
import { basicAuth, HARBOR_ADMIN, startAdminHarness, type AdminHarness } from '../support/admin.js';
import { satellite } from '../support/run.js';

const digestOf = (c: string) => `sha256:${c.repeat(64)}`;

// The admin API routes the dashboard reads: the fleet overview, a group's versions and the
// diff between two of them (the one `satellite state diff` prints), a satellite's report.
describe('the admin API for the dashboard: fleet overview, versions, diff, reports', function () {
  this.timeout(60_000);
  const shared = useRegistryAndKeys();
  let h: AdminHarness;
  beforeEach(async () => {
    h = await startAdminHarness({ STATE_REGISTRY: shared.registry.url, COSIGN_KEY: shared.keys.keyPath, COSIGN_PASSWORD: 'key-password-for-tests' });
    h.harbor.addArtifact({ repository: 'library/nginx', digest: digestOf('1'), tags: ['1.27'] });
    for (const name of ['edge-eu', 'edge-us']) {
      expect((await h.api('/api/v1/groups', { method: 'POST', body: { name, filters: [{ type: 'name', value: 'library/**' }] } })).status).to.equal(201);
    }
  });
  afterEach(async () => {
    expect(h.harbor.violations, 'requests that break Harbor\'s spec').to.deep.equal([]);
    await h.close();
  });

  const publishRow = (group: string, version: number, c: string, publishedAt: string) => h.db.pool.query(
    `INSERT INTO state_versions (group_name, version, content_digest, status, layout, repository, artifact_count, manifest_digest, published_at)
     VALUES ($1, $2, $3, 'published', 'oci', 'r', $2, $4, $5)`, [group, version, `sha256:content-${group}-${version}`, digestOf(c), publishedAt]);
  const enrol = async (name: string, groups: string[], registerIt = true) => {
    const issued = await h.api('/api/v1/satellites', { method: 'POST', body: { name, groups } });
    expect(issued.status, JSON.stringify(issued.body)).to.equal(201);
    if (!registerIt) return undefined;
    const reg = await h.api('/api/v1/satellites/register', { method: 'POST', auth: null, body: { token: issued.body.token } });
    expect(reg.status, JSON.stringify(reg.body)).to.equal(200);
    return reg.body as { username: string; password: string };
  };
  const report = (who: { username: string; password: string }, name: string, groups: unknown[]) =>
    h.api(`/api/v1/satellites/${name}/status`, { method: 'POST', auth: basicAuth(who.username, who.password), body: { agentVersion: '0.3.0', syncedAt: new Date().toISOString(), groups } });
  const applied = (name: string, version: number, c: string, appliedAt: string, failed = 0) => ({
    name, version, digest: digestOf(c), appliedAt, checkedAt: appliedAt, images: { present: 2, pending: 0, failed },
    failures: failed ? [{ repository: 'library/nginx', digest: digestOf('9'), reason: 'blob digest mismatch' }] : [],
  });

  it('when satellites report, then the overview counts per group who runs the latest version, who is behind by how many, failing, silent, never reported or not registered, and how fast they converged', async () => {
    const t0 = Date.parse('2026-12-01T10:00:00Z');
    const at = (s: number) => new Date(t0 + s * 1000).toISOString();
    await publishRow('edge-eu', 1, 'a', at(-3600));
    await publishRow('edge-eu', 2, 'b', at(-1800));
    await publishRow('edge-eu', 3, 'c', at(0));
    const a = (await enrol('store-a', ['edge-eu']))!;
    const b = (await enrol('store-b', ['edge-eu', 'edge-us']))!;
    const c = (await enrol('store-c', ['edge-eu']))!;
    const d = (await enrol('store-d', ['edge-eu']))!;
    const e = (await enrol('store-e', ['edge-eu']))!;
    await enrol('store-f', ['edge-eu']); // registered, never reported
    await enrol('store-g', ['edge-eu'], false); // a token, not registered
    expect((await report(a, 'store-a', [applied('edge-eu', 3, 'c', at(60))])).status).to.equal(204);
    expect((await report(b, 'store-b', [applied('edge-eu', 1, 'a', at(-3000))])).status).to.equal(204);
    expect((await report(c, 'store-c', [applied('edge-eu', 2, 'b', at(-1700))])).status).to.equal(204);
    expect((await report(d, 'store-d', [applied('edge-eu', 3, 'c', at(300), 1)])).status).to.equal(204);
    expect((await report(e, 'store-e', [applied('edge-eu', 3, 'c', at(120))])).status).to.equal(204);
    // store-e went quiet an hour ago.
    await h.db.pool.query("UPDATE satellites SET last_seen = now() - interval '1 hour' WHERE name = 'store-e'");

    const res = await h.api('/api/v1/fleet');
    expect(res.status, JSON.stringify(res.body)).to.equal(200);
    const eu = res.body.groups.find((g: { name: string }) => g.name === 'edge-eu');
    expect(eu).to.deep.equal({
      name: 'edge-eu', latest: { version: 3, publishedAt: at(0) }, satellites: 7, onLatest: 1,
      behind: { total: 2, byVersions: { 1: 1, 2: 1 } }, failing: 1, silent: 1, neverReported: 1, notRegistered: 1, pending: 0,
    });
    const us = res.body.groups.find((g: { name: string }) => g.name === 'edge-us');
    expect(us, 'no state yet, and store-b did not report it').to.deep.include({ latest: null, satellites: 1, pending: 1, onLatest: 0 });
    expect(res.body.totals).to.deep.equal({ groups: 2, satellites: 7, onLatest: 1, behind: 2, failing: 1, silent: 1 });
    // Six registered satellites of edge-eu: three applied v3, 60, 120 and 300 s after it was published.
    expect(res.body.convergence).to.deep.equal({
      pairs: 6, points: [{ seconds: 0, share: 0 }, { seconds: 60, share: 1 / 6 }, { seconds: 120, share: 2 / 6 }, { seconds: 300, share: 3 / 6 }],
    });
    expect((await h.api('/api/v1/fleet?silentAfterSeconds=86400')).body.groups[0], 'a day\'s patience: store-e is on the latest').to.deep.include({ silent: 0, onLatest: 2 });

    const ofUs = await h.api('/api/v1/satellites?group=edge-us');
    expect(ofUs.body.map((s: { name: string }) => s.name), 'the satellites of one group, for its page').to.deep.equal(['store-b']);
    expect((await h.api('/api/v1/satellites?group=Not_A_Group')).status).to.equal(400);

    const bad = await h.api('/api/v1/fleet?silentAfterSeconds=0');
    expect(bad.status).to.equal(400);
    expect(bad.body.errors[0]).to.deep.include({ code: 'BAD_REQUEST', field: 'silentAfterSeconds' });
    expect((await h.api('/api/v1/fleet', { auth: null })).status).to.equal(401);
  });

  it('when a group has published more versions than the overview reads, then the latest is still its latest, and a satellite far behind is placed by the version it reports', async () => {
    await h.db.pool.query(
      `INSERT INTO state_versions (group_name, version, content_digest, status, layout, repository, artifact_count, manifest_digest, published_at)
       SELECT 'edge-eu', v, 'sha256:content-' || v, 'published', 'oci', 'r', 1, 'sha256:' || lpad(to_hex(v), 64, '0'), now() - make_interval(mins => 200 - v)
         FROM generate_series(1, 150) v`);
    const a = (await enrol('store-a', ['edge-eu']))!;
    expect((await report(a, 'store-a', [{ ...applied('edge-eu', 3, 'a', new Date().toISOString()), digest: `sha256:${'3'.padStart(64, '0')}` }])).status).to.equal(204);
    const eu = (await h.api('/api/v1/fleet')).body.groups.find((g: { name: string }) => g.name === 'edge-eu');
    expect(eu).to.deep.include({ latest: { version: 150, publishedAt: eu.latest.publishedAt }, onLatest: 0, behind: { total: 1, byVersions: { 147: 1 } } });
  });

  it('when satellites apply version after version, then the overview\'s history is the share on the latest version over time: down at each publish, up at each apply', async () => {
    const t = Date.now();
    const at = (hours: number) => new Date(t + hours * 3_600_000).toISOString();
    await publishRow('edge-eu', 1, 'a', at(-6));
    await publishRow('edge-eu', 2, 'b', at(-3));
    const a = (await enrol('store-a', ['edge-eu']))!;
    const b = (await enrol('store-b', ['edge-eu']))!;
    // Reports arrive as the agents sync: v1 first (A, then B), then A's v2.
    expect((await report(a, 'store-a', [applied('edge-eu', 1, 'a', at(-5))])).status).to.equal(204);
    expect((await report(b, 'store-b', [applied('edge-eu', 1, 'a', at(-4))])).status).to.equal(204);
    expect((await report(b, 'store-b', [applied('edge-eu', 1, 'a', at(-2.5))])).status, 'the same version again keeps its first time').to.equal(204);
    const earlier = (await h.api('/api/v1/fleet')).body.history.points.map((p: { share: number }) => p.share);
    expect(earlier, 'before A applies v2').to.deep.equal([0, 0.5, 1, 0, 0]);
    expect((await report(a, 'store-a', [applied('edge-eu', 2, 'b', at(-2))])).status).to.equal(204);
    const { history } = (await h.api('/api/v1/fleet')).body as { history: { since: string; points: { at: string; share: number }[] } };
    expect(Date.parse(history.since)).to.be.closeTo(t - 7 * 86_400_000, 60_000);
    expect(history.points.map((p) => p.share)).to.deep.equal([0, 0.5, 1, 0, 0.5, 0.5]);
    // Each change at the end of the bucket (7 days / 300) it happened in.
    const bucket = 7 * 86_400_000 / 300;
    history.points.slice(0, 5).forEach((p, i) => expect(Date.parse(p.at) - Date.parse(at(-6 + i))).to.be.within(0, bucket));
    expect(Date.parse(history.points[5]!.at), 'and now').to.be.closeTo(t, 10_000);
  });

  it('when a group has published versions, then they are listed newest first with time and images, and the diff between two is what `satellite state diff` prints', async () => {
    const config = workerConfig({ STATE_REGISTRY: shared.registry.url, COSIGN_KEY: shared.keys.keyPath });
    const { builder } = testBuilder(config, h.db.pool, shared.keys);
    const [x, y, z] = [image(), image(), image()];
    await record(h.db.pool, 'edge-eu', 'library/x', x, '1');
    await record(h.db.pool, 'edge-eu', 'library/y', y, 'old');
    expect((await builder.build('edge-eu')).version).to.equal(1);
    await record(h.db.pool, 'edge-eu', 'library/z', z, '1');
    const artifacts = new ArtifactStore(h.db.pool);
    await artifacts.deleteManifest({ group: 'edge-eu', repository: 'library/x' }, x.manifest.digest); // removed
    await artifacts.untag({ group: 'edge-eu', repository: 'library/y' }, 'old');
    await record(h.db.pool, 'edge-eu', 'library/y', y, 'new'); // retagged old → new
    expect((await builder.build('edge-eu')).version).to.equal(2);

    const versions = await h.api('/api/v1/groups/edge-eu/versions');
    expect(versions.status, JSON.stringify(versions.body)).to.equal(200);
    expect(versions.body.map((v: { version: number; images: number; pruned: boolean }) => [v.version, v.images, v.pruned])).to.deep.equal([[2, 3, false], [1, 2, false]]);
    expect(versions.body[0].publishedAt).to.be.a('string');
    expect(versions.body[0].digest).to.match(/^sha256:[a-f0-9]{64}$/);
    // Each version's size is its state artifact's, as the registry holds it: manifest and blobs.
    const registry = new RegistryClient(shared.registry.url);
    for (const v of versions.body as { version: number; bytes: number }[]) {
      const m = await registry.getManifest(stateRepository(config.stateProject, 'edge-eu'), `v${v.version}`);
      const doc = JSON.parse(m!.bytes.toString()) as { config: { size: number }; layers: { size: number }[] };
      expect(v.bytes, `v${v.version}`).to.equal(m!.bytes.length + doc.config.size + doc.layers.reduce((n, l) => n + l.size, 0));
    }

    const diff = await h.api('/api/v1/groups/edge-eu/diff?from=1&to=2');
    expect(diff.status, JSON.stringify(diff.body)).to.equal(200);
    expect(diff.body.added.map((e: { repository: string }) => e.repository)).to.deep.equal(['library/z']);
    expect(diff.body.removed.map((e: { repository: string }) => e.repository)).to.deep.equal(['library/x']);
    expect(diff.body.retagged).to.deep.equal([{ repository: 'library/y', digest: y.manifest.digest, from: ['old'], to: ['new'] }]);
    const env = { DATABASE_URL: h.db.url, STATE_REGISTRY: shared.registry.url, HARBOR_URL: h.harbor.url, HARBOR_PASSWORD: HARBOR_ADMIN.password };
    const cli = JSON.parse((await satellite(['state', 'diff', 'edge-eu', '1', '2', '--json'], env)).stdout);
    expect(diff.body, 'the API and the command line say the same').to.deep.equal(cli);

    const missing = await h.api('/api/v1/groups/edge-eu/diff?from=1&to=7');
    expect(missing.status).to.equal(400);
    expect(missing.body.errors[0]).to.deep.include({ code: 'BAD_REQUEST', field: 'to' });
    expect((await h.api('/api/v1/groups/edge-eu/diff?from=1')).body.errors[0]).to.deep.include({ field: 'to' });
    expect((await h.api('/api/v1/groups/nowhere/diff?from=1&to=2')).status).to.equal(404);
    expect((await h.api('/api/v1/groups/nowhere/versions')).status).to.equal(404);
  });

  it('when a satellite has reported, then its report is answered as sent, with failures and their reasons; before, null', async () => {
    const a = (await enrol('store-a', ['edge-eu']))!;
    const before = await h.api('/api/v1/satellites/store-a/report');
    expect(before.body).to.deep.include({ name: 'store-a', report: null, lastSeen: null });
    expect(before.body.token, 'its token was used by the registration').to.deep.include({ status: 'used' });
    expect(before.body.token.usedAt).to.be.a('string');
    await enrol('store-b', ['edge-eu'], false);
    const waiting = (await h.api('/api/v1/satellites/store-b/report')).body.token;
    expect(waiting.status).to.equal('unused');
    expect(Date.parse(waiting.expiresAt) - Date.now()).to.be.closeTo(24 * 3_600_000, 60_000);
    await h.db.pool.query("UPDATE registration_tokens SET expires_at = now() - interval '1 second' WHERE satellite = 'store-b'");
    expect((await h.api('/api/v1/satellites/store-b/report')).body.token.status).to.equal('expired');
    const sent = [applied('edge-eu', 1, 'a', new Date().toISOString(), 1)];
    expect((await report(a, 'store-a', sent)).status).to.equal(204);
    const after = await h.api('/api/v1/satellites/store-a/report');
    expect(after.status).to.equal(200);
    expect(after.body.report.groups).to.deep.equal(sent);
    expect(after.body.report.groups[0].failures[0].reason).to.equal('blob digest mismatch');
    expect(after.body.lastSeen).to.be.a('string');
    expect((await h.api('/api/v1/satellites/nobody/report')).status).to.equal(404);
  });
});
