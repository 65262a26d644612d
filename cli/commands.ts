import { access, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { stateRegistryCredentials, type Config } from '../core/config.js';
import { generateCosignKeyPair, loadPublicKey } from '../core/cosign/keys.js';
import { verifyCosignSignatures, verifyStateSignature } from '../core/cosign/verify.js';
import { createPool } from '../core/db/pool.js';
import { migrate } from '../core/db/migrate.js';
import { CredentialStore } from '../core/store/credential-store.js';
import { RegistryClient } from '../core/registry/registry-client.js';
import { previewState } from '../core/state/preview.js';
import { layoutNamed } from '../core/state/layouts/index.js';
import { buildState } from '../core/state/render.js';
import { ArtifactStore } from '../core/store/artifact-store.js';
import { StateStore } from '../core/store/state-store.js';
import { stateRegistryClient } from '../worker/state-worker.js';
import { stateRepository } from '../core/state/artifact.js';
import { diffVersions, publishedState } from '../core/state/version-diff.js';

const out = (s: string) => process.stdout.write(s.endsWith('\n') ? s : `${s}\n`);
const err = (s: string) => process.stderr.write(s.endsWith('\n') ? s : `${s}\n`);

function table(rows: string[][]): void {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  for (const r of rows) out(r.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd());
}

export async function list(config: Config, group: string, json: boolean): Promise<void> {
  const pool = createPool(config.databaseUrl, 2);
  try {
    if (json) {
      out(await previewState(pool, group, config.imageRegistry, config.tombstoneRetentionHours, layoutNamed(config.stateLayout), config.supersededManifests));
      return;
    }
    const store = new ArtifactStore(pool);
    if (!(await store.groupExists(group))) {
      err(`group ${group} has recorded nothing yet`);
      return;
    }
    const state = buildState(group, config.imageRegistry, await store.listGroup(group, config.tombstoneRetentionHours, config.supersededManifests));
    table([
      ['REPOSITORY', 'TAGS', 'TYPE', 'DIGEST', ''],
      ...state.artifacts.map((a) => [
        a.repository,
        a.tag.join(',') || '-',
        a.type + (a.platforms ? ` (${a.platforms.length} platforms)` : ''),
        a.digest,
        a.deleted ? 'deleted' : '',
      ]),
    ]);
  } finally {
    await pool.end();
  }
}

/** Where `make run` keeps the key pair it generates (harbor-dev/run.sh). */
export const DEV_PUBLIC_KEY = '.dev/cosign.pub';

/**
 * The public key a published state is checked with: COSIGN_PUBLIC_KEY, else the one `make
 * run` generated, when this runs where it keeps it. Only ever the public key: checking a
 * signature needs neither the private key nor its password.
 */
async function verifyingKey(config: Config): Promise<string | undefined> {
  if (config.cosignPublicKey) return config.cosignPublicKey;
  return (await access(DEV_PUBLIC_KEY).then(() => true, () => false)) ? DEV_PUBLIC_KEY : undefined;
}

/** The last published state of a group, checked live against the registry. */
export async function stateShow(config: Config, group: string, json: boolean): Promise<number> {
  const pool = createPool(config.databaseUrl, 2);
  try {
    const v = await new StateStore(pool).latestPublished(group);
    if (!v || !v.manifestDigest) {
      err(`group ${group} has no published state yet`);
      return 1;
    }
    const client = stateRegistryClient(config);
    const latest = await client.headManifest(v.repository, 'latest').catch((e: Error) => ({ digest: `unreachable: ${e.message}` }));
    const publicKey = await verifyingKey(config);
    let signature = `not checked (no public key: set COSIGN_PUBLIC_KEY, or run from where ${DEV_PUBLIC_KEY} is)`;
    if (publicKey) {
      const key = loadPublicKey(await readFile(publicKey, 'utf8'));
      const check = await verifyStateSignature(client, v.repository, v.manifestDigest, key, `${client.host}/${v.repository}`)
        .catch((e: Error) => ({ verified: false, verdicts: [{ ok: false as const, reason: e.message }] }));
      signature = check.verified ? `verified with ${publicKey}` : `NOT VERIFIED with ${publicKey} (${check.verdicts.map((x) => (x.ok ? 'ok' : x.reason)).join('; ') || 'no signature'})`;
    }
    const info = {
      group, version: v.version, digest: v.manifestDigest, reference: `${client.host}/${v.repository}:latest`,
      publishedAt: v.publishedAt?.toISOString() ?? null, artifacts: v.artifactCount, layout: v.layout,
      latestTagMatches: latest?.digest === v.manifestDigest, signature,
    };
    if (json) out(JSON.stringify(info));
    else table(Object.entries(info).map(([k, val]) => [k, String(val)]));
    return info.latestTagMatches && (!publicKey || signature.startsWith('verified')) ? 0 : 1;
  } finally {
    await pool.end();
  }
}

export async function keysGenerate(config: Config, dir: string, force: boolean): Promise<number> {
  const keyPath = join(dir, 'cosign.key');
  const pubPath = join(dir, 'cosign.pub');
  if (!force) {
    for (const p of [keyPath, pubPath]) {
      if (await access(p).then(() => true, () => false)) {
        err(`${p} exists; use --force to overwrite`);
        return 1;
      }
    }
  }
  if (config.cosignPassword === '') err('warning: COSIGN_PASSWORD is empty; the key is encrypted with an empty password');
  const { privatePem, publicPem } = generateCosignKeyPair(config.cosignPassword);
  await writeFile(keyPath, privatePem, { mode: 0o600 });
  await writeFile(pubPath, publicPem, { mode: 0o644 });
  out(`Private key written to ${keyPath}\nPublic key written to ${pubPath}`);
  return 0;
}

/** "[http(s)://]host[:port]/repo[:tag|@digest]" → its parts. */
export function parseReference(ref: string, plainHttp: boolean): { baseUrl: string; host: string; repository: string; reference: string } {
  const scheme = /^(https?):\/\//.exec(ref)?.[1];
  const rest = scheme ? ref.slice(scheme.length + 3) : ref;
  const slash = rest.indexOf('/');
  if (slash < 0) throw new Error(`${ref} has no repository`);
  const host = rest.slice(0, slash);
  let path = rest.slice(slash + 1);
  let reference = 'latest';
  const at = path.indexOf('@');
  if (at >= 0) {
    reference = path.slice(at + 1);
    path = path.slice(0, at);
  } else {
    const colon = path.lastIndexOf(':');
    if (colon >= 0) {
      reference = path.slice(colon + 1);
      path = path.slice(0, colon);
    }
  }
  return { baseUrl: `${scheme ?? (plainHttp ? 'http' : 'https')}://${host}`, host, repository: path, reference };
}

/** `cosign verify --key` for a state: signature, digest claim, identity. Exit 0 only if all hold. */
export async function verify(config: Config, ref: string, keyPath: string, opts: { plainHttp: boolean; anyIdentity: boolean }): Promise<number> {
  const key = loadPublicKey(await readFile(keyPath, 'utf8'));
  const r = parseReference(ref, opts.plainHttp);
  // The state registry's credential goes to the state registry only (same scheme, host and
  // port), never to whatever host a reference names. fetch drops Authorization on a
  // redirect to another origin.
  const creds = new URL(r.baseUrl).origin === new URL(config.stateRegistry).origin ? stateRegistryCredentials(config) : undefined;
  const client = new RegistryClient(r.baseUrl, creds);
  const manifest = await client.getManifest(r.repository, r.reference);
  if (!manifest) {
    err(`Error: ${ref}: no such manifest`);
    return 1;
  }
  const identity = opts.anyIdentity ? undefined : { exactly: `${r.host}/${r.repository}` };
  const result = await verifyCosignSignatures(client, r.repository, manifest.digest, key, identity);
  if (!result.verified) {
    err(`Error: no valid signature for ${r.host}/${r.repository}@${manifest.digest}`);
    for (const v of result.verdicts) if (!v.ok) err(`  - ${v.reason}`);
    if (result.verdicts.length === 0) err('  - no signature is attached (no .sig manifest)');
    return 1;
  }
  err(`Verification for ${r.host}/${r.repository}@${manifest.digest} --`);
  err('The following checks were performed on each of these signatures:');
  err('  - The cosign claims were validated');
  err('  - The signatures were verified against the specified public key');
  out(JSON.stringify(result.verdicts.flatMap((v) => (v.ok ? [{ critical: { identity: { 'docker-reference': v.claims.dockerReference }, image: { 'docker-manifest-digest': v.claims.manifestDigest }, type: 'cosign container image signature' } }] : []))));
  return 0;
}

/** `satellite credentials create|revoke <group>`: an endpoint credential bound to one group. */
export async function groupCredential(config: Config, action: 'create' | 'revoke', group: string): Promise<number> {
  if (!/^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*$/.test(group)) {
    err(`${JSON.stringify(group)} is not a valid group name`);
    return 2;
  }
  await migrate(config.databaseUrl);
  const pool = createPool(config.databaseUrl, 2);
  try {
    const store = new CredentialStore(pool);
    if (action === 'revoke') {
      if (!(await store.revoke(group))) {
        err(`group ${group} has no credential of its own`);
        return 1;
      }
      out(`credential of group ${group} revoked (replicas may accept it for up to 30 s more)`);
      return 0;
    }
    const { username, secret } = await store.create(group);
    out(`Register a Harbor endpoint for group ${group} with:`);
    out(`  Access ID:     ${username}`);
    out(`  Access Secret: ${secret}`);
    out('It may write only repositories under ' + `${group}/; the secret is not shown again.`);
    return 0;
  } finally {
    await pool.end();
  }
}

/** `satellite state diff <group> <vA> <vB>`: what was added, removed and retagged from A to B. */
export async function stateDiff(config: Config, group: string, a: string, b: string, json: boolean): Promise<number> {
  const client = stateRegistryClient(config);
  const repository = stateRepository(config.stateProject, group);
  const [from, to] = await Promise.all([publishedState(client, repository, a, config.stateMaxMb), publishedState(client, repository, b, config.stateMaxMb)]);
  const d = diffVersions(group, from, to);
  const { added, removed, retagged } = d;
  if (json) {
    out(JSON.stringify(d));
    return 0;
  }
  out(`group ${group}: version ${from.version} → ${to.version}`);
  for (const x of added) out(`+ ${x.repository}@${x.digest} ${x.tag.join(',')}`);
  for (const x of removed) out(`- ${x.repository}@${x.digest} ${x.tag.join(',')}`);
  for (const x of retagged) out(`~ ${x.repository}@${x.digest} ${x.from.join(',') || '(untagged)'} → ${x.to.join(',') || '(untagged)'}`);
  if (added.length + removed.length + retagged.length === 0) out('no difference in what satellites run');
  return 0;
}
