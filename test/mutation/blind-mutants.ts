// Breakages chosen blind (issue 22): by someone who had read README.md and the product source
// (adapter/, worker/, core/, agent/, cli/) but none of the tests, so that the score they give
// does not measure the tests against the breakages their own authors thought of. Each is a
// small, realistic slip in a behaviour the README promises; `tests` are the test files whose
// NAMES suggest they cover it (the files themselves were not opened; a mutant that survived
// its first choice of files was run again with the other files whose names could cover it).
// None is marked as an expected survivor: a survivor here is a behaviour nothing guards,
// listed in the README.
//
// Same format as mutants.ts. An edit of agent code (and of core code the agent bundles) is
// applied to the agent's bundle too (dist/satellite-agent.cjs), which some agent tests run;
// esbuild indents by two spaces where tsc indents by four and writes double quotes, so a text
// is given in tsc's form and rewritten for the bundle (or given for it explicitly where
// esbuild renamed a variable or dropped parentheses).
import type { Mutant } from './mutants.js';

type Edit = Mutant['edits'][number];

const BUNDLE = 'satellite-agent.cjs';

/**
 * The same breakage in tsc's output and in esbuild's bundle: leading spaces halved, single
 * quotes made double, unless the bundle's texts are given.
 */
function bundled(file: string, find: string, replace: string, inBundle?: { find: string; replace: string }): Edit[] {
  const esbuild = (s: string) => s.replace(/\n( +)/g, (_m, sp: string) => `\n${' '.repeat(sp.length / 2)}`).replace(/'/g, '"');
  return [{ file, find, replace }, { file: BUNDLE, ...(inBundle ?? { find: esbuild(find), replace: esbuild(replace) }) }];
}

export const BLIND_MUTANTS: Mutant[] = [
  // ── signatures and states (the agent, the verifier) ─────────────────────────────────────
  {
    name: 'blind: signature identity matched as a prefix of the expected repository',
    edits: bundled('core/cosign/simple-signing.js',
      'repositoryOf(claims.dockerReference) !== input.repository',
      '!repositoryOf(claims.dockerReference).startsWith(input.repository)'),
    tests: ['agent/trust-identity.test.js', 'agent/trust.test.js', 'cli/cli.test.js'],
  },
  {
    name: 'blind: the digest a signature payload claims is not compared with the state',
    edits: bundled('core/cosign/simple-signing.js',
      'if (claims.manifestDigest !== input.manifestDigest) {',
      'if (false) {'),
    tests: ['agent/trust.test.js', 'worker/verify-tamper.test.js', 'cosign/fixtures.test.js'],
  },
  {
    name: 'blind: a replay is judged against the version applied now, not the highest ever',
    edits: bundled('agent/sync/verify.js',
      'if (state.version < rec.highestVersion) {',
      'if (state.version < (rec.applied?.version ?? 0)) {'),
    tests: ['agent/replay-highest.test.js', 'agent/trust.test.js'],
  },
  {
    name: 'blind: a pinned tag v<N> whose state says another version is applied',
    edits: bundled('agent/sync/verify.js',
      'if (pin.version !== undefined && state.version !== pin.version) {',
      'if (false) {',
      { find: 'if (pin2.version !== void 0 && state.version !== pin2.version) {', replace: 'if (false) {' }),
    tests: ['agent/replay-highest.test.js', 'agent/trust.test.js', 'agent/cli.test.js', 'agent/sync.test.js', 'agent/operations.test.js'],
  },
  {
    name: 'blind: another state claiming the version already applied is accepted',
    edits: bundled('agent/sync/verify.js',
      'if (rec.applied && state.version === rec.applied.version && stateDigest !== rec.applied.stateDigest) {',
      'if (false) {'),
    tests: ['agent/trust.test.js', 'agent/replay-highest.test.js', 'agent/sync.test.js'],
  },
  {
    name: 'blind: a state for a group whose name starts with the configured one is accepted',
    edits: bundled('agent/sync/verify.js',
      'if (state.group !== g.name) {',
      'if (!state.group.startsWith(g.name)) {'),
    tests: ['agent/trust.test.js', 'agent/sync.test.js'],
  },
  {
    name: 'blind: a state rebuilt from a delta is applied without comparing its digest',
    edits: bundled('agent/sync/state-reader.js',
      'if (rebuilt && jsonDigest(rebuilt) === layers.stateDigest) {',
      'if (rebuilt) {'),
    tests: ['agent/delta-removal.test.js', 'agent/sync.test.js', 'agent/trust.test.js', 'agent/end-to-end.test.js'],
  },
  {
    name: 'blind: a manifest fetched by digest is not checked against that digest',
    edits: bundled('core/registry/registry-client.js',
      "if (reference.startsWith('sha256:') && digest !== reference) {",
      'if (false) {'),
    tests: ['agent/trust.test.js', 'agent/resilience.test.js', 'agent/sync.test.js', 'agent/bounded-reads.test.js'],
  },

  // ── platforms ────────────────────────────────────────────────────────────────────────────
  {
    name: 'blind: arm without a variant is not normalised to arm/v7',
    edits: bundled('agent/sync/platform.js',
      "if (variant === '' || variant === '7')",
      "if (variant === '7')"),
    tests: ['agent/platform.test.js'],
  },
  {
    name: 'blind: from an index the first compatible child is taken, not the best',
    edits: bundled('agent/sync/platform.js',
      'if (rank >= 0 && rank < bestRank) {',
      'if (rank >= 0 && best === undefined) {'),
    tests: ['agent/platform.test.js'],
  },
  {
    name: 'blind: an arm64 device no longer runs 32-bit arm images',
    edits: bundled('agent/sync/platform.js',
      'return [...out, ...arm(8)];',
      'return out;',
      { find: 'return [...out2, ...arm(8)];', replace: 'return out2;' }),
    tests: ['agent/platform.test.js'],
  },

  // ── the agent's store and server ─────────────────────────────────────────────────────────
  {
    name: 'blind: the blobs of a fallback image are served but not kept by the collector',
    edits: bundled('agent/serve/served-view.js',
      'set(view.blobs).add(d);\n                    view.referenced.add(d);',
      'set(view.blobs).add(d);',
      // In the bundle served-view.ts sits in a module esbuild wraps for lazy evaluation (four more spaces).
      { find: `set(view.blobs).add(d);\n${' '.repeat(14)}view.referenced.add(d);`, replace: 'set(view.blobs).add(d);' }),
    tests: ['agent/fallback-retention.test.js', 'agent/resilience.test.js'],
  },
  {
    name: 'blind: a downloaded blob is kept when its size matches, whatever its digest',
    edits: bundled('agent/store/content-store.js',
      'if (actualSize !== size || actual !== digest) {',
      'if (actualSize !== size) {'),
    tests: ['agent/resilience.test.js', 'agent/sync.test.js'],
  },
  {
    name: 'blind: a Range read is served without the whole blob verified first',
    edits: bundled('agent/serve/server.js',
      "if (range && req.method === 'GET' && !(await agent.store.verify(digest))) {",
      'if (false) {',
      { find: 'if (range && req.method === "GET" && !await agent.store.verify(digest)) {', replace: 'if (false) {' }),
    tests: ['agent/resilience.test.js', 'agent/server-guard.test.js', 'agent/sync.test.js'],
  },
  {
    name: 'blind: a per-client stream cap lets one stream more through',
    edits: bundled('agent/serve/stream-limits.js',
      'if (mine >= this.limits.perClient)',
      'if (mine > this.limits.perClient)'),
    tests: ['agent/server-guard.test.js'],
  },

  // ── a full disk ──────────────────────────────────────────────────────────────────────────
  {
    name: 'blind: a quota reached (EDQUOT) is not taken for a full store',
    edits: bundled('agent/store/space.js',
      "return code === 'ENOSPC' || code === 'EDQUOT';",
      "return code === 'ENOSPC';"),
    tests: ['agent/disk-full.test.js'],
  },
  {
    name: 'blind: a full store resumes pulling on any byte freed',
    edits: bundled('agent/store/space.js',
      'free >= this.full.freeAtFull + RESUME_GAIN_BYTES',
      'free > this.full.freeAtFull'),
    tests: ['agent/disk-full.test.js'],
  },
  {
    name: 'blind: a full store is not backed off',
    edits: bundled('agent/run.js',
      'failures = unreachable || summary?.storeFull ? failures + 1 : 0;',
      'failures = unreachable ? failures + 1 : 0;'),
    tests: ['agent/disk-full.test.js', 'agent/schedule.test.js'],
  },

  // ── the endpoint: credentials and throttling ─────────────────────────────────────────────
  {
    name: 'blind: a group credential reaches any repository whose name starts with the group',
    edits: [{ file: 'adapter/auth.js', find: "if (name.split('/')[0] !== principal.group) {", replace: 'if (!name.startsWith(principal.group)) {' }],
    tests: ['adapter/group-credentials.test.js'],
  },
  {
    name: 'blind: a group credential verified once stays accepted after revocation',
    edits: [{ file: 'adapter/auth.js', find: 'if (current?.secretHash === known.secretHash && current.group === known.group)', replace: 'if (known.group)' }],
    tests: ['adapter/group-credentials.test.js'],
  },
  {
    name: 'blind: an unknown username is refused without the scrypt a known one costs',
    edits: [{ file: 'adapter/auth.js', find: 'const ok = await verifySecret(password, row?.secretHash ?? (await dummySecretHash()));', replace: 'const ok = row !== undefined && (await verifySecret(password, row.secretHash));' }],
    tests: ['adapter/login-throttle.test.js', 'adapter/group-credentials.test.js', 'adapter/bad-input.test.js', 'admin/shared-throttle.test.js'],
  },
  {
    name: 'blind: attempts are not counted per username',
    edits: [{ file: 'adapter/login-throttle.js', find: 'await this.byUsername.consume(username);', replace: '' }],
    tests: ['adapter/login-throttle.test.js', 'admin/shared-throttle.test.js'],
  },
  {
    name: 'blind: a credential trusted by one replica is not trusted by the others',
    edits: [{ file: 'adapter/login-throttle.js', find: "if (!this.o.redis || this.o.redis.status !== 'ready')", replace: 'if (true)' }],
    tests: ['admin/shared-throttle.test.js', 'adapter/login-throttle.test.js'],
  },

  // ── the endpoint: the protocol ───────────────────────────────────────────────────────────
  {
    name: 'blind: a monolithic blob upload is not checked against its digest',
    edits: [{ file: 'adapter/blob-service.js', find: 'verify(hasher, digest);', replace: '' }],
    tests: ['adapter/digests-and-blobs.test.js', 'adapter/upload-sessions.test.js'],
  },
  {
    name: 'blind: a chunk that does not start where the upload stands is accepted',
    edits: [{ file: 'adapter/blob-service.js', find: 'if (range && range.start !== size) {', replace: 'if (false) {' }],
    tests: ['adapter/upload-sessions.test.js', 'adapter/digests-and-blobs.test.js', 'adapter/bad-input.test.js', 'adapter/harbor-replay.test.js', 'adapter/skopeo.test.js'],
  },
  {
    name: 'blind: a manifest DELETE is answered 200 instead of 202',
    edits: [{ file: 'adapter/handlers/manifests.handler.js', find: 'res.status(202)', replace: 'res.status(200)' }],
    tests: ['adapter/operations.test.js', 'adapter/harbor-replay.test.js'],
  },
  {
    name: 'blind: a dashboard request without Origin or Referer passes the CSRF check',
    edits: [{ file: 'adapter/ops-server.js', find: 'if (host !== undefined && host === req.headers.host) {', replace: 'if (host === undefined || host === req.headers.host) {' }],
    tests: ['admin/serve.test.js', 'admin/admin-api.test.js', 'adapter/operations.test.js'],
  },

  // ── the worker ───────────────────────────────────────────────────────────────────────────
  {
    name: 'blind: the state goes to its version tag before the signature is pushed',
    edits: [{
      file: 'worker/state-builder.js',
      find: 'const signed = Promise.all([saved, this.signer.sign(repository, pkg.digest, { fresh: pkg.fresh }).finally(() => watch?.mark(\'signed\'))]);\n            await Promise.all([signed, this.pusher.push(repository, pkg, versionTag(version.version), { tagAfter: signed, newRepository: version.version === 1 })]);',
      replace: 'await Promise.all([saved, this.pusher.push(repository, pkg, versionTag(version.version))]);\n            await this.signer.sign(repository, pkg.digest, { fresh: pkg.fresh });',
    }],
    tests: ['worker/publish-order.test.js', 'worker/publish.test.js'],
  },
  {
    name: 'blind: a build overtaken by a newer version still moves latest',
    edits: [{ file: 'worker/state-builder.js', find: 'if (!(await this.states.isCurrent(group, version.version)))', replace: 'if (false)' }],
    tests: ['worker/superseded.test.js', 'worker/publish.test.js', 'worker/pipeline.test.js', 'worker/scale-out.test.js'],
  },
  {
    name: 'blind: a retried build signs the state again (a second signature layer)',
    edits: [{ file: 'worker/signer.js', find: "if (mine)\n            return 'already-signed';", replace: '' }],
    tests: ['worker/publish.test.js', 'worker/publish-order.test.js', 'worker/verify-tamper.test.js'],
  },
  {
    name: 'blind: a registry refusing the state (4xx) is retried instead of failing the job',
    edits: [{ file: 'worker/job-processor.js', find: 'if (err instanceof RegistryRequestError && !err.retryable) {', replace: 'if (false) {' }],
    tests: ['worker/pipeline.test.js', 'worker/publish.test.js'],
  },
  {
    name: 'blind: a latest the registry lost is not put back by a build of an unchanged group',
    edits: [{ file: 'worker/state-builder.js', find: 'if (latest?.digest === current.manifestDigest) {', replace: 'if (current.manifestDigest !== null) {' }],
    tests: ['worker/publish.test.js', 'worker/pipeline.test.js'],
  },
  {
    name: 'blind: the pruner keeps one version fewer than STATE_KEEP_VERSIONS',
    edits: [{ file: 'core/store/state-store.sql.js', find: 'FROM ranked WHERE newer > $1 AND pruned_at IS NULL', replace: 'FROM ranked WHERE newer >= $1 AND pruned_at IS NULL' }],
    tests: ['worker/prune.test.js'],
  },
  {
    name: 'blind: expired tombstones are purged after as many days as the retention has hours',
    edits: [{ file: 'core/store/artifact-store.sql.js', find: 'WHERE deleted AND deleted_at < now() - make_interval(hours => $1)', replace: 'WHERE deleted AND deleted_at < now() - make_interval(days => $1)' }],
    tests: ['worker/prune.test.js', 'adapter/table-growth.test.js'],
  },

  // ── registration, webhooks, configuration ────────────────────────────────────────────────
  {
    name: 'blind: a registration token is claimed without locking its row',
    edits: [{ file: 'core/store/satellite-store.sql.js', find: 'WHERE t.token_hash = $1 FOR UPDATE OF t, s', replace: 'WHERE t.token_hash = $1' }],
    tests: ['admin/registration-race.test.js', 'admin/satellites.test.js'],
  },
  {
    name: 'blind: a registration token replaced by a newer one still registers',
    edits: [{ file: 'core/store/satellite-store.js', find: 'if (t.revoked_at || t.sat_revoked)', replace: 'if (t.sat_revoked)' }],
    tests: ['admin/satellites.test.js', 'admin/harbor-satellite.test.js'],
  },
  {
    name: "blind: a project's webhook may report a deletion in another project",
    edits: [{ file: 'harbor/webhook-service.js', find: "if (!repository || repository.split('/')[0] !== project) {", replace: 'if (!repository) {' }],
    tests: ['admin/webhooks.test.js'],
  },
  {
    name: 'blind: integer settings are not checked against their maximum',
    edits: [{ file: 'core/config.js', find: 'n < min || n > max', replace: 'n < min' }],
    tests: ['core/config.test.js'],
  },
];
