import { expect } from 'chai';
import { createHash, createPublicKey } from 'node:crypto';
import { loadPrivateKey } from '../../core/cosign/keys.js';
import { readSignatureLayers, signatureTag } from '../../core/cosign/signature-image.js';
import { verifyStateSignature } from '../../core/cosign/verify.js';
import { createLogger } from '../../core/logger.js';
import { RegistryClient } from '../../core/registry/registry-client.js';
import { ArtifactStore } from '../../core/store/artifact-store.js';
import { StateStore } from '../../core/store/state-store.js';
import { BuiltinPusher, type Pusher } from '../../worker/pusher.js';
import { KeySigner, type Signer } from '../../worker/signer.js';
import type { PackagedState } from '../../core/state/artifact.js';
import { StateBuilder } from '../../worker/state-builder.js';
import { createTestDatabase, type TestDatabase } from '../support/db.js';
import { startFaultProxy, type FaultProxy } from '../support/fault-proxy.js';
import { image } from '../support/oci.js';
import { KEY_PASSWORD, record, useRegistryAndKeys, workerConfig } from '../support/worker.js';
import { ociLayout } from '../../core/state/layouts/oci.js';

const repo = (group: string) => `satellite/group-state/${group}/state`;

/**
 * Like the oras CLI: pushes to a tag, and lays the manifest out its own way (here, JSON
 * indented by one more space at each push), so what it pushes is not the rendered digest.
 */
function reformattingPusher(client: RegistryClient): Pusher & { pushes: number } {
  const p = {
    name: 'reformatting',
    tagsWhilePushing: true,
    pushes: 0,
    async push(repository: string, pkg: PackagedState, reference: string) {
      p.pushes++;
      for (const b of pkg.blobs) await client.pushBlob(repository, b.bytes);
      const bytes = Buffer.from(JSON.stringify(JSON.parse(pkg.manifest.toString()), null, p.pushes));
      await client.putManifest(repository, reference, bytes, pkg.mediaType);
    },
  };
  return p;
}

