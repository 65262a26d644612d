import {
  Counter,
  Gauge,
  Histogram,
  Registry,
  collectDefaultMetrics,
  type CounterConfiguration,
  type GaugeConfiguration,
  type HistogramConfiguration,
} from 'prom-client';

/**
 * One process's Prometheus registry: node's default process metrics under `prefix`, and
 * makers for metrics registered in it. The service's metrics (below) and the agent's
 * (agent/metrics.ts) are each one of these.
 */
export class MetricsRegistry {
  readonly registry = new Registry();

  constructor(prefix: string) {
    collectDefaultMetrics({ register: this.registry, prefix });
  }

  protected counter<T extends string>(config: Omit<CounterConfiguration<T>, 'registers'>): Counter<T> {
    return new Counter({ ...config, registers: [this.registry] });
  }

  protected gauge<T extends string>(config: Omit<GaugeConfiguration<T>, 'registers'>): Gauge<T> {
    return new Gauge({ ...config, registers: [this.registry] });
  }

  protected histogram<T extends string>(config: Omit<HistogramConfiguration<T>, 'registers'>): Histogram<T> {
    return new Histogram({ ...config, registers: [this.registry] });
  }
}

/** The service's Prometheus metrics, exposed at GET /metrics. */
export class Metrics extends MetricsRegistry {
  readonly manifestsReceived = this.counter({
    name: 'satellite_manifests_received_total',
    help: 'Manifest writes the endpoint answered, by action and outcome',
    labelNames: ['action', 'outcome'] as const,
  });
  readonly builds = this.counter({
    name: 'satellite_state_builds_total',
    help: 'State builds, by result (published, unchanged, repaired, superseded, retry, failed)',
    labelNames: ['result'] as const,
  });
  readonly publishSeconds = this.histogram({
    name: 'satellite_state_publish_seconds',
    help: 'Time to render, push, sign and tag one state',
    buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
  });
  readonly failures = this.counter({
    name: 'satellite_failures_total',
    help: 'Failures, by where they happened',
    labelNames: ['where'] as const,
  });
  readonly queueJobs = this.gauge({
    name: 'satellite_queue_jobs',
    help: 'Jobs in the state queue, by state',
    labelNames: ['state'] as const,
  });

  readonly secretHashes = this.counter({
    name: 'satellite_auth_secret_hashes_total',
    help: 'scrypt derivations run to check a presented secret (one per checked login that is not an already verified credential)',
  });
  readonly loginFailures = this.counter({
    name: 'satellite_auth_failures_total',
    help: 'Refused logins: denied (wrong credential) or throttled (429 before any check)',
    labelNames: ['result'] as const,
  });

  constructor() {
    super('satellite_');
  }
}
