import { RegistryRequestError } from '../../core/registry/registry-client.js';
import type { VersionedState } from '../../core/state/delta.js';
import type { AgentGroup } from '../config/config.js';
import { ServedView } from '../serve/served-view.js';
import { isStoreFull } from '../store/space.js';
import type { GroupRecord, Pin } from '../store/state-files.js';
import type { GroupOutcome, PassBytes, SyncContext } from './context.js';
import { isDigest } from '../../core/oci/digest.js';
import { pinnedReference } from './poll.js';
import { readState, StateRefusedError, type ReadState } from './state-reader.js';
import { SiteClient, type Upstream } from './upstreams.js';

// Step 2 of a group's sync: a new state is read (signature first, from the delta when the
// agent holds its base: state-reader.ts), refused when it is for another group or older than
// what was applied (a replay), and only then recorded as the group's applied state.
// Its manifest, signature and the layers read are kept in the store, so that this agent serves
// them to its site peers (upstreams.ts), as it serves them the images.
//
// With site upstreams, the state's objects come from the first upstream that has them: a
// state refused after an upstream delivered part of it is read again from the registry alone
// (the upstream is reported); a state an upstream's tag named (the registry unreachable) and
// that is refused, a replayed older one say, is that upstream's failure: nothing is applied.

/** A state named by a site upstream's tag, the registry being unreachable, was refused. */
export class UpstreamStateError extends Error {
  constructor(readonly upstream: string, readonly refusal: StateRefusedError) {
    super(`the registry is unreachable and the state site upstream ${upstream} names was refused (${refusal.reason}): ${refusal.message}`);
    this.name = 'UpstreamStateError';
  }
}

/** Reads and checks the state at `digest`; throws StateRefusedError when it must not be applied. */
export async function verifyState(ctx: SyncContext, g: AgentGroup, rec: GroupRecord, digest: string, pin: Pin | undefined, totals: PassBytes, via?: Upstream): Promise<VersionedState> {
  const held = ctx.states.get(g.name);
  const heldJson = rec.applied && held ? await ctx.files.appliedJson(g.name) : undefined;
  const base = heldJson && rec.applied ? { stateDigest: rec.applied.stateDigest, json: heldJson } : undefined;
  let site = ctx.siteClient(ctx.config.registry, true);
  let read: ReadState;
  try {
    read = await readState(site, g, digest, base, ctx.config.maxStateBytes, ctx.log);
    if (via) checkAcceptable(g, rec, read.state, read.stateDigest, pin);
  } catch (err) {
    if (!ctx.upstreams) throw err;
    if (via && err instanceof StateRefusedError) {
      ctx.upstreams.failed(via, err, err.reason === 'replay' ? 'rollback' : 'bad-state');
      throw new UpstreamStateError(via.url, err);
    }
    if (via || site.served.size === 0) throw err;
    // Whatever failed (a refusal, a signature manifest that is not JSON or names blobs that do
    // not exist), the registry alone says whether it was the state or the upstream.
    const blamed = [...site.served];
    site = new SiteClient(ctx.client(ctx.config.registry), undefined, true);
    read = await readState(site, g, digest, base, ctx.config.maxStateBytes, ctx.log);
    for (const u of blamed) ctx.upstreams.failed(u, err, 'bad-state');
  }
  const wan = Math.max(0, read.bytes - site.fromUpstreams);
  totals.bytes += wan;
  ctx.metrics.bytesPulled.inc({ what: 'state' }, wan);
  checkAcceptable(g, rec, read.state, read.stateDigest, pin);
  ctx.log.info({ group: g.name, version: read.state.version, digest: read.digest, via: read.via, bytes: read.bytes, fromUpstreams: site.fromUpstreams }, 'new state verified');
  await keepStateContent(ctx, g, rec, site, read, pin);
  // What is served now stays served, tag by tag, until its replacement is present; it is
  // recorded before the new state is, so a crash in between loses none of it.
  if (held) {
    rec.fallback = ServedView.servedEntries(held, rec.images, rec.fallback);
    await ctx.files.save(ctx.doc);
  }
  await ctx.files.saveAppliedJson(g.name, read.json);
  ctx.states.set(g.name, read.state);
  rec.applied = { version: read.state.version, digest: read.digest, stateDigest: read.stateDigest, appliedAt: new Date().toISOString() };
  if (!pin) rec.highestVersion = Math.max(rec.highestVersion, read.state.version);
  ctx.metrics.polls.inc({ group: g.name, result: 'changed' });
  return read.state;
}

