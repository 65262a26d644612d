/**
 * Counts failed logins per client address in a fixed window. In memory, per replica: an
 * attacker spreading guesses over N replicas gets N times the limit, still far too few to
 * matter against a generated secret.
 */
export class FailureThrottle {
  private readonly failures = new Map<string, { count: number; until: number }>();

  constructor(
    private readonly limit: number,
    private readonly windowMs = 60_000,
    private readonly now: () => number = Date.now,
  ) {}

  fail(address: string): void {
    const t = this.now();
    const entry = this.failures.get(address);
    if (!entry || entry.until <= t) {
      this.failures.set(address, { count: 1, until: t + this.windowMs });
      if (this.failures.size > 10_000) this.sweep(t);
    } else {
      entry.count += 1;
    }
  }

  /** Seconds the address must wait, 0 when it may try. */
  blockedFor(address: string): number {
    const entry = this.failures.get(address);
    if (!entry) return 0;
    const t = this.now();
    if (entry.until <= t) {
      this.failures.delete(address);
      return 0;
    }
    return entry.count >= this.limit ? Math.ceil((entry.until - t) / 1000) : 0;
  }

  private sweep(t: number): void {
    for (const [k, v] of this.failures) if (v.until <= t) this.failures.delete(k);
  }
}
