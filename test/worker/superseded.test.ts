import { expect } from 'chai';
import { MIGRATIONS } from '../../core/db/migrations.js';
import { ArtifactStore } from '../../core/store/artifact-store.js';
import { StateStore } from '../../core/store/state-store.js';
import { createTestDatabase, type TestDatabase } from '../support/db.js';
import { artifact, cosignSignature, image, index, randomLayer, signatureTag, type Image } from '../support/oci.js';
import { readLatestState, record, testBuilder, useRegistryAndKeys, workerConfig } from '../support/worker.js';

// Issue 8 item 7: a tag that moves must not leave the old image on every satellite forever.

const REPO = 'library/app';
type Entry = { digest: string; tag: string[]; deleted: boolean };

describe('a manifest left behind by a moved tag', function () {
  this.timeout(60_000);
  let db: TestDatabase;
  let store: ArtifactStore;
  beforeEach(async () => {
    db = await createTestDatabase();
    store = new ArtifactStore(db.pool);
  });
  afterEach(async () => db?.drop());

  const listed = async (group = 'edge', superseded: 'tombstone' | 'keep' = 'tombstone'): Promise<Entry[]> =>
    (await store.listGroup(group, 24, superseded)).map((r) => ({ digest: r.digest, tag: [...r.tags].sort(), deleted: r.deleted }));
  const entry = async (img: Image) => (await listed()).find((e) => e.digest === img.manifest.digest);

  it('when a tag moves to another digest, then the manifest it left is listed as deleted with no tag, and leaves the list after the retention', async () => {
    const old = image();
    const current = image();
    await record(db.pool, 'edge', REPO, old, '1.0');
    await record(db.pool, 'edge', REPO, current, '1.0');
    expect(await listed()).to.have.deep.members([
      { digest: old.manifest.digest, tag: [], deleted: true },
      { digest: current.manifest.digest, tag: ['1.0'], deleted: false },
    ]);
    const { rows } = await db.pool.query("SELECT digest, previous_digest FROM change_log WHERE tag = '1.0' ORDER BY id");
    expect(rows, 'the change log says where the tag was').to.deep.equal([
      { digest: old.manifest.digest, previous_digest: null },
      { digest: current.manifest.digest, previous_digest: old.manifest.digest },
    ]);
    // The endpoint still serves it by digest (Harbor may DELETE it later and expects it).
    expect(await store.getManifest({ group: 'edge', repository: REPO }, { digest: old.manifest.digest })).to.not.equal(undefined);

    const states = new StateStore(db.pool);
    await states.markBuilt('edge', await states.buildPoint('edge'));
    expect(await states.staleGroups(1), 'just built').to.deep.equal([]);
    // An hour and a second pass.
    await db.pool.query("UPDATE superseded_manifests SET superseded_at = superseded_at - interval '1 hour 1 second'");
    await db.pool.query("UPDATE artifacts SET tagged_at = tagged_at - interval '1 hour 1 second'");
    await db.pool.query("UPDATE groups SET checked_at = now() - interval '10 seconds'");
    expect(await states.staleGroups(1), 'its retention ended since the last build: rebuild').to.deep.equal(['edge']);
    expect((await store.listGroup('edge', 1)).map((r) => r.digest), 'past the retention: gone').to.deep.equal([current.manifest.digest]);
  });

  it('when the manifest left behind still has a tag, is listed by an index, or is signed, then it stays listed as it was', async () => {
    const tagged = image();
    await record(db.pool, 'edge', REPO, tagged, '1.0');
    await record(db.pool, 'edge', REPO, tagged, 'stable');
    await record(db.pool, 'edge', REPO, image(), '1.0');
    expect(await entry(tagged), 'another tag still names it').to.deep.equal({ digest: tagged.manifest.digest, tag: ['stable'], deleted: false });

    const signedByTag = image();
    await record(db.pool, 'edge', REPO, signedByTag, '2.0');
    await record(db.pool, 'edge', REPO, cosignSignature(signedByTag.manifest, `harbor/${REPO}`), signatureTag(signedByTag.manifest.digest));
    await record(db.pool, 'edge', REPO, image(), '2.0');
    expect(await entry(signedByTag), 'cosign sha256-<hex>.sig names it').to.deep.include({ tag: [], deleted: false });

    const signedByReferrer = image();
    await record(db.pool, 'edge', REPO, signedByReferrer, '3.0');
    const bundle = artifact('application/vnd.dev.sigstore.bundle.v0.3+json', Buffer.from('{}'), 'application/vnd.dev.sigstore.bundle.v0.3+json', signedByReferrer.manifest);
    await record(db.pool, 'edge', REPO, bundle, null);
    await record(db.pool, 'edge', REPO, image(), '3.0');
    expect(await entry(signedByReferrer), 'a signature referrer names it').to.deep.include({ tag: [], deleted: false });

    // An index pushed by digest that lists the old image: the image is part of the index.
    const idx = index([{ architecture: 'amd64', os: 'linux' }]);
    const child = idx.children[0]!;
    await record(db.pool, 'edge', REPO, child, '4.0');
    await record(db.pool, 'edge', REPO, image(), '4.0');
    await record(db.pool, 'edge', REPO, { manifest: idx.manifest, config: idx.manifest, layers: [] }, '4.0-multi');
    expect(await entry(child), 'an index lists it: inside the index entry, not a tombstone').to.equal(undefined);
    expect(await entry({ manifest: idx.manifest } as Image)).to.deep.include({ tag: ['4.0-multi'], deleted: false });
  });

  it('when a superseded manifest is tagged again, then it is live; when a tag is only removed, nothing is superseded', async () => {
    const old = image();
    await record(db.pool, 'edge', REPO, old, '1.0');
    await record(db.pool, 'edge', REPO, image(), '1.0');
    expect(await entry(old)).to.deep.include({ deleted: true });
    await record(db.pool, 'edge', REPO, old, '1.0-again');
    expect(await entry(old)).to.deep.equal({ digest: old.manifest.digest, tag: ['1.0-again'], deleted: false });
    await store.untag({ group: 'edge', repository: REPO }, '1.0-again');
    expect(await entry(old), 'untagged, not superseded: a DELETE by tag keeps the manifest').to.deep.equal({ digest: old.manifest.digest, tag: [], deleted: false });
  });

  it('when SUPERSEDED_MANIFESTS=keep, then the manifest left behind stays listed, untagged and live', async () => {
    const old = image();
    await record(db.pool, 'edge', REPO, old, '1.0');
    await record(db.pool, 'edge', REPO, image(), '1.0');
    expect((await listed('edge', 'keep')).find((e) => e.digest === old.manifest.digest)).to.deep.equal({ digest: old.manifest.digest, tag: [], deleted: false });
  });

  it('when many PUTs move the same tag at once, then every manifest left behind is superseded', async () => {
    const images = Array.from({ length: 40 }, () => image({ layers: [randomLayer(16)] }));
    await record(db.pool, 'edge', REPO, images[0]!, 'latest');
    await Promise.all(images.slice(1).map((img) => record(db.pool, 'edge', REPO, img, 'latest')));
    const entries = await listed();
    expect(entries.filter((e) => !e.deleted), 'only the manifest the tag names in the end').to.have.length(1);
    expect(entries.filter((e) => e.deleted)).to.have.length(39);
  });

  it('when upgrading, then manifests left untagged by tag moves before the upgrade are superseded', async () => {
    const old = image();
    const untagged = image();
    await record(db.pool, 'edge', REPO, old, '1.0');
    await record(db.pool, 'edge', REPO, image(), '1.0');
    await record(db.pool, 'edge', REPO, untagged, 'gone');
    await store.untag({ group: 'edge', repository: REPO }, 'gone');
    // As recorded before version 60: no superseded mark.
    await db.pool.query('DELETE FROM superseded_manifests');
    expect(await entry(old)).to.deep.include({ deleted: false });
    await db.pool.query(MIGRATIONS.find((m) => m.version === 61)!.sql);
    expect(await entry(old), 'its tag names another digest now').to.deep.include({ tag: [], deleted: true });
    expect(await entry(untagged), 'untagged by a DELETE of the tag: not superseded').to.deep.include({ deleted: false });
  });
});

