import type { Pool } from '../core/db/pool.js';
import type { Logger } from '../core/logger.js';
import { OutboxListener, type OutboxStore, type SettlePolicy } from '../core/store/outbox-store.js';
import { buildJobOptions, type BuildJobPolicy, type StateQueue } from './queue.js';

export interface RelayOptions extends SettlePolicy {
  /** This deployment's id, carried by every job. */
  deployment: string;
  /** The database to LISTEN to for committed changes (the store's); unset, the relay only polls. */
  listen?: Pool;
  /** The safety net: a pass at least this often, whatever the notifications say. */
  pollMs: number;
  /** Outbox rows claimed per transaction. @defaultValue 5000 */
  batch?: number;
}

/**
 * Moves the endpoint's outbox into the queue, one build job per group whose changes have
 * settled: no change for `quietMs` (the burst ended), or the oldest waiting change
 * `maxWaitMs` old (a burst that never pauses is still published that often).
 *
 * It wakes on Postgres notifications (an outbox insert notifies once its transaction
 * commits, unless its group had another change in the last 50 ms), then at the moment the
 * next waiting group will have settled, a quiet period after each claim, and at least
 * every `pollMs`, so a notification lost with a connection only delays a build. Rows are
 * claimed with SKIP LOCKED (several relays may run) and deleted in the transaction that
 * enqueues their groups, which commits only after Redis took every job (one pipelined
 * call): if Redis is away the rows stay and the next pass tries again. A crash between
 * Redis and the commit enqueues a group twice, which the queue's deduplication and the
 * idempotent build absorb.
 */
export class OutboxRelay {
  private timer: NodeJS.Timeout | undefined;
  private nextAt = Infinity;
  private running: Promise<void> | undefined;
  /** A wake-up asked for while a pass ran, as a time. */
  private rerunAt = Infinity;
  private stopped = true;
  private failing = false;
  private listener: OutboxListener | undefined;

  constructor(
    private readonly store: OutboxStore,
    private readonly queue: StateQueue,
    private readonly policy: BuildJobPolicy,
    private readonly log: Logger,
    private readonly options: RelayOptions,
  ) {}

  /** One pass, repeated while batches come back full; returns the groups enqueued. */
  async relayOnce(): Promise<string[]> {
    const all: string[] = [];
    for (;;) {
      const claim = await this.store.claimSettled(this.options, this.options.batch ?? 5000, async (groups) => {
        await withTimeout(this.queue.addBulk(groups.map((group) => ({ name: 'build' as const, data: { group, deployment: this.options.deployment }, opts: buildJobOptions(group, this.policy, 0) }))), 5000);
      });
      all.push(...claim.groups);
      this.plan(claim.nextReadyInMs);
      // A change of a claimed group that committed just behind the claim may not have
      // notified (an earlier change of its group from the last 50 ms had: migration 73):
      // look again one quiet period later, when it is visible and its group has settled.
      if (claim.groups.length > 0) this.plan(Math.min(this.options.quietMs, this.options.maxWaitMs));
      if (!claim.full || this.stopped) return all;
    }
  }

  start(): void {
    this.stopped = false;
    if (this.options.listen) {
      this.listener = new OutboxListener(this.options.listen, {
        // The group just changed: it settles quietMs from now, or sooner if its first
        // waiting change was earlier (maxWaitMs after that one); a pass then finds out.
        onNotify: () => this.wake(Math.min(this.options.quietMs, this.options.maxWaitMs)),
        // Notifications may have been missed while it was away.
        onConnect: () => this.wake(0),
        onError: (err, attempt) => {
          if (attempt === 1) this.log.warn({ err: err.message }, 'outbox notifications lost; polling until they are back');
          else this.log.debug({ err: err.message, attempt }, 'outbox notifications still lost');
        },
      });
      this.listener.start();
    }
    this.wake(0);
  }

  /** Runs a pass in `ms` unless one is due sooner. */
  private wake(ms: number): void {
    if (this.stopped || this.failing) return;
    const at = Date.now() + ms;
    if (this.running) {
      // After the pass in progress: it may have read the outbox before this change.
      this.rerunAt = Math.min(this.rerunAt, at);
      return;
    }
    if (at >= this.nextAt) return;
    this.schedule(at);
  }

  /** Remembers when the next group settles, for the scheduling after the current pass. */
  private planned: number | null = null;
  private plan(nextReadyInMs: number | null): void {
    if (nextReadyInMs !== null) this.planned = Math.min(this.planned ?? Infinity, nextReadyInMs);
  }

  private schedule(at: number): void {
    if (this.timer) clearTimeout(this.timer);
    this.nextAt = at;
    this.timer = setTimeout(() => this.pass(), Math.max(0, at - Date.now()));
  }

  private pass(): void {
    this.timer = undefined;
    this.nextAt = Infinity;
    this.planned = null;
    this.rerunAt = Infinity;
    this.running = (async () => {
      let retryInMs: number | undefined;
      try {
        await this.relayOnce();
        if (this.failing) this.log.info('outbox relay recovered');
        this.failing = false;
      } catch (err) {
        if (!this.failing) this.log.warn({ err: (err as Error).message }, 'outbox relay cannot enqueue; changes wait in the outbox');
        else this.log.debug({ err: (err as Error).message }, 'outbox relay still failing');
        this.failing = true;
        retryInMs = this.options.pollMs;
      }
      return retryInMs;
    })().then((retryInMs) => {
      this.running = undefined;
      if (this.stopped) return;
      // The soonest of: the poll, a wake-up asked for during the pass, the next group to
      // settle (+1 ms, as the database rounds up to whole ms).
      const now = Date.now();
      const at = [now + this.options.pollMs];
      if (retryInMs !== undefined) at.push(now + retryInMs);
      else {
        at.push(this.rerunAt);
        if (this.planned !== null) at.push(now + this.planned + 1);
      }
      this.schedule(Math.min(...at));
    });
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    await this.listener?.stop();
    await this.running;
  }
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`redis did not answer within ${ms} ms`)), ms);
    p.then((v) => {
      clearTimeout(t);
      resolve(v);
    }, (e) => {
      clearTimeout(t);
      reject(e);
    });
  });
}
