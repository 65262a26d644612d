import type { Redis } from 'ioredis';
import type { Logger } from '../core/logger.js';

// A repeatable job lives only in Redis: BullMQ keeps a job scheduler as a key and its next
// run as a delayed job. A Redis that comes back empty (restarted without persistence,
// FLUSHALL, a failover to a replica that had not caught up) has neither, and nothing would
// ever register them again before the worker restarts: the reconcile pass, the safety net
// for failed builds, would be gone for good. So the schedulers are kept, not just made:
// registered at start, checked again on every (re)connection, and checked on a timer,
// since a FLUSHALL leaves the connection up and says nothing.

export interface SchedulerSpec<Name extends string, Data> {
  /** The job scheduler's id, also the name of the jobs it makes. */
  id: Name;
  /** Period of the job, in ms. */
  every: number;
  data: Data;
}

/** What of a BullMQ Queue the keeper uses. */
export interface SchedulingQueue<Name extends string, Data> {
  getJobScheduler(id: string): Promise<{ every?: number | null } | undefined>;
  upsertJobScheduler(id: Name, repeat: { every: number }, template: { name: Name; data: Data }): Promise<unknown>;
}

export interface SchedulerKeeperOptions {
  /** How often to look whether every scheduler is still there. */
  checkMs: number;
  log: Logger;
  /** The queue's connection: each 'ready' (a reconnection, perhaps to an empty Redis) triggers a check. */
  connection: Redis;
}

export class SchedulerKeeper<Name extends string, Data> {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<Name[]> | undefined;
  private registered = false;
  private readonly onReady = () => void this.ensure().catch(() => undefined);

  constructor(
    private readonly queue: SchedulingQueue<Name, Data>,
    private readonly specs: readonly SchedulerSpec<Name, Data>[],
    private readonly o: SchedulerKeeperOptions,
  ) {}

  /** Registers the schedulers now (in the background while Redis is away) and keeps them registered. */
  start(): void {
    this.o.connection.on('ready', this.onReady);
    this.timer = setInterval(this.onReady, this.o.checkMs);
    this.timer.unref();
    this.onReady();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.o.connection.off('ready', this.onReady);
  }

  /**
   * Upserts each scheduler Redis does not hold, or holds with another period (the interval
   * was changed and the worker restarted); answers the ids it registered. One check at a
   * time: a reconnection during a timer's check waits for it instead of racing it. A
   * scheduler that is there as it should be is left alone, and its next run where it is.
   */
  async ensure(): Promise<Name[]> {
    while (this.running) await this.running.catch(() => undefined);
    this.running = this.check();
    try {
      return await this.running;
    } finally {
      this.running = undefined;
    }
  }

  private async check(): Promise<Name[]> {
    const added: Name[] = [];
    try {
      for (const s of this.specs) {
        if ((await this.queue.getJobScheduler(s.id))?.every === s.every) continue;
        await this.queue.upsertJobScheduler(s.id, { every: s.every }, { name: s.id, data: s.data });
        added.push(s.id);
      }
    } catch (err) {
      this.o.log.warn({ err: (err as Error).message }, 'could not check the repeatable jobs; trying again');
      throw err;
    }
    if (added.length && this.registered) {
      this.o.log.warn({ schedulers: added }, 'repeatable jobs were missing from redis (restarted empty, flushed or failed over); registered again');
    } else if (added.length) {
      this.o.log.info({ schedulers: added }, 'repeatable jobs registered');
    }
    this.registered = true;
    return added;
  }
}
