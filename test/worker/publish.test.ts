import { expect } from 'chai';
import { createHash, createPublicKey, generateKeyPairSync, verify as nodeVerify } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { gunzipSync } from 'node:zlib';
import { signatureTag } from '../../core/cosign/signature-image.js';
import { createTestDatabase, type TestDatabase } from '../support/db.js';
import { image, index } from '../support/oci.js';
import { satellite } from '../support/run.js';
import { startFaultProxy } from '../support/fault-proxy.js';
import { until } from '../support/process.js';
import { record, testBuilder, testKeys, useRegistryAndKeys, workerConfig } from '../support/worker.js';
import { STATE_ARTIFACT_TYPE, STATE_DIGEST_ANNOTATION, STATE_LAYER_TYPE, layerText, stateLayers } from '../../core/state/format.js';
import { gzipState } from '../../core/state/artifact.js';
import { KeySigner } from '../../worker/signer.js';
import { RegistryClient } from '../../core/registry/registry-client.js';
import { previewState } from '../../core/state/preview.js';
import { applyDelta } from '../../core/state/delta.js';
import { ArtifactStore } from '../../core/store/artifact-store.js';
import { StateContent } from '../../worker/state-content.js';
import { ociLayout } from '../../core/state/layouts/oci.js';
import { seedGroup } from '../../bench/seed.js';
import { swapInChunk } from '../support/state-layer.js';

const sha256 = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

