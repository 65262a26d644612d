import { expect } from 'chai';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { startDockerRegistry, type LocalRegistry } from '../../harbor-dev/docker-registry.js';
import { readAgentState } from '../support/agent.js';
import { createTestDatabase, type TestDatabase } from '../support/db.js';
import { image, imageBlobs, index, indexBlobs, writeLayout } from '../support/oci.js';
import { freePort, spawnSatellite, until, type Spawned } from '../support/process.js';
import { dropPrefix, REDIS_URL, testPrefix } from '../support/redis.js';
import { skopeoCopy } from '../support/run.js';
import { KEY_PASSWORD, testKeys, type TestKeys } from '../support/worker.js';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const exec = promisify(execFile);
const PASSWORD = 'agent-end-to-end-secret';

describe('end to end: skopeo → endpoint → worker → signed state → agent → skopeo pulls from the agent', function () {
  this.timeout(120_000);
  let db: TestDatabase;
  let harbor: LocalRegistry; // Harbor's registry: holds the images themselves
  let states: LocalRegistry; // where the worker publishes states (Harbor's state project)
  let keys: TestKeys;
  let prefix: string;
  let work: string;
  const running: Spawned[] = [];

  before(async () => {
    harbor = await startDockerRegistry();
    states = await startDockerRegistry();
    keys = await testKeys();
    work = await mkdtemp(join(tmpdir(), 'satellite-agent-e2e-'));
    db = await createTestDatabase();
    prefix = testPrefix();
  });
  after(async () => {
    for (const p of running.splice(0)) {
      p.child.kill('SIGKILL');
      await p.exited;
    }
    await db?.drop();
    await dropPrefix(prefix);
    await harbor?.stop();
    await states?.stop();
    if (keys) await rm(keys.dir, { recursive: true, force: true });
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('when Harbor replicates an image and a multi-arch index, then the agent serves them and skopeo copies them by digest from it, byte for byte', async () => {
    const port = await freePort();
    running.push(await spawnSatellite(['serve'], {
      DATABASE_URL: db.url, REDIS_URL, QUEUE_PREFIX: prefix, HOST: '127.0.0.1', PORT: String(port), ENDPOINT_PASSWORD: PASSWORD,
      STATE_REGISTRY: states.url, IMAGE_REGISTRY: harbor.url, COSIGN_KEY: keys.keyPath, COSIGN_PASSWORD: KEY_PASSWORD,
      BUILD_DEBOUNCE_MS: '200', METRICS_PORT: '0',
    }, 'worker started'));

    const alpine = image();
    const nginx = index([{ architecture: 'amd64', os: 'linux' }, { architecture: 'arm64', os: 'linux' }]);
    await writeLayout(join(work, 'alpine'), '3.20', alpine.manifest, imageBlobs(alpine));
    await writeLayout(join(work, 'nginx'), '1.27', nginx.manifest, indexBlobs(nginx));
    for (const [name, tag] of [['alpine', '3.20'], ['nginx', '1.27']] as const) {
      // The image lands in Harbor, then Harbor's replication pushes it to the endpoint.
      await skopeoCopy(`oci:${join(work, name)}:${tag}`, `docker://${harbor.host}/library/${name}:${tag}`, 'x:y');
      await skopeoCopy(`oci:${join(work, name)}:${tag}`, `docker://127.0.0.1:${port}/edge-eu/library/${name}:${tag}`, `harbor:${PASSWORD}`);
    }

    const store = join(work, 'store');
    const config = join(work, 'agent.yaml');
    const agentPort = await freePort();
    await writeFile(config, stringify({
      registry: states.url,
      groups: [{ name: 'edge-eu', state: 'satellite/group-state/edge-eu/state', publicKey: keys.pubPath }],
      platforms: ['linux/amd64'], store, listen: `127.0.0.1:${agentPort}`, interval: '1s',
    }));
    const agent = await spawnSatellite(['agent', '--config', config], {}, 'serving the local store');
    running.push(agent);
    const local = `127.0.0.1:${agentPort}`;
    await until('both images served', async () => {
      const status = await readAgentState(store);
      const images = Object.values(status.groups?.['edge-eu']?.images ?? {}) as { status: string }[];
      return images.length === 2 && images.every((i) => i.status === 'present') ? true : undefined;
    }, 60_000);

    for (const [name, top, blobs] of [['alpine', alpine.manifest, imageBlobs(alpine)], ['nginx', nginx.manifest, [nginx.children[0]!.manifest, ...imageBlobs(nginx.children[0]!)]]] as const) {
      const dest = join(work, `pulled-${name}`);
      await exec('skopeo', ['--insecure-policy', '--override-arch', 'amd64', '--override-os', 'linux', 'copy', '--preserve-digests', '--src-tls-verify=false',
        `docker://${local}/library/${name}@${top.digest}`, `oci:${dest}:pulled`]);
      const pulled = await readdir(join(dest, 'blobs', 'sha256'));
      for (const b of blobs) {
        expect(pulled, `${name}: ${b.digest}`).to.include(b.digest.slice(7));
        expect((await readFile(join(dest, 'blobs', 'sha256', b.digest.slice(7)))).equals(b.bytes), `${name}: ${b.digest} byte for byte`).to.equal(true);
      }
    }
    // The index is the one Harbor signed, whole, though only the amd64 child is held.
    const idx = await fetch(`http://${local}/v2/library/nginx/manifests/1.27`);
    expect(Buffer.from(await idx.arrayBuffer()).equals(nginx.manifest.bytes)).to.equal(true);
    expect((await fetch(`http://${local}/v2/library/nginx/manifests/${nginx.children[1]!.manifest.digest}`)).status).to.equal(404);
  });
});
