import { statfs } from 'node:fs/promises';
import type { AgentMetrics } from '../metrics.js';

// Room in the store. When a write finds the disk (or the quota) full, the agent stops
// pulling for the rest of the pass and, until space is freed, every later pass pulls
// nothing: what it holds is still served, the registry is still polled (with the backoff of
// an unreachable registry, see run.ts), and `status` and /metrics say the store is full.
// Without this a full disk is a download loop: every pass fetches what fits, fails on the
// rest, and fetches it again.

/**
 * Bytes a download gives back from its partial file when the disk fills (content-store.ts),
 * so that the agent's own records (status, the applied state) can still be written.
 */
export const RESERVE_BYTES = 256 * 1024;

/**
 * Free space that must appear, beyond what there was when the store filled, before pulls
 * start again: freed on purpose (by the operator, or by a state that no longer lists an
 * image), not the reserve given back, nor a few bytes a log rotation left.
 */
export const RESUME_GAIN_BYTES = 1024 * 1024;

/** Whether an error means the store cannot take more bytes: disk full, or quota reached. */
export function isStoreFull(err: unknown): boolean {
  const code = (err as { code?: string } | undefined)?.code;
  return code === 'ENOSPC' || code === 'EDQUOT';
}

/** What `status` shows while the store is full. */
export interface StoreFullRecord {
  since: string;
  /** Bytes free for the agent when last looked at; null where the file system cannot tell. */
  bytesFree: number | null;
  reason: string;
}

export class StoreSpace {
  private full?: StoreFullRecord & { freeAtFull: number | null };
  /** This pass: whether it may pull, and whether it ran out of room. */
  private pass = { pulling: true, hitFull: false };

  constructor(readonly root: string, private readonly metrics: AgentMetrics) {}

  /** Bytes the agent may still write in the store (statfs' bavail), undefined when unknown. */
  async bytesFree(): Promise<number | undefined> {
    try {
      const s = await statfs(this.root);
      return s.bavail * s.bsize;
    } catch {
      return undefined;
    }
  }

  get isFull(): boolean {
    return this.full !== undefined;
  }

  /** Whether this pass must pull nothing more: the store was full when it began, or filled since. */
  get stopped(): boolean {
    return !this.pass.pulling || this.pass.hitFull;
  }

  /** The record for `status`, undefined while there is room. */
  record(): StoreFullRecord | undefined {
    return this.full && { since: this.full.since, bytesFree: this.full.bytesFree, reason: this.full.reason };
  }

  /**
   * What an earlier run recorded: the store stays full since then, and the first pass tries
   * (how much was free then is not known), so a restart costs at most one attempt.
   */
  restore(previous: StoreFullRecord): void {
    this.full = { ...previous, freeAtFull: null };
    this.metrics.storeFull.set(1);
  }

  /** A pass begins: it may pull unless the store is full and no room appeared since. */
  async beginPass(): Promise<void> {
    this.pass = { pulling: await this.roomAgain(), hitFull: false };
  }

  /** A write found no room: this pass stops pulling, and the store is full since now (unless it was). */
  async markFull(err: unknown): Promise<void> {
    this.pass.hitFull = true;
    const free = (await this.bytesFree()) ?? null;
    const reason = (err as { code?: string }).code === 'EDQUOT' ? 'disk quota reached' : 'no space left on the device';
    this.full = { since: this.full?.since ?? new Date().toISOString(), bytesFree: free, reason, freeAtFull: this.full?.freeAtFull ?? free };
    this.metrics.storeFull.set(1);
  }

  /**
   * A pass ends (before its collection, so that what the collection frees counts as room). One
   * that ran out of room takes the free space now, after every download gave back its
   * reserve, as the mark that more must exceed; one that pulled without running out clears it.
   */
  async endPass(): Promise<void> {
    const free = await this.bytesFree();
    if (free !== undefined) this.metrics.storeFreeBytes.set(free);
    if (this.pass.hitFull && this.full) {
      this.full.freeAtFull = free ?? null;
      this.full.bytesFree = free ?? null;
    } else if (this.pass.pulling && this.full) {
      this.full = undefined;
      this.metrics.storeFull.set(0);
    }
  }

  /**
   * Whether pulls may go on: always while there is room; once full, only after free space grew
   * by RESUME_GAIN_BYTES since (where the file system cannot tell, every backed-off pass
   * tries: each costs at most what fits).
   */
  async roomAgain(): Promise<boolean> {
    if (!this.full) return true;
    const free = await this.bytesFree();
    if (free !== undefined) {
      this.metrics.storeFreeBytes.set(free);
      this.full.bytesFree = free;
    }
    return free === undefined || this.full.freeAtFull === null || free >= this.full.freeAtFull + RESUME_GAIN_BYTES;
  }
}
