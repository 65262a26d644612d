import { expect } from 'chai';
import { ArtifactStore } from '../../core/store/artifact-store.js';
import { buildState, renderState } from '../../core/state/render.js';
import { HarborReconciler } from '../../harbor/reconcile.js';
import { createLogger } from '../../core/logger.js';
import { cosignSignature, image, index, signatureTag } from '../support/oci.js';
import { record } from '../support/worker.js';
import { HARBOR_ADMIN, startAdminHarness, type AdminHarness } from '../support/admin.js';
import { satellite } from '../support/run.js';

describe('reconciliation of a group with what its rule selects in Harbor', function () {
  this.timeout(60_000);
  let h: AdminHarness;
  let reconciler: HarborReconciler;
  const kept = image({ architecture: 'arm64' });
  const keptSig = cosignSignature(kept.manifest, 'harbor.example.com/library/nginx');
  const retagged = image();
  const gone = image();
  const multi = index([{ architecture: 'amd64', os: 'linux' }, { architecture: 'arm64', os: 'linux' }]);

  beforeEach(async () => {
    h = await startAdminHarness();
    // In Harbor: nginx 1.27 (labelled, arm64/v8), nginx re-tagged 2.0 (now outside the tag filter), an index.
    h.harbor.addArtifact({
      repository: 'library/nginx', digest: kept.manifest.digest, tags: ['1.27'], labels: ['prod', 'eu'],
      extra_attrs: { os: 'linux', architecture: 'arm64', variant: 'v8', author: 'x' },
    });
    h.harbor.addArtifact({ repository: 'library/nginx', digest: retagged.manifest.digest, tags: ['2.0'] });
    h.harbor.addArtifact({
      repository: 'library/multi', digest: multi.manifest.digest, tags: ['1.0'], manifest_media_type: multi.manifest.mediaType,
      references: multi.children.map((c) => ({ child_digest: c.manifest.digest, platform: { os: 'linux', architecture: 'amd64' } })),
    });
    expect((await h.api('/api/v1/groups', { method: 'POST', body: { name: 'edge-eu', filters: [{ type: 'name', value: 'library/**' }, { type: 'tag', value: '1.*' }] } })).status).to.equal(201);
    // What the group recorded over time (replications never remove anything).
    await record(h.db.pool, 'edge-eu', 'library/nginx', kept, '1.27');
    await record(h.db.pool, 'edge-eu', 'library/nginx', keptSig, signatureTag(kept.manifest.digest));
    await record(h.db.pool, 'edge-eu', 'library/nginx', retagged, '1.26');
    await record(h.db.pool, 'edge-eu', 'library/redis', gone, '7');
    for (const c of multi.children) await record(h.db.pool, 'edge-eu', 'library/multi', c, null);
    await record(h.db.pool, 'edge-eu', 'library/multi', multi, '1.0');
    await h.db.pool.query('DELETE FROM outbox');
    reconciler = new HarborReconciler(h.db.pool, h.ctx.harbor!, createLogger('silent'), 24);
  });
  afterEach(async () => {
    expect(h.harbor.violations).to.deep.equal([]);
    await h.close();
  });

  const state = async () => buildState('edge-eu', 'https://harbor.example.com', await new ArtifactStore(h.db.pool).listGroup('edge-eu', 24));
  const entry = async (digest: string) => (await state()).artifacts.find((a) => a.digest === digest)!;

  it('when a group is reconciled, then what left the filter or Harbor is tombstoned and Harbor\'s labels and platform fill the state', async () => {
    const summary = await reconciler.reconcileGroup('edge-eu');
    expect(summary.tombstoned.sort()).to.deep.equal([`library/nginx@${retagged.manifest.digest}`, `library/redis@${gone.manifest.digest}`].sort());
    expect(summary.checked).to.equal(5);
    expect(await entry(retagged.manifest.digest)).to.include({ deleted: true });
    expect((await entry(retagged.manifest.digest)).tag).to.deep.equal(['1.26']);
    expect(await entry(gone.manifest.digest)).to.include({ deleted: true });
    const nginx = await entry(kept.manifest.digest);
    expect(nginx).to.include({ deleted: false });
    expect(nginx.labels).to.deep.equal(['eu', 'prod']);
    expect(nginx.platform).to.deep.equal({ os: 'linux', architecture: 'arm64', variant: 'v8' });
    expect(await entry(keptSig.manifest.digest), 'a signature stays with what it signs').to.include({ deleted: false, type: 'SIGNATURE' });
    const idx = await entry(multi.manifest.digest);
    expect(idx).to.include({ deleted: false });
    expect(idx.platform, 'an index has platforms, not a platform').to.equal(undefined);
    expect(renderState(await state())).to.include('"labels":["eu","prod"]').and.include('"platform":{"os":"linux","architecture":"arm64","variant":"v8"}');
    expect((await h.db.pool.query('SELECT group_name FROM outbox')).rows).to.deep.equal([{ group_name: 'edge-eu' }]);
    // A second pass finds nothing to do and queues nothing.
    await h.db.pool.query('DELETE FROM outbox');
    expect(await reconciler.reconcileGroup('edge-eu')).to.deep.include({ tombstoned: [], updated: 0 });
    expect((await h.db.pool.query('SELECT 1 FROM outbox')).rowCount).to.equal(0);
  });

  it('when Harbor fails while listing a repository, then the reconcile fails and changes nothing', async () => {
    const before = await h.db.dump();
    for (const status of [403, 500]) {
      h.harbor.failNext('listArtifacts', status);
      await reconciler.reconcileGroup('edge-eu').then(() => expect.fail('reconciled on half a listing'), (err: { status?: number }) => expect(err.status).to.equal(status));
      expect(await h.db.dump()).to.equal(before);
    }
  });

  it('when Harbor cannot be reached, then the reconcile fails and changes nothing', async () => {
    const before = await h.db.dump();
    await h.harbor.close();
    await reconciler.reconcileGroup('edge-eu').then(() => expect.fail('reconciled without Harbor'), (err: Error) => expect(err.message).to.match(/could not be reached/));
    expect(await h.db.dump()).to.equal(before);
    h.harbor.violations.splice(0);
  });

  it('when a deletion event is reconciled, then only the artifact it names (and its signature) is tombstoned, once Harbor confirms it is gone', async () => {
    expect(await reconciler.reconcileDeleted('library/nginx', kept.manifest.digest), 'still in Harbor').to.deep.equal({ groups: [], tombstoned: 0 });
    await h.harbor.removeArtifact('library/nginx', kept.manifest.digest);
    expect(await reconciler.reconcileDeleted('library/nginx', kept.manifest.digest)).to.deep.equal({ groups: ['edge-eu'], tombstoned: 2 });
    expect(await entry(kept.manifest.digest)).to.include({ deleted: true });
    expect(await entry(keptSig.manifest.digest)).to.include({ deleted: true });
    expect(await entry(retagged.manifest.digest), 'an event never shrinks the list beyond what it names').to.include({ deleted: false });
    expect(await entry(gone.manifest.digest)).to.include({ deleted: false });
  });

  it('when an administrator reconciles through the API or the CLI, then the answer says what was tombstoned', async () => {
    const res = await h.api('/api/v1/groups/edge-eu/reconcile', { method: 'POST' });
    expect(res.status).to.equal(200);
    expect(res.body.tombstoned).to.have.length(2);
    expect((await h.api('/api/v1/groups/edge-xx/reconcile', { method: 'POST' })).status).to.equal(404);
    await record(h.db.pool, 'edge-eu', 'library/redis', image(), '8');
    const env = { DATABASE_URL: h.db.url, HARBOR_URL: h.harbor.url, HARBOR_PASSWORD: HARBOR_ADMIN.password };
    const { stdout } = await satellite(['groups', 'reconcile', 'edge-eu'], env);
    expect(stdout).to.match(/group edge-eu: \d+ entries checked against Harbor, 1 tombstoned/).and.include('tombstoned library/redis@');
  });
});

