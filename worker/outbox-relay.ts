import type { Queue } from 'bullmq';
import { inTransaction, type Pool } from '../core/db/pool.js';
import type { Logger } from '../core/logger.js';
import { buildJobOptions, type BuildJobData, type BuildJobPolicy, type JobName } from './queue.js';

/**
 * Moves the endpoint's outbox into the queue. Rows are claimed with SKIP LOCKED (several
 * relays may run), deleted in the same transaction that enqueues their groups, and that
 * transaction commits only after Redis accepted every job: if Redis is away the rows stay
 * and the next pass tries again. A crash between Redis and the commit enqueues a group
 * twice, which the queue's deduplication and the idempotent build absorb.
 */
export class OutboxRelay {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private failing = false;

  constructor(
    private readonly pool: Pool,
    private readonly queue: Queue<BuildJobData, unknown, JobName>,
    private readonly policy: BuildJobPolicy,
    private readonly log: Logger,
    private readonly intervalMs = 200,
    private readonly batch = 5000,
  ) {}

  /** One pass; returns the number of groups enqueued. */
  async relayOnce(): Promise<number> {
    return inTransaction(this.pool, async (c) => {
      const { rows } = await c.query<{ group_name: string }>(
        `DELETE FROM outbox WHERE id IN (SELECT id FROM outbox ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED)
         RETURNING group_name`, [this.batch]);
      const groups = [...new Set(rows.map((r) => r.group_name))];
      for (const group of groups) {
        await withTimeout(this.queue.add('build', { group }, buildJobOptions(group, this.policy)), 5000);
      }
      return groups.length;
    });
  }

  start(): void {
    const tick = async () => {
      try {
        let n: number;
        do n = await this.relayOnce(); while (n > 0 && this.timer !== undefined);
        if (this.failing) this.log.info('outbox relay recovered');
        this.failing = false;
      } catch (err) {
        if (!this.failing) this.log.warn({ err: (err as Error).message }, 'outbox relay cannot enqueue; changes wait in the outbox');
        else this.log.debug({ err: (err as Error).message }, 'outbox relay still failing');
        this.failing = true;
      }
    };
    const loop = () => {
      this.running = tick().finally(() => {
        if (this.timer !== undefined) this.timer = setTimeout(loop, this.intervalMs);
      });
    };
    this.timer = setTimeout(loop, 0);
  }

  async stop(): Promise<void> {
    const t = this.timer;
    this.timer = undefined;
    if (t) clearTimeout(t);
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
