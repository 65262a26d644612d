import { expect } from 'chai';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { Metrics } from '../../core/metrics.js';
import { loadPrivateKey } from '../../core/cosign/keys.js';
import { readSignatureLayers } from '../../core/cosign/signature-image.js';
import { RegistryClient } from '../../core/registry/registry-client.js';
import { CosignCliSigner, KeySigner, loadSigningKey } from '../../worker/signer.js';
import { startWorker, type RunningWorker } from '../../worker/state-worker.js';
import { startAuthProxy, type AuthProxy } from '../support/auth-proxy.js';
import { createTestDatabase, type TestDatabase } from '../support/db.js';
import { image } from '../support/oci.js';
import { until } from '../support/process.js';
import { dropPrefix, REDIS_URL, testPrefix } from '../support/redis.js';
import { KEY_PASSWORD, record, useRegistryAndKeys, workerConfig } from '../support/worker.js';

const ROBOT = { username: 'robot$satellite', password: 'Registry-Secret-6d1f0c' };

// No cosign binary installs on this machine, so this test puts a stand-in `cosign` first on
// PATH. It checks what the worker does with a CLI, not what cosign does: the stand-in
// records its own command line (as /proc shows it to every user) and the credential it
// was handed, then fails the way a real tool may, echoing that credential.
// With STANDIN=sign it hands over to a stand-in that signs as cosign does (cosign-standin.ts).
const STANDIN = fileURLToPath(new URL('../support/cosign-standin.js', import.meta.url));
const FAKE_COSIGN = `#!/bin/sh
if [ "$STANDIN" = sign ]; then exec node ${STANDIN} "$@"; fi
if [ "$1" = version ]; then echo "GitVersion: v2.4.1"; exit 0; fi
tr '\\0' ' ' < /proc/$$/cmdline > "$RECORD_DIR/cmdline.$$" && mv "$RECORD_DIR/cmdline.$$" "$RECORD_DIR/cmdline"
env > "$RECORD_DIR/env.$$" && mv "$RECORD_DIR/env.$$" "$RECORD_DIR/env"
cat "$DOCKER_CONFIG/config.json" > "$RECORD_DIR/docker-config.$$" 2>/dev/null && mv "$RECORD_DIR/docker-config.$$" "$RECORD_DIR/docker-config"
echo "Error: signing: PUT https://x/v2/: unauthorized: auth $(cat "$DOCKER_CONFIG/config.json") pass=$COSIGN_PASSWORD" >&2
exit 1
`;