describe('publishing a group state to a real registry', function () {
  this.timeout(60_000);
  let db: TestDatabase;
  const shared = useRegistryAndKeys();

  beforeEach(async () => {
    db = await createTestDatabase();
  });
  afterEach(async () => {
    await db?.drop();
  });

  const setup = (env: Record<string, string> = {}) => {
    const config = workerConfig({ STATE_REGISTRY: shared.registry.url, COSIGN_KEY: shared.keys.keyPath, ...env });
    return { config, ...testBuilder(config, db.pool, shared.keys) };
  };
  const repo = (group: string) => `satellite/group-state/${group}/state`;

  async function readState(client: RegistryClient, group: string, tag = 'latest') {
    const m = (await client.getManifest(repo(group), tag))!;
    const doc = JSON.parse(m.bytes.toString());
    const full = stateLayers(doc)!.full;
    const json = Buffer.from(layerText(await client.getBlob(repo(group), full.digest), full.mediaType));
    return { manifest: m, doc, json, state: JSON.parse(json.toString()) };
  }

  it('when a build is overtaken by a newer version before it moves latest, then latest stays at the newer version', async () => {
    const group = `overtaken-${Date.now().toString(36)}`;
    // Build 1 reaches the registry through a proxy that holds its version tag's PUT, so
    // build 2, straight to the registry, allocates and publishes version 2 meanwhile.
    const proxy = await startFaultProxy(shared.registry.url);
    try {
      const slowConfig = workerConfig({ STATE_REGISTRY: proxy.url, COSIGN_KEY: shared.keys.keyPath });
      const slow = testBuilder(slowConfig, db.pool, shared.keys).builder;
      const { builder: fast, client } = setup();
      proxy.rules.push({ method: 'PUT', path: new RegExp(`/v2/${repo(group)}/manifests/v1$`), fault: 'slow', delayMs: 2000, times: 1 });
      await record(db.pool, group, 'library/a', image(), '1');
      const first = slow.build(group);
      await until('build 1 pushing its version tag', async () => (proxy.log.includes(`PUT /v2/${repo(group)}/manifests/v1`) ? true : undefined), 20_000);
      await record(db.pool, group, 'library/b', image(), '1');
      const second = await fast.build(group);
      expect(second.version).to.equal(2);
      expect((await client.headManifest(repo(group), 'latest'))!.digest, 'build 2 moved latest').to.equal(second.digest);
      const overtaken = await first;
      expect(overtaken).to.include({ version: 1, result: 'superseded' });
      expect((await client.headManifest(repo(group), 'latest'))!.digest, 'latest still names version 2 after build 1 ended').to.equal(second.digest);
      expect((await readState(client, group)).state.version).to.equal(2);
    } finally {
      await proxy.close();
    }
  });

  it('when a group is built, then the registry holds an oras-shaped artifact tagged v1 and latest listing what was recorded', async () => {
    const { builder, client } = setup();
    const img = image();
    const idx = index([{ architecture: 'amd64', os: 'linux' }, { architecture: 'arm64', os: 'linux' }]);
    await record(db.pool, 'edge-eu', 'library/alpine', img, '3.20');
    for (const c of idx.children) await record(db.pool, 'edge-eu', 'library/nginx', c, null);
    await record(db.pool, 'edge-eu', 'library/nginx', { manifest: idx.manifest, config: idx.manifest, layers: [] }, '1.27');

    const result = await builder.build('edge-eu');
    expect(result).to.include({ result: 'published', version: 1, artifacts: 2 });
    expect((await client.listTags(repo('edge-eu'))).sort()).to.deep.equal([signatureTag(result.digest), 'latest', 'v1'].sort());

    const { manifest, doc, state, json } = await readState(client, 'edge-eu');
    expect(manifest.digest).to.equal(result.digest);
    expect(doc.artifactType).to.equal(STATE_ARTIFACT_TYPE);
    expect(doc.config).to.deep.equal({ mediaType: 'application/vnd.oci.empty.v1+json', digest: sha256(Buffer.from('{}')), size: 2, data: 'e30=' });
    expect(doc.layers, 'the first version has nothing to be a delta from').to.have.length(1);
    expect(doc.layers[0].mediaType).to.equal(STATE_LAYER_TYPE);
    expect(doc.layers[0].annotations).to.deep.equal({
      'org.opencontainers.image.title': 'artifacts.json.gz',
      'vnd.satellite-for-harbor.state.digest': sha256(json),
    });
    expect(doc.annotations['org.opencontainers.image.created']).to.match(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    expect(state).to.include({ group: 'edge-eu', registry: 'https://harbor.example.com', version: 1 });
    expect(state.artifacts.map((a: { repository: string; digest: string; tag: string[] }) => [a.repository, a.digest, a.tag])).to.deep.equal(
      [['library/alpine', img.manifest.digest, ['3.20']], ['library/nginx', idx.manifest.digest, ['1.27']]].sort((a, b) => (a[0]! < b[0]! ? -1 : 1)));
  });

  it('when the signature is read back through the distribution API alone, then Node crypto confirms payload, DER signature and digest claim', async () => {
    const { builder, client } = setup();
    await record(db.pool, 'edge-us', 'library/alpine', image(), '3.20');
    const { digest } = await builder.build('edge-us');
    const sig = JSON.parse((await client.getManifest(repo('edge-us'), signatureTag(digest)))!.bytes.toString());
    expect(sig.mediaType).to.equal('application/vnd.oci.image.manifest.v1+json');
    expect(sig.config.mediaType).to.equal('application/vnd.oci.image.config.v1+json');
    expect(sig.layers).to.have.length(1);
    const layer = sig.layers[0];
    expect(layer.mediaType).to.equal('application/vnd.dev.cosign.simplesigning.v1+json');
    const payload = await client.getBlob(repo('edge-us'), layer.digest);
    expect(payload.toString()).to.equal(JSON.stringify({
      critical: { identity: { 'docker-reference': `${shared.registry.host}/${repo('edge-us')}` }, image: { 'docker-manifest-digest': digest }, type: 'cosign container image signature' },
      optional: null,
    }));
    const der = Buffer.from(layer.annotations['dev.cosignproject.cosign/signature'], 'base64');
    expect(der[0], 'ASN.1 SEQUENCE').to.equal(0x30);
    expect(nodeVerify('sha256', payload, createPublicKey(shared.keys.publicPem), der)).to.equal(true);
    expect(sha256((await client.getManifest(repo('edge-us'), 'latest'))!.bytes)).to.equal(digest);
  });

  it('when satellite verify checks the state, then it accepts it, and refuses another key, a tampered state and an unsigned one', async () => {
    const { builder, client, config } = setup();
    await record(db.pool, 'edge-ap', 'library/alpine', image(), '3.20');
    const { digest } = await builder.build('edge-ap');
    const ref = `${shared.registry.host}/${repo('edge-ap')}:latest`;
    const env = { STATE_REGISTRY: config.stateRegistry };
    const ok = await satellite(['verify', ref, '--key', shared.keys.pubPath, '--plain-http'], env);
    expect(JSON.parse(ok.stdout)[0].critical.image['docker-manifest-digest']).to.equal(digest);

    const other = await testKeys();
    try {
      await satellite(['verify', ref, '--key', other.pubPath, '--plain-http'], env).then(() => expect.fail('accepted another key'), (e: { code: number; stderr: string }) => {
        expect(e.code).to.equal(1);
        expect(e.stderr).to.include('does not verify with the given key');
      });
    } finally {
      await rm(other.dir, { recursive: true, force: true });
    }

    // Tampered: the state's JSON changed under the same tag: the signature names the old digest.
    const { doc, json } = await readState(client, 'edge-ap');
    const forged = gzipState(Buffer.from(json.toString().replace('"3.20"', '"6.66"')));
    const forgedLayer = await client.pushBlob(repo('edge-ap'), forged);
    const forgedManifest = Buffer.from(JSON.stringify({ ...doc, layers: [{ ...doc.layers[0], digest: forgedLayer, size: forged.length }] }));
    await client.putManifest(repo('edge-ap'), 'tampered', forgedManifest, 'application/vnd.oci.image.manifest.v1+json');
    await satellite(['verify', `${shared.registry.host}/${repo('edge-ap')}:tampered`, '--key', shared.keys.pubPath, '--plain-http'], env)
      .then(() => expect.fail('accepted a tampered state'), (e: { code: number; stderr: string }) => expect(e.stderr).to.include('no signature is attached'));

    // A signature whose payload claims the tampered digest but was made by another key.
    const rogue = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey;
    await new KeySigner(client, rogue).sign(repo('edge-ap'), sha256(forgedManifest));
    await satellite(['verify', `${shared.registry.host}/${repo('edge-ap')}:tampered`, '--key', shared.keys.pubPath, '--plain-http'], env)
      .then(() => expect.fail('accepted a rogue signature'), (e: { code: number; stderr: string }) => expect(e.stderr).to.include('does not verify with the given key'));

    // Unsigned: a manifest pushed with no .sig.
    const bare = Buffer.from(JSON.stringify({ ...doc, annotations: { 'org.opencontainers.image.created': '2000-01-01T00:00:00Z' } }));
    await client.putManifest(repo('edge-ap'), 'unsigned', bare, 'application/vnd.oci.image.manifest.v1+json');
    await satellite(['verify', `${shared.registry.host}/${repo('edge-ap')}:unsigned`, '--key', shared.keys.pubPath, '--plain-http'], env)
      .then(() => expect.fail('accepted an unsigned state'), (e: { code: number }) => expect(e.code).to.equal(1));
  });

  it('when nothing changed, then a second build publishes nothing; when something changed, then exactly v2 appears', async () => {
    const { builder, client } = setup();
    await record(db.pool, 'edge-x', 'library/alpine', image(), '3.20');
    const first = await builder.build('edge-x');
    const again = await builder.build('edge-x');
    expect(again).to.include({ result: 'unchanged', version: 1, digest: first.digest });
    expect(await client.listTags(repo('edge-x'))).to.have.length(3);
    await record(db.pool, 'edge-x', 'library/busybox', image(), '1.36');
    const second = await builder.build('edge-x');
    expect(second).to.include({ result: 'published', version: 2 });
    expect((await client.listTags(repo('edge-x'))).filter((t) => t.startsWith('v')).sort()).to.deep.equal(['v1', 'v2']);
    expect((await client.headManifest(repo('edge-x'), 'latest'))!.digest).to.equal(second.digest);
  });

  it('when a version follows another, then its signed manifest carries a delta that rebuilds exactly the full state and grows with the change, not with the list', async () => {
    const { builder, client } = setup();
    const images = Array.from({ length: 400 }, () => image());
    for (const [i, img] of images.entries()) await record(db.pool, 'edge-delta', `library/app${i % 40}`, img, `t${i}`);
    await builder.build('edge-delta');
    const v1 = await readState(client, 'edge-delta');
    const added = image();
    await record(db.pool, 'edge-delta', 'library/new', added, '1');
    await new ArtifactStore(db.pool).deleteManifest({ group: 'edge-delta', repository: 'library/app0' }, images[0]!.manifest.digest);
    await builder.build('edge-delta');
    const v2 = await readState(client, 'edge-delta');
    const layers = stateLayers(v2.doc)!;
    expect(layers.delta, 'a delta layer').to.not.equal(undefined);
    expect(layers.delta!.baseDigest).to.equal(sha256(v1.json));
    expect(layers.delta!.baseVersion).to.equal(1);
    const deltaBytes = await client.getBlob(repo('edge-delta'), layers.delta!.descriptor.digest);
    const delta = JSON.parse(layerText(deltaBytes, layers.delta!.descriptor.mediaType));
    expect(delta.upserted.map((a: { digest: string }) => a.digest).sort()).to.deep.equal([added.manifest.digest, images[0]!.manifest.digest].sort());
    expect(delta.removed).to.deep.equal([]);
    const rebuilt = applyDelta(v1.state, delta);
    expect(rebuilt.json).to.equal(v2.json.toString());
    expect(sha256(Buffer.from(rebuilt.json)), 'the digest the signed manifest names').to.equal(layers.stateDigest);
    const fullBytes = await client.getBlob(repo('edge-delta'), layers.full.digest);
    expect(deltaBytes.length * 10, `delta ${deltaBytes.length} B, full ${fullBytes.length} B`).to.be.below(fullBytes.length);
  });

  it('when the registry lost latest, then the next build puts back the very bytes the version was published as', async () => {
    const { builder, client } = setup();
    await record(db.pool, 'edge-r', 'library/alpine', image(), '1');
    await builder.build('edge-r');
    await record(db.pool, 'edge-r', 'library/alpine', image(), '2');
    const v2 = await builder.build('edge-r');
    const other = await readState(client, 'edge-r', 'v1');
    await client.putManifest(repo('edge-r'), 'latest', other.manifest.bytes, 'application/vnd.oci.image.manifest.v1+json');
    const again = await builder.build('edge-r');
    expect(again).to.include({ result: 'repaired', version: 2, digest: v2.digest });
    expect((await client.headManifest(repo('edge-r'), 'latest'))!.digest).to.equal(v2.digest);
    expect((await client.headManifest(repo('edge-r'), 'v2'))!.digest, 'the version tag never moved').to.equal(v2.digest);
    // A version published before packages were kept cannot be remade byte for byte: the same
    // content comes back as a new version instead of re-pointing v2.
    await db.pool.query("UPDATE state_versions SET manifest = NULL, blobs = NULL WHERE group_name = 'edge-r'");
    await client.putManifest(repo('edge-r'), 'latest', other.manifest.bytes, 'application/vnd.oci.image.manifest.v1+json');
    const fresh = await builder.build('edge-r');
    expect(fresh).to.include({ result: 'published', version: 3 });
    expect((await client.headManifest(repo('edge-r'), 'v2'))!.digest).to.equal(v2.digest);
    expect((await readState(client, 'edge-r')).state.artifacts).to.deep.equal((await readState(client, 'edge-r', 'v2')).state.artifacts);
  });

  it('when the same records are recorded in another order elsewhere, then the state JSON is byte-identical (deterministic)', async () => {
    const { builder, client } = setup();
    const img = image();
    await record(db.pool, 'edge-d', 'library/alpine', img, 'b');
    await record(db.pool, 'edge-d', 'library/alpine', img, 'a');
    await builder.build('edge-d');
    const { json: published, state } = await readState(client, 'edge-d');
    expect(state.artifacts[0].tag).to.deep.equal(['a', 'b']);
    const db2 = await createTestDatabase();
    try {
      await record(db2.pool, 'edge-d', 'library/alpine', img, 'a');
      await record(db2.pool, 'edge-d', 'library/alpine', img, 'b');
      expect(await previewState(db2.pool, 'edge-d', 'https://harbor.example.com', 168)).to.equal(published.toString());
    } finally {
      await db2.drop();
    }
  });

  it('when STATE_LAYOUT=harbor-satellite, then the state is a Docker image whose tar.gz layer holds artifacts.json', async () => {
    const { builder, client } = setup({ STATE_LAYOUT: 'harbor-satellite' });
    await record(db.pool, 'edge-hs', 'library/alpine', image(), '3.20');
    const { digest } = await builder.build('edge-hs');
    const m = (await client.getManifest(repo('edge-hs'), 'latest'))!;
    expect(m.digest).to.equal(digest);
    const doc = JSON.parse(m.bytes.toString());
    expect(doc.mediaType).to.equal('application/vnd.docker.distribution.manifest.v2+json');
    expect(doc.layers[0].mediaType).to.equal('application/vnd.docker.image.rootfs.diff.tar.gzip');
    const tarball = gunzipSync(await client.getBlob(repo('edge-hs'), doc.layers[0].digest));
    expect(tarball.subarray(0, 14).toString()).to.equal('artifacts.json');
    const size = parseInt(tarball.subarray(124, 135).toString(), 8);
    const state = JSON.parse(tarball.subarray(512, 512 + size).toString());
    expect(state.group).to.equal('edge-hs');
    expect(state.artifacts[0].repository).to.equal('library/alpine');
  });

  it('when the pusher tags as it pushes (as the oras CLI does), then the signature is in place before any tag names the state', async () => {
    const { startFaultProxy } = await import('../support/fault-proxy.js');
    const { BuiltinPusher } = await import('../../worker/pusher.js');
    const { StateBuilder } = await import('../../worker/state-builder.js');
    const { ArtifactStore } = await import('../../core/store/artifact-store.js');
    const { StateStore } = await import('../../core/store/state-store.js');
    const { createLogger } = await import('../../core/logger.js');
    const { loadPrivateKey } = await import('../../core/cosign/keys.js');
    const { KEY_PASSWORD } = await import('../support/worker.js');
    const proxy = await startFaultProxy(shared.registry.url);
    try {
      const config = workerConfig({ STATE_REGISTRY: proxy.url, COSIGN_KEY: shared.keys.keyPath });
      const client = new RegistryClient(proxy.url);
      const builtin = new BuiltinPusher(client);
      // Pushes straight to the version tag, like `oras push ref:v1`.
      const tagging = { name: 'tagging', tagsWhilePushing: true, push: builtin.push.bind(builtin) };
      const signer = new KeySigner(client, loadPrivateKey(shared.keys.privatePem, KEY_PASSWORD));
      const builder = new StateBuilder(new ArtifactStore(db.pool), new StateStore(db.pool), client, tagging, signer, {
        imageRegistry: config.imageRegistry, stateProject: config.stateProject, layout: ociLayout, tombstoneRetentionHours: 168,
      }, createLogger('silent'));
      await record(db.pool, 'edge-o', 'library/alpine', image(), '1');
      const { digest } = await builder.build('edge-o');
      const puts = proxy.log.filter((l) => l.startsWith('PUT') && l.includes('/manifests/'));
      const sig = puts.findIndex((l) => l.endsWith(`${signatureTag(digest)}`));
      const v1 = puts.findIndex((l) => l.endsWith('/manifests/v1'));
      const latest = puts.findIndex((l) => l.endsWith('/manifests/latest'));
      expect(sig).to.be.at.least(0);
      expect(sig).to.be.below(v1);
      expect(v1).to.be.below(latest);
    } finally {
      await proxy.close();
    }
  });
  it('when a change commits only after a build read its group, then that build leaves the group stale for the reconcile pass', async () => {
    const { builder, client } = setup();
    const { StateStore } = await import('../../core/store/state-store.js');
    const { createPool } = await import('../../core/db/pool.js');
    await record(db.pool, 'late', 'library/app', image(), '1');
    const late = image();
    const slow = createPool(db.url, 1);
    try {
      // The late PUT takes its change id first; a later PUT commits and is built before it.
      await slow.query('BEGIN');
      await record(slow, 'late', 'library/late', late, '1');
      await record(db.pool, 'late', 'library/app', image(), '2');
      expect(await builder.build('late')).to.include({ result: 'published', version: 1 });
      await slow.query('COMMIT');
    } finally {
      await slow.end();
    }
    const states = new StateStore(db.pool);
    expect(await states.staleGroups(168), 'the published state lacks the late change').to.deep.equal(['late']);
    expect(await builder.build('late')).to.include({ result: 'published', version: 2 });
    expect((await readState(client, 'late')).state.artifacts.map((a: { digest: string }) => a.digest)).to.include(late.manifest.digest);
    expect(await states.staleGroups(168)).to.deep.equal([]);
  });

  it('when a worker that kept nothing builds a group published before, then it reads only the changes since that version and publishes what a full read gives', async () => {
    const group = 'taken-up';
    for (let i = 0; i < 40; i++) await record(db.pool, group, `library/app${i % 3}`, image(), `t${i}`);
    const first = setup();
    expect(await first.builder.build(group)).to.include({ result: 'published', version: 1, read: 'whole group' });
    const gone = image();
    await record(db.pool, group, 'library/app0', gone, 'going');
    expect(await first.builder.build(group)).to.include({ result: 'published', version: 2, read: 'changes' });
    // Another worker (or this one, restarted): nothing kept, the published package taken up.
    await new ArtifactStore(db.pool).deleteManifest({ group, repository: 'library/app0' }, gone.manifest.digest);
    await record(db.pool, group, 'library/app1', image(), 'new');
    const second = setup();
    const built = await second.builder.build(group);
    expect(built).to.include({ result: 'published', version: 3, read: 'changes since published' });
    const { json, doc, state } = await readState(second.client, group);
    const full = new StateContent(group, second.config.imageRegistry);
    full.loadFull(await new ArtifactStore(db.pool).snapshot(group, second.config.tombstoneRetentionHours, 'tombstone'));
    expect(json.equals(full.document(3)), 'the state a full read gives').to.equal(true);
    expect(built.artifacts, 'the count taken up with the package, then changed').to.equal(full.count);
    expect(state.artifacts.find((a: { digest: string }) => a.digest === gone.manifest.digest)).to.include({ deleted: true });
    // Its delta applies to version 2 and gives version 3.
    const layers = stateLayers(doc)!;
    const v2 = (await readState(second.client, group, 'v2')).state;
    const delta = JSON.parse(layerText(await second.client.getBlob(repo(group), layers.delta!.descriptor.digest), layers.delta!.descriptor.mediaType));
    expect(applyDelta(v2, delta).json).to.equal(json.toString());
    // A worker that keeps nothing in memory (STATE_CACHE_MB=0) takes it up every time.
    const keepsNothing = setup({ STATE_CACHE_MB: '0' });
    for (const version of [4, 5]) {
      await record(db.pool, group, 'library/app2', image(), `newer${version}`);
      expect(await keepsNothing.builder.build(group)).to.include({ result: 'published', version, read: 'changes since published' });
    }
  });
  it('when the published layer a worker takes up holds a chunk it would not have written so, then a change there makes it read the group in full and publish what a full read gives', async () => {
    const group = 'laid-out-otherwise';
    await seedGroup(db.pool, group, 3000); // 12 chunks
    const first = setup();
    expect(await first.builder.build(group)).to.include({ result: 'published', version: 1, read: 'whole group' });
    // The kept package of version 1 with two entries of its third chunk swapped.
    const { rows: [kept] } = await db.pool.query<{ manifest: Buffer; blobs: Buffer[] }>('SELECT manifest, blobs FROM state_versions WHERE group_name = $1 AND version = 1', [group]);
    const manifest = JSON.parse(kept!.manifest.toString()) as { layers: { digest: string; size: number; annotations: Record<string, string> }[] };
    const layer = kept!.blobs.find((b) => sha256(b) === manifest.layers[0]!.digest)!;
    const bad = swapInChunk(layer, 2);
    manifest.layers[0] = { ...manifest.layers[0]!, digest: sha256(bad.gzip), size: bad.gzip.length, annotations: { ...manifest.layers[0]!.annotations, [STATE_DIGEST_ANNOTATION]: bad.digest } };
    const bytes = Buffer.from(JSON.stringify(manifest));
    await db.pool.query('UPDATE state_versions SET manifest = $2, manifest_digest = $3, blobs = $4 WHERE group_name = $1 AND version = 1',
      [group, bytes, sha256(bytes), kept!.blobs.map((b) => (b === layer ? bad.gzip : b))]);
    // A change in that chunk, built by a worker that kept nothing.
    const full = new StateContent(group, first.config.imageRegistry);
    full.loadFull(await new ArtifactStore(db.pool).snapshot(group, first.config.tombstoneRetentionHours, 'tombstone'));
    const keys = full.keys;
    const third = keys.findIndex((k, i) => i > 0 && keys[i - 1]!.endsWith('00') && keys.slice(0, i).filter((x) => x.endsWith('00')).length === 2);
    const [repository, digest] = keys[third + 1]!.split('\u0000') as [string, string];
    await new ArtifactStore(db.pool).deleteManifest({ group, repository }, digest);
    const second = setup();
    expect(await second.builder.build(group)).to.include({ result: 'published', version: 2, read: 'whole group' });
    const after = new StateContent(group, first.config.imageRegistry);
    after.loadFull(await new ArtifactStore(db.pool).snapshot(group, first.config.tombstoneRetentionHours, 'tombstone'));
    const { json } = await readState(second.client, group);
    expect(json.equals(after.document(2)), 'the state a full read gives').to.equal(true);
  });
});
