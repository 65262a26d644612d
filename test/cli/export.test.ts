import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { access, readdir, readFile, writeFile } from 'node:fs/promises';
import { generateCosignKeyPair } from '../../core/cosign/keys.js';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import { publishTwoPlatformGroup, pushImage, useAgentWorld } from '../support/agent.js';
import { image } from '../support/oci.js';
import { satellite } from '../support/run.js';
import { readArchive } from '../support/archive.js';

const exec = promisify(execFile);

// `satellite export`: a group's signed state and its images as one OCI image layout archive,
// read by real tools (skopeo's oci-archive transport, umoci) and checked file by file.

const sha = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

describe('satellite export: an air-gapped site\'s archive', function () {
  this.timeout(120_000);
  const world = useAgentWorld();


  const env = () => ({ STATE_REGISTRY: world.registryUrl, DATABASE_URL: world.db.url, COSIGN_PUBLIC_KEY: '' });

  it('when a group is exported for linux/amd64, then the archive holds the signed state, its signature and every listed image for that platform, each blob once and matching its digest', async () => {
    const { multi, app, tool, shared, published } = await publishTwoPlatformGroup(world);
    const out = join(await world.dir(), 'site.tar');
    const r = await satellite(['export', 'edge', '--platform', 'linux/amd64', '-o', out], env());
    expect(r.stdout).to.include(`version ${published.version}`);

    const { files, names } = await readArchive(out);
    expect(names.slice(0, 2), 'the layout\'s files come first').to.deep.equal(['oci-layout', 'index.json']);
    expect(new Set(names).size, 'no file twice').to.equal(names.length);
    expect(JSON.parse(files.get('oci-layout')!.toString())).to.deep.equal({ imageLayoutVersion: '1.0.0' });
    for (const [name, bytes] of files) {
      if (name.startsWith('blobs/sha256/')) expect(sha(bytes), name).to.equal(`sha256:${name.slice('blobs/sha256/'.length)}`);
    }
    const has = (digest: string) => files.has(`blobs/sha256/${digest.slice(7)}`);
    const index = JSON.parse(files.get('index.json')!.toString()) as { manifests: { digest: string; annotations: Record<string, string> }[] };
    const refs = Object.fromEntries(index.manifests.map((m) => [m.annotations['org.opencontainers.image.ref.name'], m.digest]));
    const stateRepo = 'satellite/group-state/edge/state';
    expect(refs[`${stateRepo}:v${published.version}`]).to.equal(published.digest);
    expect(refs[`${stateRepo}:${published.digest.replace(':', '-')}.sig`], 'the state\'s cosign signature').to.be.a('string');
    expect(refs).to.include({ 'library/multi:1': multi.manifest.digest, 'library/app:2': app.manifest.digest, 'library/tool:3': tool.manifest.digest });
    for (const m of index.manifests) expect(has(m.digest), m.annotations['org.opencontainers.image.ref.name']).to.equal(true);
    const [amd64, arm64] = multi.children;
    for (const b of [amd64!.manifest, amd64!.config, ...amd64!.layers, ...app.layers, ...tool.layers, app.config, tool.config]) expect(has(b.digest), b.digest).to.equal(true);
    for (const b of [arm64!.manifest, ...arm64!.layers]) expect(has(b.digest), `arm64's ${b.digest} is not wanted`).to.equal(false);
    expect(names.filter((n) => n === `blobs/sha256/${shared.digest.slice(7)}`)).to.have.length(1);

    // Real tools read it: skopeo copies an image out of it by its name, umoci lists its names.
    const copied = join(await world.dir(), 'app');
    await exec('skopeo', ['--insecure-policy', 'copy', '--preserve-digests', `oci-archive:${out}:library/app:2`, `dir:${copied}`]);
    expect(await readFile(join(copied, 'manifest.json'))).to.deep.equal(app.manifest.bytes);
    expect((await readdir(copied)).filter((f) => f !== 'manifest.json' && f !== 'version').sort()).to.deep.equal([app.config, ...app.layers].map((b) => b.digest.slice(7)).sort());
    const multiDir = join(await world.dir(), 'multi');
    await exec('skopeo', ['--insecure-policy', 'copy', '--override-arch', 'amd64', '--override-os', 'linux', `oci-archive:${out}:library/multi:1`, `dir:${multiDir}`]);
    expect(await readFile(join(multiDir, 'manifest.json'))).to.deep.equal(amd64!.manifest.bytes);
    const layout = await world.dir();
    await exec('tar', ['-xf', out, '-C', layout]);
    const listed = (await exec('umoci', ['ls', '--layout', layout])).stdout.split('\n').filter(Boolean).sort();
    expect(listed).to.include.members([`${stateRepo}:v${published.version}`, 'library/app:2', 'library/multi:1', 'library/tool:3']);
  });

  it('when the state names an image the registry does not hold, then the export fails naming it and leaves no archive', async () => {
    const client = world.client();
    const app = image();
    const missing = image();
    await pushImage(client, 'library/app', app, '1');
    await world.record('edge', 'library/app', app, '1');
    await world.record('edge', 'library/gone', missing, '1');
    await world.publish('edge');
    const out = join(await world.dir(), 'site.tar');
    const err = await satellite(['export', 'edge', '-o', out], env()).then(() => expect.fail('the export should fail'), (e: { code: number; stderr: string }) => e);
    expect(err.code).to.equal(1);
    expect(err.stderr).to.include(`library/gone@${missing.manifest.digest}`);
    for (const p of [out, `${out}.partial`]) expect(await access(p).then(() => true, () => false), p).to.equal(false);
  });

  it('when the version asked for was never published or a platform is misspelt, then the export says which and writes nothing', async () => {
    await publishTwoPlatformGroup(world);
    const out = join(await world.dir(), 'site.tar');
    const fails = (args: string[]) => satellite(['export', 'edge', '-o', out, ...args], env()).then(() => expect.fail(`${args.join(' ')} should fail`), (e: { code: number; stderr: string }) => e);
    const missing = await fails(['--version', '9']);
    expect(missing.code).to.equal(1);
    expect(missing.stderr).to.include('satellite/group-state/edge/state:v9 is not in the registry');
    const platform = await fails(['--platform', 'linux']);
    expect(platform.code).to.equal(2);
    expect(platform.stderr).to.include('--platform "linux" is not os/architecture[/variant]');
    expect(await access(out).then(() => true, () => false)).to.equal(false);
  });

  it('when a key is given, then a state signed by that key is exported and one it does not verify is refused before anything is written', async () => {
    await publishTwoPlatformGroup(world);
    const dir = await world.dir();
    const good = join(dir, 'cosign.pub');
    const other = join(dir, 'other.pub');
    await writeFile(good, world.publicPem);
    await writeFile(other, generateCosignKeyPair('x').publicPem);
    const out = join(dir, 'site.tar');
    const refused = await satellite(['export', 'edge', '-o', out, '--key', other], env()).then(() => expect.fail('another key should refuse'), (e: { code: number; stderr: string }) => e);
    expect(refused.code).to.equal(1);
    expect(refused.stderr).to.include('is not signed by that key');
    expect(await access(out).then(() => true, () => false)).to.equal(false);
    await satellite(['export', 'edge', '-o', out], { ...env(), COSIGN_PUBLIC_KEY: good });
    expect(await access(out).then(() => true, () => false)).to.equal(true);
  });
});