describe('secrets stay out of command lines, logs and stored job failures', function () {
  this.timeout(60_000);
  const shared = useRegistryAndKeys();
  let db: TestDatabase;
  let proxy: AuthProxy;
  let bin: string;
  let worker: RunningWorker | undefined;
  const prefix = testPrefix();
  const path = process.env.PATH;

  before(async () => {
    db = await createTestDatabase();
    proxy = await startAuthProxy(shared.registry.url, 'basic', ROBOT.username, ROBOT.password);
    bin = await mkdtemp(join(tmpdir(), 'satellite-fake-cosign-'));
    await writeFile(join(bin, 'cosign'), FAKE_COSIGN);
    await chmod(join(bin, 'cosign'), 0o755);
    process.env.PATH = `${bin}:${path}`;
    process.env.RECORD_DIR = bin;
  });
  after(async () => {
    process.env.PATH = path;
    delete process.env.RECORD_DIR;
    await worker?.stop();
    await proxy?.close();
    await db?.drop();
    await dropPrefix(prefix);
    await rm(bin, { recursive: true, force: true });
  });

  it('when the service runs cosign, then cosign inherits none of the service\'s secrets from its environment, only its own', async () => {
    const secrets: Record<string, string> = {
      DATABASE_URL: 'postgres://satellite:db-secret-in-env@db.example/satellite', ENDPOINT_PASSWORD: 'endpoint-secret-in-env',
      ADMIN_PASSWORD: 'admin-secret-in-env', HARBOR_PASSWORD: 'harbor-secret-in-env', REDIS_PASSWORD: 'redis-secret-in-env',
      COSIGN_KEY: '-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----pem-in-env',
    };
    const saved = Object.fromEntries(Object.keys(secrets).map((k) => [k, process.env[k]]));
    Object.assign(process.env, secrets);
    try {
      const key = loadPrivateKey(await readFile(shared.keys.keyPath, 'utf8'), KEY_PASSWORD);
      const cli = new CosignCliSigner(new RegistryClient(proxy.url, ROBOT), shared.keys.keyPath, key, KEY_PASSWORD, ROBOT);
      await rm(join(bin, 'env'), { force: true });
      await cli.sign('edge/env-check', `sha256:${'0'.repeat(64)}`).catch(() => undefined); // the stand-in fails after recording
      const env = await readFile(join(bin, 'env'), 'utf8');
      expect(env, 'cosign\'s own variables are still handed to it').to.include(`COSIGN_PASSWORD=${KEY_PASSWORD}`).and.include('DOCKER_CONFIG=');
      expect(env, 'the rest of the environment (PATH) is kept').to.include(`PATH=${bin}:`);
      for (const [name, value] of Object.entries(secrets)) expect(env, name).to.not.include(value);
    } finally {
      for (const [k, v] of Object.entries(saved)) if (v === undefined) delete process.env[k]; else process.env[k] = v;
    }
  });

  it('when a CLI signing fails, then neither /proc/<pid>/cmdline, the logs nor the failed job show the registry password', async () => {
    const lines: string[] = [];
    const log = pino({ level: 'debug' }, { write: (l: string) => lines.push(l) });
    const config = workerConfig({
      STATE_REGISTRY: proxy.url, STATE_REGISTRY_USERNAME: ROBOT.username, STATE_REGISTRY_PASSWORD: ROBOT.password,
      COSIGN_KEY: shared.keys.keyPath, SIGNER: 'cosign', REDIS_URL, QUEUE_PREFIX: prefix, BUILD_DEBOUNCE_MS: '0', BUILD_ATTEMPTS: '1',
    });
    worker = await startWorker({ config, pool: db.pool, log, metrics: new Metrics(), signingKey: await loadSigningKey(shared.keys.keyPath, KEY_PASSWORD) });
    await record(db.pool, 'edge-s', 'library/alpine', image(), '1');
    const failed = await until('the build to fail', async () => (await worker!.queue.getFailed()).find((j) => j.data.group === 'edge-s'));

    const basicForm = Buffer.from(`${ROBOT.username}:${ROBOT.password}`).toString('base64');
    // The stand-in did get the credential, through its private docker config, not argv.
    expect(await readFile(join(bin, 'docker-config'), 'utf8')).to.include(basicForm);
    const cmdline = await readFile(join(bin, 'cmdline'), 'utf8');
    expect(cmdline).to.include('sign');
    const stored = [failed.failedReason, ...(failed.stacktrace ?? [])].join('\n');
    expect(failed.failedReason).to.include('cosign sign failed');
    for (const [where, text] of [['cmdline', cmdline], ['logs', lines.join('\n')], ['failed job', stored]] as const) {
      for (const secret of [ROBOT.password, basicForm, KEY_PASSWORD]) expect(text, `${where} shows a secret`).to.not.include(secret);
    }
    expect(stored, 'the reason is still readable').to.include('[redacted]');
  });

  it('when SIGNER=cosign, then the state is in the registry before cosign signs it, no tag names it before the signature, and latest is signed', async () => {
    await worker?.stop();
    process.env.STANDIN = 'sign';
    try {
      const config = workerConfig({
        STATE_REGISTRY: proxy.url, STATE_REGISTRY_USERNAME: ROBOT.username, STATE_REGISTRY_PASSWORD: ROBOT.password,
        COSIGN_KEY: shared.keys.keyPath, SIGNER: 'cosign', REDIS_URL, QUEUE_PREFIX: `${prefix}c`, BUILD_DEBOUNCE_MS: '0', BUILD_ATTEMPTS: '1',
      });
      worker = await startWorker({ config, pool: db.pool, log: pino({ level: 'silent' }), metrics: new Metrics(), signingKey: await loadSigningKey(shared.keys.keyPath, KEY_PASSWORD) });
      await record(db.pool, 'edge-c', 'library/alpine', image(), '1');
      const client = new RegistryClient(proxy.url, ROBOT);
      const repo = 'satellite/group-state/edge-c/state';
      const latest = await until('latest', async () => client.headManifest(repo, 'latest'));
      expect(JSON.parse(await readFile(join(bin, 'tags-at-sign'), 'utf8')), 'tags when cosign signed').to.deep.equal([]);
      const layers = await readSignatureLayers(client, repo, latest.digest);
      expect(layers, 'one signature').to.have.length(1);
      expect((await client.listTags(repo)).sort()).to.deep.equal([`${latest.digest.replace(':', '-')}.sig`, 'latest', 'v1'].sort());
    } finally {
      delete process.env.STANDIN;
      await worker?.stop();
      worker = undefined;
      await dropPrefix(`${prefix}c`);
    }
  });

  it('when a signature by this key is already attached, then the cosign CLI is not run again (no second signature layer)', async () => {
    const client = new RegistryClient(proxy.url, ROBOT);
    const key = loadPrivateKey(shared.keys.privatePem, KEY_PASSWORD);
    const repo = 'satellite/group-state/edge-i/state';
    const digest = await client.putManifest(repo, 'x', Buffer.from(JSON.stringify({
      schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', artifactType: 'application/example',
      config: { mediaType: 'application/vnd.oci.empty.v1+json', digest: await client.pushBlob(repo, Buffer.from('{}')), size: 2 },
      layers: [],
    })), 'application/vnd.oci.image.manifest.v1+json');
    await new KeySigner(client, key).sign(repo, digest);
    await rm(join(bin, 'cmdline'), { force: true });
    const cli = new CosignCliSigner(client, shared.keys.keyPath, key, KEY_PASSWORD, ROBOT);
    expect(await cli.sign(repo, digest)).to.equal('already-signed');
    await readFile(join(bin, 'cmdline')).then(() => expect.fail('cosign ran'), () => undefined);
    expect(await readSignatureLayers(client, repo, digest)).to.have.length(1);
  });
});
