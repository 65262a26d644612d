import { expect } from 'chai';
import { blob, sha256, type PackagedState } from '../../core/state/artifact.js';
import { layoutNames, registerLayout, type StateLayout } from '../../core/state/layouts/index.js';
import { previewState } from '../../core/state/preview.js';
import { createTestDatabase, type TestDatabase } from '../support/db.js';
import { cosignSignature, image, signatureTag } from '../support/oci.js';
import { record, testBuilder, useRegistryAndKeys, workerConfig } from '../support/worker.js';

// A layout of this test's own, made as a new layout is meant to be made: one module (here,
// this object) and its registration, nothing else touched.
const TINY_TYPE = 'application/vnd.example.tiny-state.v1+json';
const tinyLayout: StateLayout = {
  name: 'tiny',
  leavesOut: (entry) => entry.type === 'SIGNATURE',
  deltas: false,
  package(json, created): PackagedState {
    if (!Buffer.isBuffer(json)) throw new Error('tiny packs the document itself');
    const empty = { ...blob(Buffer.from('{}')), shared: true };
    const layer = blob(json);
    const manifest = Buffer.from(JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      artifactType: TINY_TYPE,
      config: { mediaType: 'application/vnd.oci.empty.v1+json', digest: empty.digest, size: 2 },
      layers: [{ mediaType: TINY_TYPE, digest: layer.digest, size: json.length }],
      annotations: { 'org.opencontainers.image.created': created.toISOString() },
    }));
    return { manifest, mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: sha256(manifest), blobs: [empty, layer] };
  },
  extraTags: () => ['tiny-latest'],
  robotAccess: [{ resource: 'repository', action: 'pull' }],
  harborSatellites: false,
};

describe('state layouts', function () {
  this.timeout(60_000);
  const shared = useRegistryAndKeys();
  let db: TestDatabase | undefined;
  after(async () => {
    await db?.drop();
  });

  it('when a third layout is registered, then a group can use it and the worker publishes with it', async () => {
    db = await createTestDatabase();
    const env = () => ({ STATE_LAYOUT: 'tiny', STATE_REGISTRY: shared.registry.url, COSIGN_KEY: shared.keys.keyPath });
    expect(() => workerConfig(env()), 'before it is registered').to.throw(/STATE_LAYOUT="tiny" must be one of oci, harbor-satellite/);
    registerLayout(tinyLayout);
    expect(layoutNames()).to.deep.equal(['oci', 'harbor-satellite', 'tiny']);

    const config = workerConfig(env());
    const { builder, client } = testBuilder(config, db.pool, shared.keys);
    const img = image();
    await record(db.pool, 'edge-t', 'library/alpine', img, '3.20');
    await record(db.pool, 'edge-t', 'library/alpine', cosignSignature(img.manifest, 'harbor.example.com/library/alpine'), signatureTag(img.manifest.digest));
    const result = await builder.build('edge-t');
    expect(result).to.include({ result: 'published', version: 1, artifacts: 1 });

    const repository = 'satellite/group-state/edge-t/state';
    const latest = (await client.getManifest(repository, 'latest'))!;
    expect(latest.digest).to.equal(result.digest);
    const doc = JSON.parse(latest.bytes.toString()) as { artifactType: string; layers: { digest: string }[] };
    expect(doc.artifactType, 'packaged by the tiny layout').to.equal(TINY_TYPE);
    expect((await client.headManifest(repository, 'tiny-latest'))?.digest, 'its extra tag').to.equal(result.digest);
    const state = JSON.parse((await client.getBlob(repository, doc.layers[0]!.digest)).toString()) as { artifacts: { type: string }[] };
    expect(state.artifacts.map((a) => a.type), 'the signature left out').to.deep.equal(['IMAGE']);
    expect(await previewState(db.pool, 'edge-t', config.imageRegistry, 168, tinyLayout), 'the preview, laid out alike')
      .to.equal((await client.getBlob(repository, doc.layers[0]!.digest)).toString());
  });
});
