import type { KeyObject } from 'node:crypto';
import { signatureImage, signatureTag } from '../core/cosign/signature-image.js';
import { signPayload, simpleSigningPayload } from '../core/cosign/simple-signing.js';
import { RegistryClient } from '../core/registry/registry-client.js';
import { sha256 } from '../core/state/artifact.js';

// The signed floor (issue 21 item 4): the fewest registry requests a signed state publish
// needs in our layout, made by a plain client with no database and no queue, from packages
// rendered beforehand. Per version, in repository <namespace>/<group>/state:
//   the signature: its payload and config uploaded (POST, PUT each; both new bytes, so no
//     HEAD), then its manifest PUT at sha256-<hex>.sig;
//   meanwhile the state's blobs: the layer (and the delta) uploaded the same way; the empty
//     config only into a new repository (it is the same `{}` in every version after);
//   the manifest PUT at v<N> once the signature is in, then at `latest`.
// A first version is then 4 uploads (signature payload and config, empty config, layer) and 3
// manifest PUTs; a next one 4 uploads (the empty config is there, the delta is new) and 3
// manifest PUTs. No HEAD and no GET: every blob but the config is new bytes. An unsigned push
// of the same package is 1-2 uploads (with a HEAD each) and 1 manifest PUT.

export interface FloorPackage {
  group: string;
  version: number;
  manifest: Buffer;
  blobs: Buffer[];
}

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const EMPTY_CONFIG = sha256(Buffer.from('{}'));

/** Publishes one signed version with exactly the minimum requests. */
async function publishSigned(client: RegistryClient, key: KeyObject, repository: string, p: FloorPackage, newRepository: boolean): Promise<void> {
  const digest = sha256(p.manifest);
  const payload = simpleSigningPayload(`${client.host}/${repository}`, digest);
  const sig = signatureImage([{ payload, signatureB64: signPayload(key, payload) }]);
  await Promise.all([
    (async () => {
      await Promise.all(sig.blobs.map((b) => client.pushBlob(repository, b, { isNew: true })));
      await client.putManifest(repository, signatureTag(digest), sig.manifest, OCI_MANIFEST);
    })(),
    ...p.blobs.filter((b) => newRepository || sha256(b) !== EMPTY_CONFIG).map((b) => client.pushBlob(repository, b, { isNew: true })),
  ]);
  await client.putManifest(repository, `v${p.version}`, p.manifest, OCI_MANIFEST);
  await client.putManifest(repository, 'latest', p.manifest, OCI_MANIFEST);
}

/**
 * The packages published signed, `concurrency` at a time, into <namespace>/<group>/state;
 * `newRepositories`: the repositories are empty (a first version), else this floor filled
 * them before. Returns the wall time in ms.
 */
export async function signedFloor(registryUrl: string, key: KeyObject, namespace: string, packages: FloorPackage[], concurrency: number, newRepositories: boolean): Promise<number> {
  const client = new RegistryClient(registryUrl);
  let next = 0;
  const t = performance.now();
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < packages.length) {
      const p = packages[next++]!;
      await publishSigned(client, key, `${namespace}/${p.group}/state`, p, newRepositories);
    }
  }));
  return performance.now() - t;
}
