import { randomBytes } from 'node:crypto';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { StoreFullRecord } from './space.js';

// What the agent knows between runs, kept in its store directory beside the content:
//   agent-state.json     per group: the applied version, when it was checked and applied,
//                        every listed image's status; read by `satellite agent status`
//   states/<group>.json  the exact state JSON applied (what is served, and the base a
//                        delta from the registry applies to)
//   pins.json            groups held at an earlier signed state by `satellite agent pin`
// Every file is replaced atomically (written beside it, flushed, renamed), so a crash leaves
// the old file or the new one, never half of one.
//
// A device's flash wears with every write: agent-state.json is written only when something
// in it changed other than when the registry was last polled (checkedAt, lastSuccessAt). An
// unchanged poll writes nothing; those two times reach the file with the next change, or
// at the latest after CHECKED_AT_FLUSH_MS (so `status` on a stopped agent is never more than
// that behind). The running agent's /status shows them live.

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

export interface GroupRecord {
  applied?: AppliedState;
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

export async function writeAtomic(path: string, content: string | Buffer, mode = 0o644): Promise<void> {
  const tmp = `${path}.${randomBytes(4).toString('hex')}.tmp`;
  try {
    await writeFile(tmp, content, { mode, flush: true });
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}

async function readJson<T>(path: string): Promise<T | undefined> {
  try {
    return JSON.parse(await readFile(path, 'utf8')) as T;
  } catch (err) {
    if ((err as { code?: string }).code === 'ENOENT') return undefined;
    throw err;
  }
}

/** How long the poll times alone may stay unwritten (see above). */
export const CHECKED_AT_FLUSH_MS = 60 * 60 * 1000;

/** The fields a poll changes every time: they alone do not make the status file be written. */
const POLL_TIMES = new Set(['checkedAt', 'lastSuccessAt']);

export class AgentStateFiles {
  /** What was last written (or read) without the poll times, and when it was written. */
  private written?: { durable: string; at: number };

  constructor(readonly root: string, private readonly clock: () => number = Date.now) {}

  async init(): Promise<void> {
    await mkdir(join(this.root, 'states'), { recursive: true });
  }

  private get statePath(): string {
    return join(this.root, 'agent-state.json');
  }

  async load(agentVersion: string): Promise<AgentStateDoc> {
    const doc = await readJson<AgentStateDoc>(this.statePath);
    return { ...(doc ?? { groups: {} }), agentVersion };
  }

  /** Writes the status document unless only its poll times changed (see above); compact. */
  async save(doc: AgentStateDoc): Promise<void> {
    const durable = JSON.stringify(doc, (key, value: unknown) => (POLL_TIMES.has(key) ? undefined : value));
    const now = this.clock();
    if (this.written && this.written.durable === durable && now - this.written.at < CHECKED_AT_FLUSH_MS) return;
    await writeAtomic(this.statePath, JSON.stringify(doc));
    this.written = { durable, at: now };
  }

  /** The exact JSON applied for a group, undefined when none. */
  async appliedJson(group: string): Promise<string | undefined> {
    try {
      return await readFile(join(this.root, 'states', `${group}.json`), 'utf8');
    } catch {
      return undefined;
    }
  }

  async saveAppliedJson(group: string, json: string): Promise<void> {
    await writeAtomic(join(this.root, 'states', `${group}.json`), json);
  }

  /** The pull progress of the running agent's pass, undefined when nothing is being pulled. */
  async progress(): Promise<ProgressDoc | undefined> {
    return readJson<ProgressDoc>(join(this.root, 'progress.json')).catch(() => undefined);
  }

  /** Records the pass's progress; undefined: the pass ended (the file is removed). */
  async saveProgress(doc: ProgressDoc | undefined): Promise<void> {
    const path = join(this.root, 'progress.json');
    if (doc) await writeAtomic(path, JSON.stringify(doc));
    else await rm(path, { force: true });
  }

  async pins(): Promise<Record<string, Pin>> {
    return (await readJson<Record<string, Pin>>(join(this.root, 'pins.json'))) ?? {};
  }

  async savePins(pins: Record<string, Pin>): Promise<void> {
    await writeAtomic(join(this.root, 'pins.json'), JSON.stringify(pins, null, 2));
  }
}

export const imageRecordKey = (repository: string, digest: string): string => `${repository}@${digest}`;
