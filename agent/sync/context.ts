import type { Logger } from 'pino';
import type { RegistryClient } from '../../core/registry/registry-client.js';
import type { VersionedState } from '../../core/state/delta.js';
import type { AgentConfig } from '../config/config.js';
import type { AgentMetrics } from '../metrics.js';
import type { ContentStore } from '../store/content-store.js';
import type { StoreSpace } from '../store/space.js';
import type { AgentStateDoc, AgentStateFiles } from '../store/state-files.js';
import type { PullProgress } from './progress.js';
import type { ImageBackoff } from './backoff.js';
import type { SiteClient, Upstreams } from './upstreams.js';

// What the steps of a sync (poll.ts, verify.ts, plan.ts, pull.ts, apply.ts) work with: the
// agent (agent.ts) as they see it. Each step is a function of this, so a reader follows one
// group's pass file by file, and the steps do not import the Agent class back.

export interface SyncContext {
  readonly config: AgentConfig;
  readonly log: Logger;
  readonly metrics: AgentMetrics;
  readonly store: ContentStore;
  readonly files: AgentStateFiles;
  readonly space: StoreSpace;
  /** The status document (agent-state.json), as it stands in memory. */
  readonly doc: AgentStateDoc;
  /** The state applied for each group, parsed. */
  readonly states: Map<string, VersionedState>;
  /** Groups whose served content lost a blob (found corrupt on read): resync them. */
  readonly damaged: Set<string>;
  /** The images being pulled, for the progress the log and `status` show. */
  readonly progress: PullProgress;
  /** The pulls ended: waits for a progress report under way, then removes the record. */
  progressDone(): Promise<void>;
  /** Failed images waiting before their next try (backoff.ts). */
  readonly backoff: ImageBackoff;
  /** A client per registry origin and purpose (agent.ts says which credentials go where). */
  client(url: string, credentials?: { username: string; password: string }, actions?: 'pull' | 'pull,push'): RegistryClient;
  /** A reader of a registry that asks the site upstreams first for what a digest names (upstreams.ts). */
  siteClient(url: string, keep?: boolean): SiteClient;
  /** The site upstreams; undefined when none is configured. */
  readonly upstreams: Upstreams | undefined;
  /** Records the status file; with the store full, keeps it in memory for a later pass. */
  saveDoc(): Promise<void>;
  /** The store has no room: this pass stops pulling, and status and metrics say so. */
  storeFull(err: unknown): Promise<void>;
  /** Swaps what the server serves for what the applied states and images now allow. */
  rebuildView(): void;
}

/** 'full': a new state could not be recorded, the store being full. */
export type GroupOutcome = 'unchanged' | 'applied' | 'retried' | 'unreachable' | 'refused' | 'missing' | 'full';

/** What a step adds to the pass's totals: bytes that came over the network. */
export interface PassBytes {
  bytes: number;
}
