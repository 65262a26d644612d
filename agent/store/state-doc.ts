// The shapes of what the agent keeps between runs (state-files.ts writes them, the journal in
// state-journal.ts records changes to them): a module of types only, so both can use them.
import type { StoreFullRecord } from './space.js';

export type ImageStatus = 'present' | 'pending' | 'failed' | 'skipped';

export interface ImageRecord {
  repository: string;
  digest: string;
  status: ImageStatus;
  /** Why it failed or was skipped. */
  reason?: string;
  /** The manifests it serves: the entry's own and, for an index, the children kept. */
  manifests?: string[];
  /** The other blobs those manifests name and the store holds: configs and layers. */
  blobs?: string[];
  /** When it was last tried. */
  at: string;
  /** With a registry target: the tags it was pushed with there (undefined: not pushed yet). */
  pushedTags?: string[];
}

/**
 * What an earlier state served for some tags whose replacement is not present yet (its pull
 * failed or is still under way): still served, by those tags and by digest, and its blobs
 * kept, until the replacement is present.
 */
export interface FallbackEntry {
  repository: string;
  digest: string;
  tags: string[];
  manifests: string[];
  blobs: string[];
}

export interface AppliedState {
  version: number;
  /** The state manifest's digest (what `latest` is compared with). */
  digest: string;
  /** The digest of the state JSON's bytes. */
  stateDigest: string;
  appliedAt: string;
}

/**
 * The applied state's own artifact as this agent keeps and serves it to its site peers
 * (sync/upstreams.ts): its manifest and signature manifest, by digest and by tag, and the
 * blobs it read of them.
 */
export interface StateContent {
  repository: string;
  /** Tag → manifest digest: the tag the state was read by (and its v<N>), the signature's sha256-<hex>.sig. */
  tags: Record<string, string>;
  manifests: string[];
  blobs: string[];
}

/** How a site upstream has been failing (sync/upstreams.ts), for `agent status`. */
export interface UpstreamRecord {
  /** Failures by kind, since the agent's store was made. */
  failures: Partial<Record<string, number>>;
  last?: { reason: string; message: string; at: string };
  /** Set while it is skipped after a failure. */
  skippedUntil?: string;
}

export interface GroupRecord {
  applied?: AppliedState;
  /** The applied state's manifest, signature and blobs, kept and served to site peers. */
  stateContent?: StateContent;
  /** The highest version ever applied from `latest`: an older one is a replay. */
  highestVersion: number;
  checkedAt?: string;
  /** The last poll that reached the registry. */
  lastSuccessAt?: string;
  /** Since when polls fail (unset while they succeed): how stale what is served may be. */
  staleSince?: string;
  error?: string;
  /** Keyed by "<repository>@<digest>". */
  images: Record<string, ImageRecord>;
  /** Entries of earlier states served for tags whose replacement is not present yet. */
  fallback?: FallbackEntry[];
}

export interface AgentStateDoc {
  agentVersion: string;
  startedAt?: string;
  /** containerd's config check, for the status. */
  runtime?: { containerd?: string };
  /** Set while the store cannot take more bytes (store/space.ts). */
  store?: { full: StoreFullRecord };
  groups: Record<string, GroupRecord>;
  /** Site upstreams that failed, by URL. */
  upstreams?: Record<string, UpstreamRecord>;
}

/** What is being pulled right now (sync/progress.ts), while the agent pulls. */
export interface ProgressDoc {
  at: string;
  images: { group: string; repository: string; digest: string; bytesDone: number; bytesTotal: number }[];
}

export interface Pin {
  version?: number;
  digest?: string;
}
