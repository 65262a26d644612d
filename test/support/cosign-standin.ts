// A stand-in for `cosign sign --key <key> <host>/<repository>@<digest>` (no cosign binary
// installs on this machine). Like cosign, it resolves the reference in the registry first
// and fails when the manifest is not there; then it attaches a signature in cosign's legacy
// format, with the credential it was handed in $DOCKER_CONFIG and the key's password in
// $COSIGN_PASSWORD. It records the repository's tags as it found them when it signed, in
// $RECORD_DIR/tags-at-sign, for the test to see what was tagged before the signature.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadPrivateKey } from '../../core/cosign/keys.js';
import { RegistryClient } from '../../core/registry/registry-client.js';
import { KeySigner } from '../../worker/signer.js';

const args = process.argv.slice(2);
if (args[0] === 'version') {
  console.log('GitVersion: v2.4.1');
  process.exit(0);
}
const ref = args[args.length - 1]!;
const keyPath = args[args.indexOf('--key') + 1]!;
const match = /^([^/]+)\/(.+)@(sha256:[a-f0-9]{64})$/.exec(ref);
if (args[0] !== 'sign' || !match) {
  console.error(`Error: unsupported: ${args.join(' ')}`);
  process.exit(1);
}
const [, host, repository, digest] = match as unknown as [string, string, string, string];
const auth = (JSON.parse(readFileSync(join(process.env.DOCKER_CONFIG!, 'config.json'), 'utf8')) as { auths: Record<string, { auth: string }> }).auths[host]?.auth;
const [username, password] = auth ? Buffer.from(auth, 'base64').toString().split(/:(.*)/s) : [];
const client = new RegistryClient(`http://${host}`, username ? { username, password: password! } : undefined);
const found = await client.headManifest(repository, digest);
if (!found) {
  console.error(`Error: signing [${ref}]: accessing entity: GET http://${host}/v2/${repository}/manifests/${digest}: MANIFEST_UNKNOWN: manifest unknown`);
  process.exit(1);
}
writeFileSync(join(process.env.RECORD_DIR!, 'tags-at-sign'), JSON.stringify(await client.listTags(repository)));
const key = loadPrivateKey(readFileSync(keyPath, 'utf8'), process.env.COSIGN_PASSWORD!);
await new KeySigner(client, key).sign(repository, digest);