/** The state's manifest, signature and layers into the store, and recorded to be served (served-view.ts). */
async function keepStateContent(ctx: SyncContext, g: AgentGroup, rec: GroupRecord, site: SiteClient, read: ReadState, pin: Pin | undefined): Promise<void> {
  const tags: Record<string, string> = {};
  const reference = pinnedReference(pin);
  if (!isDigest(reference)) tags[reference] = read.digest;
  tags[`v${read.state.version}`] ??= read.digest;
  for (const [tag, d] of site.kept.tags) tags[tag] = d;
  for (const [d, bytes] of [...site.kept.manifests, ...site.kept.blobs]) await ctx.store.write(d, bytes);
  rec.stateContent = { repository: g.state, tags, manifests: [...site.kept.manifests.keys()], blobs: [...site.kept.blobs.keys()] };
}

/** Refuses a state for another group, and (unless pinned) one older than what was applied. */
function checkAcceptable(g: AgentGroup, rec: GroupRecord, state: VersionedState, stateDigest: string, pin: Pin | undefined): void {
  if (state.group !== g.name) {
    throw new StateRefusedError('wrong-group', `the state is for group ${JSON.stringify(state.group)}, not ${JSON.stringify(g.name)}`);
  }
  if (pin) {
    if (pin.version !== undefined && state.version !== pin.version) {
      throw new StateRefusedError('replay', `the state tagged v${pin.version} says it is version ${state.version}`);
    }
    return;
  }
  if (state.version < rec.highestVersion) {
    throw new StateRefusedError('replay', `version ${state.version} is older than version ${rec.highestVersion} already applied (a replayed state?); pin it to go back on purpose`);
  }
  if (rec.applied && state.version === rec.applied.version && stateDigest !== rec.applied.stateDigest) {
    throw new StateRefusedError('replay', `another state claims version ${state.version}, which is already applied`);
  }
}

/**
 * What a new state that was not applied comes to: refused, unreadable (what was applied is
 * still served), or not recorded for want of disk. Anything else is not the state's fault
 * and is thrown on.
 */
export async function notApplied(ctx: SyncContext, g: AgentGroup, rec: GroupRecord, err: unknown, now: string): Promise<GroupOutcome> {
  if (err instanceof UpstreamStateError) {
    // Not the registry's answer: the registry is still to be reached, what was applied served.
    rec.staleSince ??= now;
    rec.error = err.message;
    ctx.metrics.polls.inc({ group: g.name, result: 'unreachable' });
    ctx.metrics.failures.inc({ where: 'poll' });
    return 'unreachable';
  }
  if (err instanceof StateRefusedError) {
    rec.error = `state refused (${err.reason}): ${err.message}`;
    ctx.metrics.polls.inc({ group: g.name, result: 'refused' });
    ctx.metrics.failures.inc({ where: 'state' });
    ctx.log.error({ group: g.name, reason: err.reason, err: err.message }, 'state refused; nothing applied');
    return 'refused';
  }
  if (err instanceof RegistryRequestError) {
    rec.staleSince ??= now;
    rec.error = `cannot read the state: ${err.message}`;
    ctx.metrics.failures.inc({ where: 'poll' });
    ctx.log.warn({ group: g.name, err: err.message }, 'cannot read the state; serving what was applied');
    return 'unreachable';
  }
  if (isStoreFull(err)) {
    await ctx.storeFull(err);
    rec.error = `the store is full: the new state could not be recorded (${(err as Error).message})`;
    return 'full';
  }
  throw err;
}
