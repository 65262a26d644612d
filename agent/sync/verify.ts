import { RegistryRequestError } from '../../core/registry/registry-client.js';
import type { VersionedState } from '../../core/state/delta.js';
import type { AgentGroup } from '../config/config.js';
import { ServedView } from '../serve/served-view.js';
import { isStoreFull } from '../store/space.js';
import type { GroupRecord, Pin } from '../store/state-files.js';
import type { GroupOutcome, PassBytes, SyncContext } from './context.js';
import { holdState, recordReads } from './hold-state.js';
import { readState, StateRefusedError } from './state-reader.js';

// Step 2 of a group's sync: a new state is read (signature first, from the delta when the
// agent holds its base: state-reader.ts), refused when it is for another group or older than
// what was applied (a replay), and only then recorded as the group's applied state.

/** Reads and checks the state at `digest`; throws StateRefusedError when it must not be applied. */
export async function verifyState(ctx: SyncContext, g: AgentGroup, rec: GroupRecord, digest: string, pin: Pin | undefined, totals: PassBytes): Promise<VersionedState> {
  const held = ctx.states.get(g.name);
  const heldJson = rec.applied && held ? await ctx.files.appliedJson(g.name) : undefined;
  const base = heldJson && rec.applied ? { stateDigest: rec.applied.stateDigest, json: heldJson } : undefined;
  const client = ctx.client(ctx.config.registry);
  const recorded = recordReads(client);
  const read = await readState(recorded.client, g, digest, base, ctx.config.maxStateBytes, ctx.log);
  totals.bytes += read.bytes;
  ctx.metrics.bytesPulled.inc({ what: 'state' }, read.bytes);
  checkAcceptable(g, rec, read.state, read.stateDigest, pin);
  const kept = await holdState(ctx, g, client, read.digest, recorded.reads, totals);
  ctx.log.info({ group: g.name, version: read.state.version, digest: read.digest, via: read.via, bytes: read.bytes }, 'new state verified');
  // What is served now stays served, tag by tag, until its replacement is present; it is
  // recorded before the new state is, so a crash in between loses none of it.
  if (held) {
    rec.fallback = ServedView.servedEntries(held, rec.images, rec.fallback);
    await ctx.files.save(ctx.doc);
  }
  await ctx.files.saveAppliedJson(g.name, read.json);
  ctx.states.set(g.name, read.state);
  rec.applied = { version: read.state.version, digest: read.digest, stateDigest: read.stateDigest, appliedAt: new Date().toISOString(), held: kept };
  if (!pin) rec.highestVersion = Math.max(rec.highestVersion, read.state.version);
  ctx.metrics.polls.inc({ group: g.name, result: 'changed' });
  return read.state;
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