describe('the order of a publish: signature, then version tag, then latest, on every path', function () {
  this.timeout(60_000);
  const shared = useRegistryAndKeys();
  let db: TestDatabase;
  let proxy: FaultProxy;

  beforeEach(async () => {
    db = await createTestDatabase();
    proxy = await startFaultProxy(shared.registry.url);
  });
  afterEach(async () => {
    await proxy?.close();
    await db?.drop();
  });

  const builderWith = <P extends Pusher>(pusher: (c: RegistryClient) => P, signerOf: (s: Signer) => Signer = (s) => s) => {
    const config = workerConfig({ STATE_REGISTRY: proxy.url, COSIGN_KEY: shared.keys.keyPath });
    const client = new RegistryClient(proxy.url);
    const p = pusher(client);
    const signer = signerOf(new KeySigner(client, loadPrivateKey(shared.keys.privatePem, KEY_PASSWORD)));
    const builder = new StateBuilder(new ArtifactStore(db.pool), new StateStore(db.pool), client, p, signer, {
      imageRegistry: config.imageRegistry, stateProject: config.stateProject, layout: ociLayout, tombstoneRetentionHours: 168,
    }, createLogger('silent'));
    return { builder, client, pusher: p };
  };
  /** Manifest PUTs as the registry saw them, in order. */
  const manifestPuts = () => proxy.log.filter((l) => l.startsWith('PUT') && l.includes('/manifests/')).map((l) => l.slice(l.lastIndexOf('/') + 1));
  const registry = () => new RegistryClient(shared.registry.url);
  const publicKey = () => createPublicKey(shared.keys.publicPem);

  it('when the builtin pusher publishes, then the registry sees the signature, the manifest at v1, and latest, in that order', async () => {
    const { builder } = builderWith((c) => new BuiltinPusher(c));
    await record(db.pool, 'edge-b', 'library/alpine', image(), '1');
    const { digest } = await builder.build('edge-b');
    expect(manifestPuts()).to.deep.equal([signatureTag(digest), 'v1', 'latest']);
  });

  it('when a pusher that tags while pushing produces another digest than rendered, then only the signed one is ever tagged v1 or latest, and the next build finds it unchanged', async () => {
    const { builder, pusher } = builderWith(reformattingPusher);
    await record(db.pool, 'edge-o', 'library/alpine', image(), '1');
    const first = await builder.build('edge-o');
    expect(first.result).to.equal('published');
    const v1 = (await registry().headManifest(repo('edge-o'), 'v1'))!.digest;
    expect(first.digest, 'the digest reported is the one pushed').to.equal(v1);
    const puts = manifestPuts();
    expect(puts.indexOf(signatureTag(v1)), 'signed').to.be.at.least(0);
    expect(puts.indexOf(signatureTag(v1))).to.be.below(puts.indexOf('v1'));
    expect(puts.filter((p) => /^v\d+$/.test(p) || p === 'latest')).to.deep.equal(['v1', 'latest']);
    expect((await registry().headManifest(repo('edge-o'), 'latest'))!.digest).to.equal(v1);
    expect((await verifyStateSignature(registry(), repo('edge-o'), v1, publicKey(), `${proxy.host}/${repo('edge-o')}`)).verified).to.equal(true);
    const { rows } = await db.pool.query("SELECT manifest_digest FROM state_versions WHERE group_name = 'edge-o'");
    expect(rows).to.deep.equal([{ manifest_digest: v1 }]);
    const again = await builder.build('edge-o');
    expect(again.result, 'no republish loop').to.equal('unchanged');
    expect(pusher.pushes).to.equal(1);
  });

  it('when such a publish fails after v1 and is retried, then the retry keeps v1 on the same signed digest, with one signature, and succeeds', async () => {
    const { builder, pusher } = builderWith(reformattingPusher);
    proxy.rules.push({ method: 'PUT', path: /\/manifests\/latest$/, fault: 'error500', times: 1 });
    await record(db.pool, 'edge-r', 'library/alpine', image(), '1');
    await builder.build('edge-r').then(() => expect.fail('the first attempt should fail'), () => undefined);
    const v1 = (await registry().headManifest(repo('edge-r'), 'v1'))!.digest;
    const retried = await builder.build('edge-r');
    expect(retried).to.include({ result: 'published', version: 1, digest: v1 });
    expect(pusher.pushes, 'not pushed again').to.equal(1);
    expect((await registry().headManifest(repo('edge-r'), 'v1'))!.digest).to.equal(v1);
    expect((await registry().headManifest(repo('edge-r'), 'latest'))!.digest).to.equal(v1);
    expect(await readSignatureLayers(registry(), repo('edge-r'), v1)).to.have.length(1);
  });

  it('when the builtin publish is retried after latest failed, then the signature still has exactly one layer', async () => {
    const { builder } = builderWith((c) => new BuiltinPusher(c));
    proxy.rules.push({ method: 'PUT', path: /\/manifests\/latest$/, fault: 'error500', times: 2 });
    await record(db.pool, 'edge-d', 'library/alpine', image(), '1');
    for (let i = 0; i < 2; i++) await builder.build('edge-d').then(() => expect.fail('should fail'), () => undefined);
    const { digest } = await builder.build('edge-d');
    expect(manifestPuts().filter((p) => p === signatureTag(digest)), 'signed once, not at every attempt').to.have.length(1);
    expect(await readSignatureLayers(registry(), repo('edge-d'), digest)).to.have.length(1);
  });

  /** The requests of the log from `from` on, by kind. */
  const kinds = (from = 0) => {
    const counts: Record<string, number> = {};
    for (const l of proxy.log.slice(from)) {
      const [method, path] = l.split(' ') as [string, string];
      const kind = `${method} ${path.includes('/blobs/uploads/') ? 'upload' : path.includes('/blobs/') ? 'blob' : 'manifest'}`;
      counts[kind] = (counts[kind] ?? 0) + 1;
    }
    return counts;
  };

  it('when a group publishes its first version and then its second, then the registry gets the minimum: no HEAD, no GET, a POST and a PUT per new blob, three manifest PUTs', async () => {
    const { builder } = builderWith((c) => new BuiltinPusher(c));
    await record(db.pool, 'edge-n', 'library/alpine', image(), '1');
    expect((await builder.build('edge-n')).result).to.equal('published');
    // The signature's payload and config, the empty config (a new repository), the state
    // layer: a POST each (its PUT goes to the Location the registry names, past this proxy).
    expect(kinds(), 'first version').to.deep.equal({ 'POST upload': 4, 'PUT manifest': 3 });
    const from = proxy.log.length;
    await record(db.pool, 'edge-n', 'library/redis', image(), '1');
    expect((await builder.build('edge-n')).result).to.equal('published');
    // The signature's payload and config, the state layer and its delta; the config is known there.
    expect(kinds(from), 'second version').to.deep.equal({ 'POST upload': 4, 'PUT manifest': 3 });
  });

  it('when a worker that just started publishes into a repository it has not seen, then it HEADs the shared config once, not at every version', async () => {
    const first = builderWith((c) => new BuiltinPusher(c));
    await record(db.pool, 'edge-h', 'library/alpine', image(), '1');
    await first.builder.build('edge-h');
    const { builder } = builderWith((c) => new BuiltinPusher(c));
    const from = proxy.log.length;
    for (const tag of ['2', '3']) {
      await record(db.pool, 'edge-h', 'library/alpine', image(), tag);
      expect((await builder.build('edge-h')).result).to.equal('published');
    }
    expect(kinds(from)['HEAD blob'], 'one HEAD for two versions').to.equal(1);
    expect(kinds(from)['GET blob'] ?? 0).to.equal(0);
  });

  it('when the registry lost the shared config a worker saw in a repository, then its next publish uploads it again and succeeds', async () => {
    const { builder } = builderWith((c) => new BuiltinPusher(c));
    await record(db.pool, 'edge-l', 'library/alpine', image(), '1');
    await builder.build('edge-l');
    const empty = `sha256:${createHash('sha256').update('{}').digest('hex')}`;
    const res = await registry().request('DELETE', `/v2/${repo('edge-l')}/blobs/${empty}`, { repository: repo('edge-l') });
    await res.discard();
    expect(await registry().blobExists(repo('edge-l'), empty), 'the registry lost it').to.equal(false);
    await record(db.pool, 'edge-l', 'library/alpine', image(), '2');
    const next = await builder.build('edge-l');
    expect(next).to.include({ result: 'published', version: 2 });
    expect((await registry().headManifest(repo('edge-l'), 'latest'))!.digest).to.equal(next.digest);
    expect(await registry().blobExists(repo('edge-l'), empty)).to.equal(true);
  });

  it('when the signature is slow to upload, then the blobs of the state upload meanwhile and the version tag still waits for the signature', async () => {
    let signingFrom = 0;
    const slow = (s: Signer): Signer => ({
      name: s.name,
      needsSubject: s.needsSubject,
      async sign(repository, digest, opts) {
        await new Promise((r) => setTimeout(r, 300));
        signingFrom = proxy.log.length;
        return s.sign(repository, digest, opts);
      },
    });
    const { builder } = builderWith((c) => new BuiltinPusher(c), slow);
    await record(db.pool, 'edge-s', 'library/alpine', image(), '1');
    const { digest } = await builder.build('edge-s');
    expect(manifestPuts()).to.deep.equal([signatureTag(digest), 'v1', 'latest']);
    // The empty config and the state layer started uploading while the signer waited.
    expect(proxy.log.slice(0, signingFrom).filter((l) => l.startsWith('POST') && l.includes('/blobs/uploads/'))).to.have.length(2);
  });
});
