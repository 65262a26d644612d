import { expect } from 'chai';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { RunningEndpoint } from '../../adapter/server.js';
import { createTestDatabase, type TestDatabase } from '../support/db.js';
import { PASSWORD, startTestEndpoint, USERNAME } from '../support/endpoint.js';
import { artifact, image, imageBlobs, index, indexBlobs, writeLayout } from '../support/oci.js';
import { satellite, skopeoCopy } from '../support/run.js';

describe('skopeo, a real registry client, pushing into the endpoint', function () {
  this.timeout(120_000);
  let db: TestDatabase;
  let endpoint: RunningEndpoint;
  let work: string;

  const single = image();
  const multi = index([{ architecture: 'amd64', os: 'linux' }, { architecture: 'arm64', os: 'linux', variant: 'v8' }]);
  const sbom = artifact('application/spdx+json', Buffer.from('{"spdxVersion":"SPDX-2.3"}'), 'application/spdx+json');

  before(async () => {
    db = await createTestDatabase();
    endpoint = await startTestEndpoint(db.url);
    work = await mkdtemp(join(tmpdir(), 'satellite-skopeo-'));
    const host = endpoint.url.replace('http://', '');
    const push = async (dir: string, ref: string, top: typeof single.manifest, blobs: typeof single.layers, dest: string) => {
      await writeLayout(join(work, dir), ref, top, blobs);
      await skopeoCopy(`oci:${join(work, dir)}:${ref}`, `docker://${host}/${dest}`, `${USERNAME}:${PASSWORD}`);
    };
    await push('alpine', '3.20', single.manifest, imageBlobs(single), 'edge-eu/library/alpine:3.20');
    await push('nginx', '1.27', multi.manifest, indexBlobs(multi), 'edge-eu/library/nginx:1.27');
    await push('sbom', 'v1', sbom.manifest, imageBlobs(sbom), 'edge-eu/tools/sbom:v1');
  });

  after(async () => {
    await endpoint?.stop();
    await db?.drop();
    if (work) await rm(work, { recursive: true, force: true });
  });

  async function listJson() {
    const { stdout } = await satellite(['list', 'edge-eu', '--json'], { DATABASE_URL: db.url, IMAGE_REGISTRY: 'https://harbor.example.com' });
    return JSON.parse(stdout);
  }

  it('when skopeo copies an image, an index and an artifact, then `list --json` shows each under its source repository with the source digest', async () => {
    const state = await listJson();
    expect(state.group).to.equal('edge-eu');
    expect(state.registry).to.equal('https://harbor.example.com');
    const entries = state.artifacts.map((a: { repository: string; digest: string; tag: string[]; type: string; deleted: boolean }) =>
      [a.repository, a.digest, a.tag, a.type, a.deleted]);
    expect(entries).to.have.deep.members([
      ['library/alpine', single.manifest.digest, ['3.20'], 'IMAGE', false],
      ['library/nginx', multi.manifest.digest, ['1.27'], 'IMAGE', false],
      ['tools/sbom', sbom.manifest.digest, ['v1'], 'SBOM', false],
    ]);
  });

  it('when an index is copied, then its entry lists both platforms with the child digests, and the children are not entries of their own', async () => {
    const state = await listJson();
    const nginx = state.artifacts.find((a: { repository: string }) => a.repository === 'library/nginx');
    expect(nginx.platforms).to.deep.equal([
      { digest: multi.children[0]!.manifest.digest, mediaType: 'application/vnd.oci.image.manifest.v1+json', os: 'linux', architecture: 'amd64' },
      { digest: multi.children[1]!.manifest.digest, mediaType: 'application/vnd.oci.image.manifest.v1+json', os: 'linux', architecture: 'arm64', variant: 'v8' },
    ]);
    const digests = state.artifacts.map((a: { digest: string }) => a.digest);
    expect(digests).to.not.include(multi.children[0]!.manifest.digest);
    expect(digests).to.not.include(multi.children[1]!.manifest.digest);
  });

  it('when skopeo reads the image back by tag, then it gets the exact manifest it pushed', async () => {
    const res = await fetch(`${endpoint.url}/v2/edge-eu/library/alpine/manifests/3.20`, {
      headers: { Authorization: `Basic ${Buffer.from(`${USERNAME}:${PASSWORD}`).toString('base64')}` },
    });
    expect(res.status).to.equal(200);
    expect(res.headers.get('docker-content-digest')).to.equal(single.manifest.digest);
    expect(Buffer.from(await res.arrayBuffer()).equals(single.manifest.bytes)).to.equal(true);
  });

  it('when the same images are copied again, then the list is unchanged (idempotent)', async () => {
    const before = await listJson();
    const host = endpoint.url.replace('http://', '');
    await skopeoCopy(`oci:${join(work, 'nginx')}:1.27`, `docker://${host}/edge-eu/library/nginx:1.27`, `${USERNAME}:${PASSWORD}`);
    expect(await listJson()).to.deep.equal(before);
  });
});
