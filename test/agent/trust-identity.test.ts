import { expect } from 'chai';
import { generateKeyPairSync } from 'node:crypto';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parse } from 'yaml';
import { loadPublicKey } from '../../core/cosign/keys.js';
import { signatureTag } from '../../core/cosign/signature-image.js';
import { verifyImageSignature } from '../../core/cosign/verify.js';
import { signPayload, simpleSigningPayload, verifySignatureLayer } from '../../core/cosign/simple-signing.js';
import { pushImage, runBundle, useAgentWorld } from '../support/agent.js';
import { image } from '../support/oci.js';
import { satellite } from '../support/run.js';

// The identity a state's signature names (simple signing's `docker-reference`) must be the
// state's own repository, exactly: a repository whose name merely starts with it
// (…/edge/state-test for …/edge/state) is another repository, whose signed states must not
// be accepted for this one, by the verifier (`satellite verify`) nor by the agent.

const STATE = 'satellite/group-state/edge/state';
const OCI = 'application/vnd.oci.image.manifest.v1+json';
const DIGEST = `sha256:${'ab'.repeat(32)}`;

describe('signature identity: the verifier matches the repository exactly', () => {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const expected = `harbor.example.com/${STATE}`;
  const verdict = (identity: string) => {
    const payload = simpleSigningPayload(identity, DIGEST);
    return verifySignatureLayer({ key: publicKey, payload, signatureB64: signPayload(privateKey, payload), manifestDigest: DIGEST, repository: expected });
  };

  it('when the identity is the state\'s repository (with or without a tag or digest), then the signature is accepted', () => {
    for (const identity of [expected, `${expected}:latest`, `${expected}@${DIGEST}`]) expect(verdict(identity).ok, identity).to.equal(true);
  });

  it('when the identity names a repository that starts with the expected one, or that it starts with, or another host, then the signature is refused naming both', () => {
    for (const identity of [`${expected}-test`, `${expected}-test:latest`, `${expected}/sub`, expected.slice(0, -1), `harbor.example.com.evil/${STATE}`, `evil.example/harbor.example.com/${STATE}`]) {
      const v = verdict(identity);
      expect(v.ok, identity).to.equal(false);
      expect(v.ok ? '' : v.reason, identity).to.equal(`payload identity ${identity} does not name ${expected}`);
    }
  });
});

describe('signature identity of an image (verifyImages): its repository under any registry host', () => {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const verdict = (identity: string) => {
    const payload = simpleSigningPayload(identity, DIGEST);
    return verifySignatureLayer({ key: publicKey, payload, signatureB64: signPayload(privateKey, payload), manifestDigest: DIGEST, repositoryAnyHost: 'library/app' });
  };

  it('when an image\'s signature names its repository under Harbor\'s external name, another host, or none, then it is accepted', () => {
    for (const identity of ['harbor.example.com/library/app', 'harbor.internal:8443/library/app:1', `library/app@${DIGEST}`]) expect(verdict(identity).ok, identity).to.equal(true);
  });

  it('when an image\'s signature names another repository, then it is refused naming what it names', () => {
    for (const identity of ['harbor.example.com/library/app2', 'harbor.example.com/library', 'harbor.example.com/library/app/sub', 'harbor.example.com/library-app',
      // a repository that merely ends with the expected path: another project's copy
      'harbor.example.com/other/library/app', 'other/library/app', 'evil/library/app:1']) {
      const v = verdict(identity);
      expect(v.ok, identity).to.equal(false);
      expect(v.ok ? '' : v.reason, identity).to.equal(`signature names ${identity}`);
    }
  });
});

