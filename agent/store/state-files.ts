import { randomBytes } from 'node:crypto';
import { mkdir, open, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { AgentStateDoc, Pin, ProgressDoc } from './state-doc.js';
import { applyRecord, exceeds, journalLine, readJournal, units, type JournalRecord, type Unit } from './state-journal.js';

// What the agent knows between runs, kept in its store directory beside the content:
//   agent-state.json     per group: the applied version, when it was checked and applied,
//                        every listed image's status; read by `satellite agent status`;
//                        a compact snapshot, with the changes since appended to
//   agent-state.journal  (state-journal.ts), each fsync'd: a pass writes what changed, and
//                        the snapshot is rewritten only when the journal grew past it
//   states/<group>.json  the exact state JSON applied (what is served, and the base a
//                        delta from the registry applies to)
//   pins.json            groups held at an earlier signed state by `satellite agent pin`
// Every other file is replaced atomically (written beside it, flushed, renamed), so a crash
// leaves the old file or the new one, never half of one; a journal line torn by a crash is
// ignored, with what follows it, and the next save (the first of a process) compacts.
//
// A device's flash wears with every write: the status is written only when something in it
// changed other than when the registry was last polled (checkedAt, lastSuccessAt). An
// unchanged poll writes nothing; those two times reach the file with the next change, or
// at the latest after CHECKED_AT_FLUSH_MS (so `status` on a stopped agent is never more than
// that behind). The running agent's /status shows them live.

export type { AgentStateDoc, AppliedState, FallbackEntry, GroupRecord, ImageRecord, ImageStatus, Pin, ProgressDoc, StateContent, UpstreamRecord } from './state-doc.js';

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

/** The journal may grow to the snapshot's size (and at least this) before a compaction. */
export const JOURNAL_MIN_BYTES = 256 * 1024;

export class AgentStateFiles {
  /** Every unit as last written by this process, without poll times; unset: compact at the next save. */
  private shadow?: Map<string, string>;
  /** When the poll times were last written. */
  private flushedAt = 0;
  /** The snapshot's generation (the journal that follows it names it). */
  private gen = 0;
  private snapshotBytes = 0;
  private journalBytes = 0;

  constructor(readonly root: string, private readonly clock: () => number = Date.now) {}

  async init(): Promise<void> {
    await mkdir(join(this.root, 'states'), { recursive: true });
  }

  private get statePath(): string {
    return join(this.root, 'agent-state.json');
  }

  private get journalPath(): string {
    return join(this.root, 'agent-state.journal');
  }

  /** The snapshot with the journal's changes replayed; reads only (`status` runs beside the agent). */
  async load(agentVersion: string): Promise<AgentStateDoc> {
    for (let attempt = 0; ; attempt++) {
      const snapshot = await readJson<AgentStateDoc & { journalGen?: number }>(this.statePath);
      const gen = snapshot?.journalGen ?? 0;
      const journal = readJournal(await readFile(this.journalPath, 'utf8').catch((err: { code?: string }) => {
        if (err.code === 'ENOENT') return '';
        throw err;
      }), gen);
      // A compaction between the two reads: read both again.
      if (journal.gen !== undefined && journal.gen > gen && attempt < 3) continue;
      const doc: AgentStateDoc = snapshot ?? { agentVersion, groups: {} };
      delete (doc as { journalGen?: number }).journalGen;
      for (const r of journal.records) applyRecord(doc, r);
      this.gen = Math.max(this.gen, gen, journal.gen ?? 0);
      return { ...doc, agentVersion };
    }
  }

  /**
   * Records the status document: nothing when only its poll times changed (see above), else
   * one journal line with the units that changed, fsync'd; a compaction (snapshot, then a
   * new journal) at the first save of a process and when the journal outgrew the snapshot.
   */
  async save(doc: AgentStateDoc): Promise<void> {
    const now = this.clock();
    const current = units(doc);
    if (!this.shadow) return this.compact(doc, current, now);
    const set: [Unit, unknown][] = [];
    const del: Unit[] = [];
    for (const [key, u] of current) if (this.shadow.get(key) !== u.durable) set.push([u.unit, u.value]);
    for (const key of this.shadow.keys()) if (!current.has(key)) del.push(JSON.parse(key) as Unit);
    if (set.length === 0 && del.length === 0 && now - this.flushedAt < CHECKED_AT_FLUSH_MS) return;
    // Every group's header (small) goes along, with its poll times.
    for (const u of current.values()) if (u.unit[0] === 'group' && !set.some(([s]) => s[0] === 'group' && s[1] === u.unit[1])) set.push([u.unit, u.value]);
    const record: JournalRecord = { ...(set.length ? { set } : {}), ...(del.length ? { del } : {}) };
    const room = Math.max(JOURNAL_MIN_BYTES, this.snapshotBytes) - this.journalBytes;
    if (exceeds(record, room)) return this.compact(doc, current, now);
    const line = journalLine(record);
    if (line.length > room) return this.compact(doc, current, now);
    try {
      const fh = await open(this.journalPath, 'a');
      try {
        await fh.write(line);
        await fh.datasync();
      } finally {
        await fh.close();
      }
    } catch (err) {
      // Part of the line may be on disk: the next save starts a new journal.
      this.shadow = undefined;
      throw err;
    }
    this.journalBytes += Buffer.byteLength(line);
    for (const [unit] of set) this.shadow.set(JSON.stringify(unit), current.get(JSON.stringify(unit))!.durable);
    for (const unit of del) this.shadow.delete(JSON.stringify(unit));
    this.flushedAt = now;
  }

  private async compact(doc: AgentStateDoc, current: ReturnType<typeof units>, now: number): Promise<void> {
    const gen = this.gen + 1;
    this.shadow = undefined; // until both files are written: a failure compacts again
    const snapshot = JSON.stringify({ ...doc, journalGen: gen });
    await writeAtomic(this.statePath, snapshot);
    const header = journalLine({ gen });
    await writeAtomic(this.journalPath, header);
    this.gen = gen;
    this.snapshotBytes = Buffer.byteLength(snapshot);
    this.journalBytes = Buffer.byteLength(header);
    this.shadow = new Map([...current].map(([key, u]) => [key, u.durable]));
    this.flushedAt = now;
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
