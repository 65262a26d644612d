// How many manifest and blob bodies the agent's server sends at once: at most `perClient` to
// one client address and `total` to all. Each body holds a file open and buffers on its
// way out, so a client that asks for thousands at once (and need not read them) would
// otherwise take the device's memory and file descriptors, and the runtime on the same
// device would wait behind it. Past its own share a client gets 429, so it cannot use up
// the total that others (the runtime) draw from; past the total, everyone gets 503.
// Counted by hand: the rate limiters on npm count requests per time window, not requests
// in flight per address.

export interface StreamLimits {
  total: number;
  perClient: number;
}

export type Refusal = 'client' | 'total';

export class StreamLimiter {
  private open = 0;
  private readonly byClient = new Map<string, number>();

  constructor(readonly limits: StreamLimits) {}

  /** A slot for one body to `client`: the function that gives it back, or why there is none. */
  take(client: string): { release: () => void } | { refused: Refusal } {
    const mine = this.byClient.get(client) ?? 0;
    if (mine >= this.limits.perClient) return { refused: 'client' };
    if (this.open >= this.limits.total) return { refused: 'total' };
    this.open++;
    this.byClient.set(client, mine + 1);
    let released = false;
    return {
      release: () => {
        if (released) return;
        released = true;
        this.open--;
        const left = (this.byClient.get(client) ?? 1) - 1;
        if (left > 0) this.byClient.set(client, left);
        else this.byClient.delete(client);
      },
    };
  }

  /** Bodies being sent now, in total and to one client. */
  inFlight(client?: string): number {
    return client === undefined ? this.open : (this.byClient.get(client) ?? 0);
  }
}