describe('signature identity: a state signed for …/edge/state-test is refused for …/edge/state', function () {
  this.timeout(60_000);
  const world = useAgentWorld();

  /**
   * Publishes edge's state, then replaces its signature with one by the same key as the
   * signer makes it for the state published at `<state>-test` (a staging repository):
   * the same digest, the right key, only the identity names the other repository.
   */
  const publishSignedForTest = async () => {
    const img = image();
    await pushImage(world.client(), 'library/app', img);
    await world.record('edge', 'library/app', img, '1');
    const published = await world.publish('edge');
    const client = world.client();
    const testRepo = `${STATE}-test`;
    await world.sign(testRepo, published.digest);
    const sig = (await client.getManifest(testRepo, signatureTag(published.digest)))!;
    const doc = JSON.parse(sig.bytes.toString());
    for (const d of [doc.config, ...doc.layers]) await client.pushBlob(STATE, await client.getBlob(testRepo, d.digest));
    await client.putManifest(STATE, signatureTag(published.digest), sig.bytes, OCI);
    const payload = (await client.getBlob(STATE, doc.layers[0].digest)).toString();
    expect(doc.layers, 'the only signature attached').to.have.length(1);
    expect(JSON.parse(payload).critical.identity['docker-reference']).to.equal(`${world.registryHost}/${testRepo}`);
    return { ...published, img };
  };

  it('when an image carries a signature by the group\'s image key made for another repository, then the image verifier refuses it naming that repository, and accepts the image once it is signed for its own', async () => {
    const client = world.client();
    const img = image();
    const digest = img.manifest.digest;
    for (const repo of ['library/app', 'library/app2']) await pushImage(client, repo, img);
    await world.sign('library/app2', digest);
    const sig = (await client.getManifest('library/app2', signatureTag(digest)))!;
    const doc = JSON.parse(sig.bytes.toString());
    for (const d of [doc.config, ...doc.layers]) await client.pushBlob('library/app', await client.getBlob('library/app2', d.digest));
    await client.putManifest('library/app', signatureTag(digest), sig.bytes, OCI);
    const key = loadPublicKey(world.publicPem);

    const refused = await verifyImageSignature(client, 'library/app', digest, key);
    expect(refused.verified).to.equal(false);
    expect(refused.verdicts.map((v) => (v.ok ? 'ok' : v.reason))).to.deep.equal([`signature names ${world.registryHost}/library/app2`]);
    await world.sign('library/app', digest);
    expect((await verifyImageSignature(client, 'library/app', digest, key)).verified, 'signed for its own repository').to.equal(true);
  });

  it('when satellite verify checks it, then it exits 1 naming the identity; the same signature passes only with --any-identity', async () => {
    const published = await publishSignedForTest();
    const keyPath = join(await world.dir(), 'cosign.pub');
    await writeFile(keyPath, world.publicPem);
    const verify = (extra: string[] = []) =>
      satellite(['verify', `${world.registryHost}/${STATE}:latest`, '--key', keyPath, '--plain-http', ...extra], { STATE_REGISTRY: world.registryUrl, LOG_LEVEL: 'silent' });
    const refused = await verify().then(
      () => expect.fail('satellite verify accepted a state signed for another repository'),
      (e: { code: number; stderr: string }) => e,
    );
    expect(refused.code).to.equal(1);
    expect(refused.stderr).to.include(`payload identity ${world.registryHost}/${STATE}-test does not name ${world.registryHost}/${STATE}`);
    const anyway = await verify(['--any-identity']);
    expect(anyway.stdout, 'the key and the digest are genuine: only the identity is wrong').to.include(published.digest);
  });

  it('when the agent bundle runs --once, then the state is refused, it exits 1 and nothing is applied or pulled', async () => {
    await publishSignedForTest();
    const file = await world.configFile({ logLevel: 'info' }); // identity: the registry host and the state, by default
    const run = await runBundle(['--once', '--config', file]);
    expect(run.code, run.out).to.equal(1);
    expect(run.out).to.include('state refused; nothing applied');
    const status = JSON.parse((await runBundle(['status', '--json', '--config', file])).out);
    expect(status.groups[0]).to.include({ name: 'edge', version: null, digest: null });
    expect(status.groups[0].error).to.match(/state refused \(unsigned\).*does not name/);
    expect(status.groups[0].images).to.deep.equal({ present: 0, pending: 0, failed: 0, skipped: 0 });
    const store = parse(await readFile(file, 'utf8')).store as string;
    const blobs = await readdir(join(store, 'blobs', 'sha256')).catch(() => []);
    expect(blobs, 'no image byte pulled').to.deep.equal([]);
  });
});