describe('superseded manifests in published states', function () {
  this.timeout(60_000);
  const shared = useRegistryAndKeys();
  let db: TestDatabase;
  beforeEach(async () => {
    db = await createTestDatabase();
  });
  afterEach(async () => db?.drop());

  for (const [setting, expected] of [[undefined, true], ['keep', false]] as const) {
    it(`when SUPERSEDED_MANIFESTS is ${setting ?? 'unset'}, then the published state lists the old image ${expected ? 'as deleted' : 'untagged and live'}`, async () => {
      const config = workerConfig({
        STATE_REGISTRY: shared.registry.url, COSIGN_KEY: shared.keys.keyPath, STATE_PROJECT: `sup-${setting ?? 'default'}`,
        ...(setting ? { SUPERSEDED_MANIFESTS: setting } : {}),
      });
      const { builder, client } = testBuilder(config, db.pool, shared.keys);
      const old = image();
      await record(db.pool, 'edge', REPO, old, '1.0');
      await record(db.pool, 'edge', REPO, image(), '1.0');
      await builder.build('edge');
      const state = await readLatestState(client, `${config.stateProject}/group-state/edge/state`);
      const entryOf = state.artifacts.find((a: { digest: string }) => a.digest === old.manifest.digest);
      expect(entryOf).to.include({ deleted: expected });
      expect(entryOf.tag).to.deep.equal([]);
    });
  }
});
