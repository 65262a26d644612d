import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** The process's Prometheus metrics, exposed at GET /metrics. */
export class Metrics {
  readonly registry = new Registry();
  readonly manifestsReceived = new Counter({
    name: 'satellite_manifests_received_total',
    help: 'Manifest writes the endpoint answered, by action and outcome',
    labelNames: ['action', 'outcome'] as const,
    registers: [this.registry],
  });
  readonly builds = new Counter({
    name: 'satellite_state_builds_total',
    help: 'State builds, by result (published, unchanged, repaired, superseded, retry, failed)',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });
  readonly publishSeconds = new Histogram({
    name: 'satellite_state_publish_seconds',
    help: 'Time to render, push, sign and tag one state',
    buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [this.registry],
  });
  readonly failures = new Counter({
    name: 'satellite_failures_total',
    help: 'Failures, by where they happened',
    labelNames: ['where'] as const,
    registers: [this.registry],
  });
  readonly queueJobs = new Gauge({
    name: 'satellite_queue_jobs',
    help: 'Jobs in the state queue, by state',
    labelNames: ['state'] as const,
    registers: [this.registry],
  });

  readonly secretHashes = new Counter({
    name: 'satellite_auth_secret_hashes_total',
    help: 'scrypt derivations run to check a presented secret (one per checked login that is not an already verified credential)',
    registers: [this.registry],
  });
  readonly loginFailures = new Counter({
    name: 'satellite_auth_failures_total',
    help: 'Refused logins: denied (wrong credential) or throttled (429 before any check)',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: 'satellite_' });
  }
}
