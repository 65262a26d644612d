import type { VersionedState } from '../../core/state/delta.js';
import type { AgentGroup } from '../config/config.js';
import type { GroupRecord, Pin } from '../store/state-files.js';
import type { SyncContext } from './context.js';
import type { Upstream } from './upstreams.js';

// Step 1 of a group's sync: one HEAD of the state (or of the pinned version). Only a new
// digest goes on to verify.ts; the same digest with every image in place is the end of the
// pass, and with images pending, failed and due for a retry (backoff.ts), or a blob found
// damaged, they are pulled again. The tag is resolved at the registry; only when it cannot be
// reached, at the site's upstreams (upstreams.ts), whose answer verify.ts checks as any.

export type Polled =
  | { outcome: 'unreachable' | 'missing' | 'unchanged' }
  /** The applied state, with images still to bring in. */
  | { outcome: 'retried'; state: VersionedState }
  /** A state not applied yet, at this manifest digest; `via`: named by an upstream's tag, the registry being unreachable. */
  | { outcome: 'changed'; digest: string; via?: Upstream };

/** The registry's tag or digest to ask for: the pin when there is one, else `latest`. */
export function pinnedReference(pin: Pin | undefined): string {
  return pin?.digest ?? (pin?.version !== undefined ? `v${pin.version}` : 'latest');
}

export async function poll(ctx: SyncContext, g: AgentGroup, pin: Pin | undefined, rec: GroupRecord, now: string): Promise<Polled> {
  const reference = pinnedReference(pin);
  rec.checkedAt = now;
  let head: { digest: string } | undefined;
  const site = ctx.siteClient(ctx.config.registry);
  try {
    head = await site.headManifest(g.state, reference);
  } catch (err) {
    rec.staleSince ??= now;
    rec.error = `registry unreachable: ${(err as Error).message}`;
    ctx.metrics.polls.inc({ group: g.name, result: 'unreachable' });
    ctx.metrics.failures.inc({ where: 'poll' });
    ctx.log.warn({ group: g.name, err: (err as Error).message, staleSince: rec.staleSince }, 'cannot reach the registry; serving what was applied');
    return { outcome: 'unreachable' };
  }
  if (!site.tagFrom) {
    rec.lastSuccessAt = now;
    delete rec.staleSince;
  } else {
    rec.staleSince ??= now;
    ctx.log.warn({ group: g.name, upstream: site.tagFrom.url, staleSince: rec.staleSince }, 'cannot reach the registry; the state is read from a site upstream');
  }
  if (!head) {
    rec.error = `no state at ${g.state}:${reference}`;
    ctx.metrics.polls.inc({ group: g.name, result: 'missing' });
    return { outcome: 'missing' };
  }

  const held = ctx.states.get(g.name);
  if (head.digest !== rec.applied?.digest || !held) return { outcome: 'changed', digest: head.digest, ...(site.tagFrom ? { via: site.tagFrom } : {}) };
  const images = Object.entries(rec.images);
  const due = ctx.damaged.has(g.name) || images.some(([key, i]) => i.status === 'pending' || (i.status === 'failed' && !ctx.backoff.waiting(g.name, key)));
  if (!due) {
    // Failed images waiting for their next try (backoff.ts) keep the group's error.
    const failed = images.filter(([, i]) => i.status === 'failed').length;
    if (failed) rec.error = `${failed} of ${images.length} images failed`;
    else delete rec.error;
    ctx.metrics.polls.inc({ group: g.name, result: 'unchanged' });
    return { outcome: 'unchanged' };
  }
  ctx.metrics.polls.inc({ group: g.name, result: 'retried' });
  return { outcome: 'retried', state: held };
}
