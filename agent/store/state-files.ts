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

export class AgentStateFiles {
  constructor(readonly root: string) {}

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

  async save(doc: AgentStateDoc): Promise<void> {
    await writeAtomic(this.statePath, JSON.stringify(doc, null, 2));
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
