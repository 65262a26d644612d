import { createHash } from 'node:crypto';

// The status document, kept as a snapshot (agent-state.json) and a journal of changes
// (agent-state.journal) appended after it, so a pass writes what changed (an image record is
// a few hundred bytes) rather than the whole document (megabytes at 20,000 entries).
//
// The document is cut into units: each top-level field, each group without its images, each
// image record. A journal record sets or deletes whole units, so replaying it is idempotent.
// Each line is "<check> <json>\n", <check> the first 8 hex digits of the JSON's SHA-256: a
// line torn by a crash (or anything after it) fails its check, and replay stops there. The
// first line names the generation of the snapshot it follows; a compaction writes a snapshot
// of the next generation, then a new journal for it, each atomically: a crash between the
// two leaves a journal of the older generation, which is ignored (the snapshot holds it).
// Hand-written: no npm library keeps a JSON document as snapshot + checked append-only log.

export type Unit = ['top', string] | ['group', string] | ['image', string, string];

/** The status document as the journal sees it (state-files.ts has its full type). */
export interface JournalDoc {
  groups: Record<string, { images: Record<string, unknown> }>;
}

export interface JournalRecord {
  set?: [Unit, unknown][];
  del?: Unit[];
}

/** The fields a poll changes every time: alone, they do not make a change to write. */
export const POLL_TIMES = new Set(['checkedAt', 'lastSuccessAt']);

/**
 * What a unit's value is, poll times left out: a digest of its JSON (kept for every unit
 * between saves, so 20,000 image records cost 20,000 short strings, not their JSON).
 */
const withoutPollTimes = (value: unknown): string =>
  createHash('sha256').update(JSON.stringify(value, (key, v: unknown) => (POLL_TIMES.has(key) ? undefined : v)) ?? '').digest('base64');
/** The same for an image record, which has no poll times (and is most of the document: no replacer). */
const imageDigest = (value: unknown): string => createHash('sha256').update(JSON.stringify(value) ?? '').digest('base64');

/** Every unit of the document: its key, the unit, its value, and a digest of its value without poll times. */
export function units(doc: JournalDoc): Map<string, { unit: Unit; value: unknown; durable: string }> {
  const out = new Map<string, { unit: Unit; value: unknown; durable: string }>();
  const add = (unit: Unit, value: unknown) => out.set(JSON.stringify(unit), { unit, value, durable: unit[0] === 'image' ? imageDigest(value) : withoutPollTimes(value) });
  for (const [field, value] of Object.entries(doc)) if (field !== 'groups' && value !== undefined) add(['top', field], value);
  for (const [name, rec] of Object.entries(doc.groups)) {
    const { images, ...header } = rec;
    add(['group', name], header);
    for (const [key, image] of Object.entries(images)) add(['image', name, key], image);
  }
  return out;
}

export function applyRecord(doc: JournalDoc, record: JournalRecord): void {
  const top = doc as unknown as Record<string, unknown>;
  for (const unit of record.del ?? []) {
    if (unit[0] === 'top') delete top[unit[1]];
    else if (unit[0] === 'group') delete doc.groups[unit[1]];
    else if (doc.groups[unit[1]]) delete doc.groups[unit[1]]!.images[unit[2]];
  }
  for (const [unit, value] of record.set ?? []) {
    if (unit[0] === 'top') top[unit[1]] = value;
    else if (unit[0] === 'group') doc.groups[unit[1]] = { ...(value as object), images: doc.groups[unit[1]]?.images ?? {} };
    else (doc.groups[unit[1]] ??= { highestVersion: 0, images: {} } as JournalDoc['groups'][string]).images[unit[2]] = value;
  }
}

const check = (json: string): string => createHash('sha256').update(json).digest('hex').slice(0, 8);

export function journalLine(value: unknown): string {
  const json = JSON.stringify(value);
  return `${check(json)} ${json}\n`;
}

/**
 * Whether a record's line can be longer than `limit` characters, from its changed units
 * alone (a lower bound of the line), stopping as soon as it is: a pass that changed 20,000
 * image records compacts without first building a journal line as large as the snapshot
 * (9 MB at 20,000 entries, and as much again to write it).
 */
export function exceeds(record: JournalRecord, limit: number): boolean {
  let length = 0;
  for (const entry of record.set ?? []) {
    length += JSON.stringify(entry).length + 1;
    if (length > limit) return true;
  }
  return false;
}

/**
 * A journal's generation (undefined when its header is missing or torn) and, when it follows
 * the snapshot of generation `gen`, its records up to the first line torn or failing its check.
 */
export function readJournal(text: string, gen: number): { gen?: number; records: JournalRecord[] } {
  const records: JournalRecord[] = [];
  let header: number | undefined;
  let at = 0;
  let first = true;
  while (at < text.length) {
    const end = text.indexOf('\n', at);
    if (end < 0) break; // torn: no newline yet
    const line = text.slice(at, end);
    at = end + 1;
    const space = line.indexOf(' ');
    const json = line.slice(space + 1);
    if (space !== 8 || check(json) !== line.slice(0, 8)) break;
    let value: unknown;
    try {
      value = JSON.parse(json);
    } catch {
      break;
    }
    if (first) {
      const g = (value as { gen?: unknown }).gen;
      header = typeof g === 'number' ? g : undefined;
      if (header !== gen) return { ...(header !== undefined ? { gen: header } : {}), records: [] };
      first = false;
      continue;
    }
    records.push(value as JournalRecord);
  }
  return { ...(header !== undefined ? { gen: header } : {}), records };
}
