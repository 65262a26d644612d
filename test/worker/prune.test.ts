import { expect } from 'chai';
import { signatureTag } from '../../core/cosign/signature-image.js';
import { createLogger } from '../../core/logger.js';
import { ArtifactStore } from '../../core/store/artifact-store.js';
import { StateStore } from '../../core/store/state-store.js';
import { UploadStore } from '../../core/store/upload-store.js';
import { Pruner } from '../../worker/pruner.js';
import { createTestDatabase, type TestDatabase } from '../support/db.js';
import { startFaultProxy } from '../support/fault-proxy.js';
import { until } from '../support/process.js';
import { image, index } from '../support/oci.js';
import { record, testBuilder, useRegistryAndKeys, workerConfig } from '../support/worker.js';

describe('housekeeping', function () {
  this.timeout(60_000);
  let db: TestDatabase;
  const shared = useRegistryAndKeys();

  beforeEach(async () => {
    db = await createTestDatabase();
  });
  afterEach(async () => db?.drop());

  it('when a group has more versions than STATE_KEEP_VERSIONS, then the oldest leave the registry with their signatures and latest stays', async () => {
    const config = workerConfig({ STATE_REGISTRY: shared.registry.url, COSIGN_KEY: shared.keys.keyPath, STATE_KEEP_VERSIONS: '2' });
    const { builder, client } = testBuilder(config, db.pool, shared.keys);
    const digests: string[] = [];
    for (let i = 0; i < 4; i++) {
      await record(db.pool, 'edge-p', `library/app${i}`, image(), '1');
      digests.push((await builder.build('edge-p')).digest);
    }
    // Another group with just as many versions as are kept: the pass over every group at
    // once counts each group's versions apart.
    const others: string[] = [];
    for (let i = 0; i < 2; i++) {
      await record(db.pool, 'edge-q', `library/app${i}`, image(), '1');
      others.push((await builder.build('edge-q')).digest);
    }
    const repo = 'satellite/group-state/edge-p/state';
    const pruner = new Pruner(new ArtifactStore(db.pool), new StateStore(db.pool), new UploadStore(db.pool), client, config, createLogger('silent'));
    expect(await pruner.pruneAll()).to.deep.include({ versions: 2 });
    const tags = (await client.listTags(repo)).sort();
    expect(tags).to.deep.equal(['latest', signatureTag(digests[2]!), signatureTag(digests[3]!), 'v3', 'v4'].sort());
    expect((await client.listTags('satellite/group-state/edge-q/state')).sort(), 'the other group untouched')
      .to.deep.equal(['latest', signatureTag(others[0]!), signatureTag(others[1]!), 'v1', 'v2'].sort());
    expect((await client.headManifest(repo, 'latest'))!.digest).to.equal(digests[3]);
    expect(await pruner.pruneAll(), 'a second pass finds nothing').to.deep.include({ versions: 0 });
  });

  it('when a version was tagged but its latest never moved and newer content was published, then the pruner removes the orphan tag and its signature', async () => {
    const proxy = await startFaultProxy(shared.registry.url);
    try {
      const config = workerConfig({ STATE_REGISTRY: proxy.url, COSIGN_KEY: shared.keys.keyPath });
      const { builder, client } = testBuilder(config, db.pool, shared.keys);
      proxy.rules.push({ method: 'PUT', path: /\/manifests\/latest$/, fault: 'error500', times: 1 });
      await record(db.pool, 'edge-o', 'library/app', image(), '1');
      let failure: unknown;
      await builder.build('edge-o').catch((e: unknown) => (failure = e));
      expect(failure, 'the first build fails at latest').to.be.instanceOf(Error);
      const repo = 'satellite/group-state/edge-o/state';
      const orphan = await client.headManifest(repo, 'v1');
      expect(orphan, 'v1 was tagged').to.not.equal(undefined);
      await record(db.pool, 'edge-o', 'library/app', image(), '2');
      const v2 = await builder.build('edge-o');
      expect(v2).to.include({ result: 'published', version: 2 });
      const pruner = new Pruner(new ArtifactStore(db.pool), new StateStore(db.pool), new UploadStore(db.pool), client, config, createLogger('silent'));
      expect(await pruner.pruneAll()).to.deep.include({ versions: 1 });
      expect((await client.listTags(repo)).sort()).to.deep.equal(['latest', signatureTag(v2.digest), 'v2'].sort());
      expect(await pruner.pruneAll(), 'a second pass finds nothing').to.deep.include({ versions: 0 });
    } finally {
      await proxy.close();
    }
  });

  it('when a slow build is overtaken by a newer one, then latest keeps the newer state and the slow one reports superseded', async () => {
    const proxy = await startFaultProxy(shared.registry.url);
    try {
      const config = workerConfig({ STATE_REGISTRY: proxy.url, COSIGN_KEY: shared.keys.keyPath });
      const slow = testBuilder(config, db.pool, shared.keys);
      const fast = testBuilder(config, db.pool, shared.keys);
      proxy.rules.push({ method: 'PUT', path: /\/manifests\/v1$/, fault: 'slow', times: 1, delayMs: 1500 });
      await record(db.pool, 'edge-s', 'library/app', image(), '1');
      const first = slow.builder.build('edge-s');
      await until('the slow build to reach its version tag', async () => (proxy.injected() === 1 ? true : undefined));
      await record(db.pool, 'edge-s', 'library/app', image(), '2');
      const second = await fast.builder.build('edge-s');
      expect(second).to.include({ result: 'published', version: 2 });
      expect(await first).to.include({ result: 'superseded', version: 1 });
      const latest = await fast.client.headManifest('satellite/group-state/edge-s/state', 'latest');
      expect(latest!.digest).to.equal(second.digest);
    } finally {
      await proxy.close();
    }
  });

  it('when a tombstone outlives its retention, then it and its index children are forgotten', async () => {
    const store = new ArtifactStore(db.pool);
    const idx = index([{ architecture: 'amd64', os: 'linux' }]);
    for (const c of idx.children) await record(db.pool, 'edge-t', 'library/nginx', c, null);
    await record(db.pool, 'edge-t', 'library/nginx', { manifest: idx.manifest, config: idx.manifest, layers: [] }, '1');
    await store.deleteManifest({ group: 'edge-t', repository: 'library/nginx' }, idx.manifest.digest);
    expect((await store.listGroup('edge-t', 24)).map((r) => [r.digest, r.deleted])).to.deep.equal([[idx.manifest.digest, true]]);
    await db.pool.query("UPDATE artifacts SET deleted_at = now() - interval '2 hours' WHERE deleted");
    expect(await store.listGroup('edge-t', 1), 'past retention, no longer in states').to.deep.equal([]);
    expect(await store.purgeExpiredTombstones(1)).to.equal(2);
    const { rows } = await db.pool.query("SELECT count(*)::int AS n FROM artifacts WHERE group_name = 'edge-t'");
    expect(rows[0].n).to.equal(0);
  });

  it('when a blob upload was left idle past the idle limit, then its session row is deleted; a recent one stays', async () => {
    const config = workerConfig({ STATE_REGISTRY: shared.registry.url, COSIGN_KEY: shared.keys.keyPath });
    const { client } = testBuilder(config, db.pool, shared.keys);
    const uploads = new UploadStore(db.pool, { maxOpenPerOwner: 10, idleMinutes: 10 });
    await uploads.create('00000000-0000-4000-8000-000000000001', 'edge/library/a', 'endpoint', 'sha256', Buffer.alloc(40));
    await uploads.create('00000000-0000-4000-8000-000000000002', 'edge/library/a', 'endpoint', 'sha256', Buffer.alloc(40));
    await db.pool.query("UPDATE uploads SET updated_at = now() - interval '11 minutes' WHERE id = '00000000-0000-4000-8000-000000000001'");
    const pruner = new Pruner(new ArtifactStore(db.pool), new StateStore(db.pool), uploads, client, config, createLogger('silent'));
    expect(await pruner.pruneAll()).to.deep.include({ uploads: 1 });
    const { rows } = await db.pool.query('SELECT id FROM uploads');
    expect(rows.map((r) => r.id)).to.deep.equal(['00000000-0000-4000-8000-000000000002']);
  });
});

