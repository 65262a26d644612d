import type { Logger } from 'pino';
import type { StateArtifact } from '../../core/state/render.js';
import { imageRecordKey, type ImageRecord } from '../store/state-files.js';

// An image that fails is not tried again on every pass: after its n-th failure in a row it
// waits 2^n sync intervals (at most MAX_IMAGE_BACKOFF_MS) before the next try, one image
// apart from the others (the rest of the group is pulled and served meanwhile). Its failure
// is logged once per reason: the first failure, and again only when the reason changes;
// when it is finally present, once more. Only the scheduled passes wait: a SIGHUP (an
// operator asking for a sync now) tries every failed image; the waits live in memory, so a
// restart, or `run --once`, does too. A pass stopped
// by a full store counts no failure (the store has its own backoff, store/space.ts).

export const MAX_IMAGE_BACKOFF_MS = 60 * 60 * 1000;

interface Wait {
  failures: number;
  retryAt: number;
  reason: string;
}

export class ImageBackoff {
  /** By group, then image record key. */
  private readonly waits = new Map<string, Map<string, Wait>>();

  constructor(private readonly intervalMs: number, private readonly clock: () => number = Date.now) {}

  /**
   * An explicit sync (SIGHUP, `pin`, a call of syncOnce outside the schedule): every failed
   * image is tried now; the failures counted so far stay, so a failing one waits longer after.
   */
  dueNow(): void {
    for (const waits of this.waits.values()) for (const w of waits.values()) w.retryAt = 0;
  }

  /** Whether a failed image must not be tried yet. */
  waiting(group: string, key: string): boolean {
    const w = this.waits.get(group)?.get(key);
    return w !== undefined && w.retryAt > this.clock();
  }

  /** When a waiting image is tried next (ISO time), undefined when it is due. */
  retryAt(group: string, key: string): string | undefined {
    return this.waiting(group, key) ? new Date(this.waits.get(group)!.get(key)!.retryAt).toISOString() : undefined;
  }

  /**
   * After a pull: the tried images' outcomes set their waits (and the log lines); images the
   * state no longer lists are forgotten. `storeStopped`: the store filled during the pass.
   */
  settle(log: Logger, group: string, tried: readonly StateArtifact[], images: Record<string, ImageRecord>, storeStopped: boolean): void {
    let waits = this.waits.get(group);
    if (!waits) this.waits.set(group, (waits = new Map()));
    for (const key of waits.keys()) if (!images[key]) waits.delete(key);
    for (const a of tried) {
      const key = imageRecordKey(a.repository, a.digest);
      const rec = images[key];
      const before = waits.get(key);
      if (rec?.status !== 'failed') {
        if (before) log.info({ group, repository: a.repository, digest: a.digest, failures: before.failures }, 'image available again');
        waits.delete(key);
        continue;
      }
      const reason = rec.reason ?? '';
      if (storeStopped) {
        if (before?.reason !== reason) log.warn({ group, repository: a.repository, digest: a.digest, err: reason }, 'image not made available');
        if (before) before.reason = reason;
        else waits.set(key, { failures: 0, retryAt: 0, reason });
        continue;
      }
      const failures = (before?.failures ?? 0) + 1;
      const delay = Math.min(this.intervalMs * 2 ** failures, MAX_IMAGE_BACKOFF_MS);
      const retryAt = this.clock() + delay;
      if (before?.reason !== reason) log.warn({ group, repository: a.repository, digest: a.digest, err: reason, retryAt: new Date(retryAt).toISOString() }, 'image not made available; retried with a backoff');
      waits.set(key, { failures, retryAt, reason });
    }
  }
}
