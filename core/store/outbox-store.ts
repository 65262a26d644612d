import pg from 'pg';
import { inTransaction, translate, type Pool } from '../db/pool.js';
import * as sql from './outbox-store.sql.js';

/** The channel every outbox insert notifies with its group (migration 62). */
export const OUTBOX_CHANNEL = 'satellite_outbox';

/** When a group's waiting changes are ripe for a build (BUILD_QUIET_MS, BUILD_DEBOUNCE_MS). */
export interface SettlePolicy {
  /** A group is ready once no change came for this long… */
  quietMs: number;
  /** …or once its oldest waiting change is this old. */
  maxWaitMs: number;
}

export interface Claim {
  /** The groups claimed, each once. */
  groups: string[];
  /** Whether the batch was full (more rows of ready groups may wait). */
  full: boolean;
  /** In how many ms the next group not ready yet will be; null when none waits. */
  nextReadyInMs: number | null;
}

/**
 * The endpoint's outbox as the relay consumes it. All SQL about it goes through here (outbox-store.sql.ts); times are the
 * database's (created_at and now() share one clock), so several relays agree.
 */
export class OutboxStore {
  constructor(private readonly pool: Pool) {}

  /**
   * Claims the rows of every group whose changes have settled (FOR UPDATE SKIP LOCKED, so
   * relays never claim the same row) and hands the groups to `enqueue` inside the claiming
   * transaction: the rows are deleted only if `enqueue` resolves, else they stay and wait.
   */
  async claimSettled(policy: SettlePolicy, batch: number, enqueue: (groups: string[]) => Promise<void>): Promise<Claim> {
    return inTransaction(this.pool, async (c) => {
      const { rows } = await c.query<{ groups: string[] | null; claimed: string; next_ms: number | null }>(sql.CLAIM_SETTLED,
        [policy.quietMs, policy.maxWaitMs, batch]);
      const r = rows[0]!;
      const groups = r.groups ?? [];
      if (groups.length > 0) await enqueue(groups);
      return { groups, full: Number(r.claimed) >= batch, nextReadyInMs: r.next_ms };
    });
  }
}

/**
 * A connection of its own that LISTENs to the outbox channel and calls `onNotify` with the
 * group of every committed change. It reconnects after a failure (doubling the wait up to
 * 30 s); `onConnect` runs after every (re)connection, when notifications may have been missed.
 */
export class OutboxListener {
  private client: pg.Client | undefined;
  private retry: NodeJS.Timeout | undefined;
  private stopped = false;
  private failures = 0;

  constructor(
    /** The pool whose database is listened to (its connection settings, not its connections). */
    private readonly pool: Pool,
    private readonly handlers: { onNotify: (group: string) => void; onConnect: () => void; onError: (err: Error, attempt: number) => void },
  ) {}

  start(): void {
    void this.connect();
  }

  private async connect(): Promise<void> {
    if (this.stopped) return;
    const client = new pg.Client(this.pool.options);
    this.client = client;
    let failed = false;
    const fail = (err: Error) => {
      if (failed) return;
      failed = true;
      client.removeAllListeners('notification');
      void client.end().catch(() => undefined);
      if (this.stopped) return;
      this.failures++;
      this.handlers.onError(translate(err) as Error, this.failures);
      this.retry = setTimeout(() => void this.connect(), Math.min(30_000, 500 * 2 ** Math.min(this.failures, 6)));
    };
    client.on('error', fail);
    client.on('end', () => fail(new Error('listen connection closed')));
    client.on('notification', (n) => {
      if (n.channel === OUTBOX_CHANNEL && n.payload) this.handlers.onNotify(n.payload);
    });
    try {
      await client.connect();
      await client.query(`LISTEN ${OUTBOX_CHANNEL}`);
    } catch (err) {
      fail(err as Error);
      return;
    }
    if (this.stopped) {
      await client.end().catch(() => undefined);
      return;
    }
    this.failures = 0;
    this.handlers.onConnect();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.retry) clearTimeout(this.retry);
    const c = this.client;
    this.client = undefined;
    if (c) {
      c.removeAllListeners('end');
      await c.end().catch(() => undefined);
    }
  }
}