describe('the reconcile pass', function () {
  this.timeout(60_000);
  let db: TestDatabase;
  const shared = useRegistryAndKeys();
  before(async () => {
    db = await createTestDatabase();
  });
  after(async () => db?.drop());

  it('when groups were built, then only those changed since, or whose tombstone expired since, are stale', async () => {
    // No kept content: the test moves time in the database, which content kept in memory cannot see.
    const config = workerConfig({ STATE_REGISTRY: shared.registry.url, COSIGN_KEY: shared.keys.keyPath, TOMBSTONE_RETENTION_HOURS: '1', STATE_CACHE_MB: '0' });
    const { builder } = testBuilder(config, db.pool, shared.keys);
    const states = new StateStore(db.pool);
    const store = new ArtifactStore(db.pool);
    const img = image();
    for (const g of ['a', 'b', 'c']) await record(db.pool, g, 'library/app', g === 'c' ? img : image(), '1');
    await store.deleteManifest({ group: 'c', repository: 'library/app' }, img.manifest.digest);
    expect(await states.staleGroups(1), 'never built').to.deep.equal(['a', 'b', 'c']);
    for (const g of ['a', 'b', 'c']) await builder.build(g);
    expect(await states.staleGroups(1), 'all just built').to.deep.equal([]);
    await record(db.pool, 'b', 'library/app', image(), '2');
    expect(await states.staleGroups(1), 'b changed').to.deep.equal(['b']);
    // c's tombstone reaches the end of its retention: c's state must drop it.
    await db.pool.query("UPDATE artifacts SET deleted_at = now() - interval '1 hour 1 second' WHERE group_name = 'c'");
    await db.pool.query("UPDATE groups SET checked_at = now() - interval '10 seconds' WHERE name = 'c'");
    expect(await states.staleGroups(1)).to.deep.equal(['b', 'c']);
    const rebuilt = await builder.build('c');
    expect(rebuilt).to.include({ result: 'published', version: 2, artifacts: 0 });
  });
});
