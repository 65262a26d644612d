import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { startDockerRegistry, type LocalRegistry } from '../../harbor-dev/docker-registry.js';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig, type Config } from '../../core/config.js';
import { generateCosignKeyPair } from '../../core/cosign/keys.js';
import type { Pool } from '../../core/db/pool.js';
import { createLogger } from '../../core/logger.js';
import { RegistryClient } from '../../core/registry/registry-client.js';
import { ArtifactStore } from '../../core/store/artifact-store.js';
import { computeDigest } from '../../core/oci/digest.js';
import { parseManifest } from '../../core/oci/manifest.js';
import { KeySigner } from '../../worker/signer.js';
import { makeBuilder } from '../../worker/state-worker.js';
import { loadPrivateKey } from '../../core/cosign/keys.js';
import type { Image } from './oci.js';
import { layerText, stateLayers } from '../../core/state/format.js';

export const KEY_PASSWORD = 'key-password-for-tests';
/** Cheap scrypt for tests: the format is the same, only the cost differs. */
const TEST_COST = { N: 1024, r: 8, p: 1 };

export interface TestKeys {
  dir: string;
  keyPath: string;
  pubPath: string;
  publicPem: string;
  privatePem: string;
}

export async function testKeys(): Promise<TestKeys> {
  const dir = await mkdtemp(join(tmpdir(), 'satellite-keys-'));
  const { privatePem, publicPem } = generateCosignKeyPair(KEY_PASSWORD, TEST_COST);
  const keyPath = join(dir, 'cosign.key');
  const pubPath = join(dir, 'cosign.pub');
  await writeFile(keyPath, privatePem);
  await writeFile(pubPath, publicPem);
  return { dir, keyPath, pubPath, publicPem, privatePem };
}

export function workerConfig(env: Record<string, string>): Config {
  return loadConfig({ IMAGE_REGISTRY: 'https://harbor.example.com', COSIGN_PASSWORD: KEY_PASSWORD, LOG_LEVEL: 'silent', ...env });
}

export function testBuilder(config: Config, pool: Pool, keys: TestKeys) {
  const client = new RegistryClient(config.stateRegistry);
  const signer = new KeySigner(client, loadPrivateKey(keys.privatePem, KEY_PASSWORD));
  return { client, builder: makeBuilder(config, pool, client, signer, createLogger('silent')) };
}

/** Records an image straight into the store, as the endpoint would. */
export async function record(pool: Pool, group: string, repository: string, img: Pick<Image, 'manifest'> & Partial<Image>, tag: string | null): Promise<void> {
  const m = parseManifest(img.manifest.bytes, img.manifest.mediaType);
  if (m.digest !== computeDigest(img.manifest.bytes)) throw new Error('digest');
  await new ArtifactStore(pool).recordManifest({ group, repository }, m, tag);
}

/** A cosign key pair made once for the test file (filled in before its tests run) and removed after. */
export function useTestKeys(): TestKeys {
  const keys = {} as TestKeys;
  before(async () => {
    Object.assign(keys, await testKeys());
  });
  after(async () => {
    if (keys.dir) await rm(keys.dir, { recursive: true, force: true });
  });
  return keys;
}

/**
 * A docker-registry and a key pair for the tests of one describe block: started before
 * them, stopped and removed after them.
 */
export function useRegistryAndKeys(): { readonly registry: LocalRegistry; readonly keys: TestKeys } {
  const shared = {} as { registry: LocalRegistry; keys: TestKeys };
  before(async () => {
    shared.registry = await startDockerRegistry();
    shared.keys = await testKeys();
  });
  after(async () => {
    await shared.registry?.stop();
    if (shared.keys) await rm(shared.keys.dir, { recursive: true, force: true });
  });
  return shared;
}

/**
 * The state JSON `reference` names in `repository` (`latest` by default), read through the
 * distribution API as a satellite would; undefined when there is none.
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export async function readLatestState(client: RegistryClient, repository: string, reference = 'latest'): Promise<any> {
  const m = await client.getManifest(repository, reference);
  if (!m) return undefined;
  const full = stateLayers(JSON.parse(m.bytes.toString()) as object)?.full;
  if (!full) throw new Error(`${repository}:${reference} is not a state`);
  return JSON.parse(layerText(await client.getBlob(repository, full.digest), full.mediaType));
}
