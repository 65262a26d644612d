import { expect } from 'chai';
import { loadPrivateKey } from '../../core/cosign/keys.js';
import { signatureImage, signatureTag } from '../../core/cosign/signature-image.js';
import { signPayload, simpleSigningPayload } from '../../core/cosign/simple-signing.js';
import { createTestDatabase, type TestDatabase } from '../support/db.js';
import { image } from '../support/oci.js';
import { satellite } from '../support/run.js';
import { KEY_PASSWORD, record, testBuilder, useRegistryAndKeys, workerConfig } from '../support/worker.js';

const repo = (group: string) => `satellite/group-state/${group}/state`;
const OCI = 'application/vnd.oci.image.manifest.v1+json';

describe('satellite verify refuses a signed state that was tampered with or moved', function () {
  this.timeout(60_000);
  const shared = useRegistryAndKeys();
  let db: TestDatabase;
  before(async () => {
    db = await createTestDatabase();
  });
  after(async () => db?.drop());

  const verify = (ref: string, extra: string[] = []) =>
    satellite(['verify', `${shared.registry.host}/${ref}`, '--key', shared.keys.pubPath, '--plain-http', ...extra], { STATE_REGISTRY: shared.registry.url });
  const refused = (ref: string, reason: string) => verify(ref).then(
    () => expect.fail(`accepted ${ref}`),
    (e: { code: number; stderr: string }) => {
      expect(e.code).to.equal(1);
      expect(e.stderr).to.include(reason);
    },
  );

  it('when a signed state\'s content is changed and the genuine signature is copied onto it, then the digest claim refuses it', async () => {
    const config = workerConfig({ STATE_REGISTRY: shared.registry.url, COSIGN_KEY: shared.keys.keyPath });
    const { builder, client } = testBuilder(config, db.pool, shared.keys);
    await record(db.pool, 'edge-t', 'library/alpine', image(), '3.20');
    const { digest } = await builder.build('edge-t');
    await verify(`${repo('edge-t')}:latest`);

    const manifest = JSON.parse((await client.getManifest(repo('edge-t'), digest))!.bytes.toString());
    const layer = manifest.layers[0];
    const original = await client.getBlob(repo('edge-t'), layer.digest);
    expect(original.length).to.be.greaterThan(0);
    // The attacker's state: one byte of the signed layer changed, the manifest re-pointed.
    const forged = Buffer.from(original);
    forged[forged.length - 1] = forged[forged.length - 1]! ^ 0x01;
    const forgedLayer = await client.pushBlob(repo('edge-t'), forged);
    const forgedManifest = Buffer.from(JSON.stringify({ ...manifest, layers: [{ ...layer, digest: forgedLayer, size: forged.length }, ...manifest.layers.slice(1)] }));
    const forgedDigest = await client.putManifest(repo('edge-t'), 'tampered', forgedManifest, OCI);
    // …with the genuine, valid signature of the real state attached to it.
    const genuineSig = (await client.getManifest(repo('edge-t'), signatureTag(digest)))!;
    await client.putManifest(repo('edge-t'), signatureTag(forgedDigest), genuineSig.bytes, OCI);
    await refused(`${repo('edge-t')}:tampered`, `payload claims ${digest}, not ${forgedDigest}`);
  });

  it('when a state is signed by the right key for another repository, then the identity check refuses it (unless --any-identity)', async () => {
    const config = workerConfig({ STATE_REGISTRY: shared.registry.url, COSIGN_KEY: shared.keys.keyPath });
    const { builder, client } = testBuilder(config, db.pool, shared.keys);
    await record(db.pool, 'edge-a', 'library/alpine', image(), '1');
    const { digest } = await builder.build('edge-a');
    // The same signed bytes, copied to group edge-b's place with their own signature:
    // genuine key, genuine digest, but the identity names edge-a.
    const bytes = (await client.getManifest(repo('edge-a'), digest))!.bytes;
    for (const l of JSON.parse(bytes.toString()).layers.concat(JSON.parse(bytes.toString()).config)) {
      await client.pushBlob(repo('edge-b'), await client.getBlob(repo('edge-a'), l.digest));
    }
    await client.putManifest(repo('edge-b'), 'latest', bytes, OCI);
    const key = loadPrivateKey(shared.keys.privatePem, KEY_PASSWORD);
    const payload = simpleSigningPayload(`${shared.registry.host}/${repo('edge-a')}`, digest);
    const sig = signatureImage([{ payload, signatureB64: signPayload(key, payload) }]);
    for (const b of sig.blobs) await client.pushBlob(repo('edge-b'), b);
    await client.putManifest(repo('edge-b'), signatureTag(digest), sig.manifest, OCI);
    await refused(`${repo('edge-b')}:latest`, `does not name ${shared.registry.host}/${repo('edge-b')}`);
    const anyway = await verify(`${repo('edge-b')}:latest`, ['--any-identity']);
    expect(anyway.stdout).to.include(digest);
  });
});
