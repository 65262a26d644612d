import { MetricsRegistry } from '../core/metrics.js';

/** The agent's Prometheus metrics, served at /metrics on its listener. */
export class AgentMetrics extends MetricsRegistry {
  readonly polls = this.counter({
    name: 'satellite_agent_polls_total',
    help: 'Polls of a group state, by result (unchanged, changed, retried, unreachable, refused, missing)',
    labelNames: ['group', 'result'] as const,
  });
  readonly bytesPulled = this.counter({
    name: 'satellite_agent_bytes_pulled_total',
    help: 'Bytes received from registries: states, manifests and blobs',
    labelNames: ['what'] as const,
  });
  readonly syncSeconds = this.histogram({
    name: 'satellite_agent_sync_seconds',
    help: 'Time of one sync of one group (poll, state, images)',
    buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
  });
  readonly failures = this.counter({
    name: 'satellite_agent_failures_total',
    help: 'Failures, by where they happened (poll, state, image, report, mirror)',
    labelNames: ['where'] as const,
  });
  readonly images = this.gauge({
    name: 'satellite_agent_images',
    help: 'Images listed by the applied states, by group and status',
    labelNames: ['group', 'status'] as const,
  });
  readonly storeFull = this.gauge({
    name: 'satellite_agent_store_full',
    help: '1 while the store cannot take more bytes (disk full or quota reached): pulls are paused, what is stored is served',
  });
  readonly storeFreeBytes = this.gauge({
    name: 'satellite_agent_store_free_bytes',
    help: 'Bytes the agent may still write in its store, as of the last sync pass',
  });
  readonly streamsRefused = this.counter({
    name: 'satellite_agent_streams_refused_total',
    help: 'Manifest and blob GETs refused for too many at once: from one client (429), or in total (503)',
    labelNames: ['reason'] as const,
  });
  readonly appliedVersion = this.gauge({
    name: 'satellite_agent_applied_version',
    help: 'The state version applied, by group',
    labelNames: ['group'] as const,
  });

  readonly upstreamFailures = this.counter({
    name: 'satellite_agent_upstream_failures_total',
    help: 'Objects a site upstream failed to deliver (skipped, the registry asked instead), by upstream and reason (refused, timeout, server-error, corrupt, stalled, bad-state, rollback, error)',
    labelNames: ['upstream', 'reason'] as const,
  });
  readonly upstreamBytes = this.counter({
    name: 'satellite_agent_upstream_bytes_total',
    help: 'Bytes received from site upstreams (other agents), by upstream: what did not come over the registry link',
    labelNames: ['upstream'] as const,
  });

  constructor() {
    super('satellite_agent_');
  }
}