describe('reconciliation of a repository with more artifacts than one page of Harbor\'s list', function () {
  this.timeout(120_000);
  let h: AdminHarness;
  // 150 artifacts in one repository: Harbor answers at most 100 a page.
  const images = Array.from({ length: 150 }, (_, i) => ({ img: image(), tag: `1.${i}` }));

  beforeEach(async () => {
    h = await startAdminHarness();
    images.forEach(({ img, tag }, i) => h.harbor.addArtifact({
      repository: 'library/bulk', digest: img.manifest.digest, tags: [tag], labels: [`n${i}`],
      extra_attrs: { os: 'linux', architecture: i % 2 ? 'arm64' : 'amd64' },
    }));
    expect((await h.api('/api/v1/groups', { method: 'POST', body: { name: 'edge-eu', filters: [{ type: 'name', value: 'library/**' }] } })).status).to.equal(201);
    for (const { img, tag } of images) await record(h.db.pool, 'edge-eu', 'library/bulk', img, tag);
  });
  afterEach(async () => {
    expect(h.harbor.violations).to.deep.equal([]);
    await h.close();
  });

  it('when a repository holds 150 artifacts, then every page is read: none is tombstoned and those past the first page get their labels and platform', async () => {
    const reconciler = new HarborReconciler(h.db.pool, h.ctx.harbor!, createLogger('silent'), 24);
    const summary = await reconciler.reconcileGroup('edge-eu');
    expect(summary.tombstoned, 'artifacts past #100 are still in Harbor').to.deep.equal([]);
    expect(summary).to.deep.include({ checked: 150, updated: 150 });
    expect(h.harbor.calls.filter((c) => c === 'listArtifacts')).to.have.length(2);
    const state = buildState('edge-eu', 'https://harbor.example.com', await new ArtifactStore(h.db.pool).listGroup('edge-eu', 24));
    expect(state.artifacts.filter((a) => a.deleted)).to.deep.equal([]);
    const last = state.artifacts.find((a) => a.digest === images[149]!.img.manifest.digest)!;
    expect(last.labels).to.deep.equal(['n149']);
    expect(last.platform).to.deep.equal({ os: 'linux', architecture: 'arm64' });
    const first = state.artifacts.find((a) => a.digest === images[0]!.img.manifest.digest)!;
    expect(first.platform).to.deep.equal({ os: 'linux', architecture: 'amd64' });
  });
});
