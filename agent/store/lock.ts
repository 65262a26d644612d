import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { link, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { uptime } from 'node:os';
import { join } from 'node:path';

// One agent per store: <store>/agent.lock names the agent that holds it.
//
// Node has no flock(2) and the agent ships as one esbuild bundle (no native addon), so the
// kernel cannot release the lock for us when its holder dies. Instead the lock records who
// holds it precisely enough to tell, after the fact, whether that holder still runs: its
// PID, the kernel's boot id (/proc/sys/kernel/random/boot_id, new at every boot) and the
// holder's start time (field 22 of /proc/<pid>/stat, in clock ticks since boot). A PID alone
// is not enough: after a power cut the PID may belong to some other live process, and the
// agent would refuse to start for good. The lock is held only while the boot id is the same
// AND a process with that PID runs AND it started at the recorded time.
//
// Taking it is atomic: the record is written to a file of its own and hard-linked to
// agent.lock, which fails if agent.lock exists, so a reader never sees half a record and two
// agents starting at once cannot both create it. Replacing a stale lock is serialised by a
// second lock (agent.lock.break, taken the same way): only its holder removes agent.lock, and
// only after judging it stale again, so two agents that both found the same stale lock cannot
// both replace it.
//
// Without /proc (not Linux) there is no boot id nor start time: the lock is then held while a
// process with its PID runs and the lock file was written after the machine last booted
// (os.uptime()). That still survives a reboot while the clock is right, but not PID reuse
// within one boot; it is the best Node offers there without a native addon.

export interface LockRecord {
  pid: number;
  /** The kernel's boot id when the lock was taken (absent without /proc). */
  bootId?: string;
  /** The holder's start time, in clock ticks since boot (absent without /proc). */
  startTime?: string;
  /** Tells one taking of the lock from another. */
  nonce: string;
}

/** Another agent runs on the store. */
export class StoreLockedError extends Error {
  constructor(readonly store: string, readonly pid: number) {
    super(`another agent (pid ${pid}) is running on the store ${store}; stop it first (one agent per store)`);
    this.name = 'StoreLockedError';
  }
}

const LOCK = 'agent.lock';

/** What the kernel says about this boot and a process: undefined where /proc cannot tell. */
export interface ProcessFacts {
  bootId(): string | undefined;
  startTime(pid: number): string | undefined;
}

export const procFacts: ProcessFacts = {
  bootId() {
    try {
      return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim() || undefined;
    } catch {
      return undefined;
    }
  },
  startTime(pid: number) {
    let stat: string;
    try {
      stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    } catch {
      return undefined; // no /proc, no such process, or hidden (hidepid)
    }
    // "pid (comm) state ppid …": comm may hold spaces and parentheses, so the fields are
    // counted from the last ')'; field 3 (state) is the first after it, field 22 the 20th.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return fields[19] || undefined;
  },
};

/** This process, as a lock records it. */
export function selfRecord(facts: ProcessFacts = procFacts): LockRecord {
  const bootId = facts.bootId();
  const startTime = facts.startTime(process.pid);
  return { pid: process.pid, ...(bootId ? { bootId } : {}), ...(startTime ? { startTime } : {}), nonce: randomBytes(8).toString('hex') };
}

function parse(text: string): LockRecord | undefined {
  // A bare PID: what agents before this lock wrote.
  if (/^\s*\d+\s*$/.test(text)) return { pid: Number(text.trim()), nonce: '' };
  try {
    const r = JSON.parse(text) as LockRecord;
    if (Number.isSafeInteger(r?.pid) && r.pid > 0 && typeof r.nonce === 'string') return r;
  } catch {
    // not a record (one is never seen half written: it is linked into place whole)
  }
  return undefined;
}

function pidRuns(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as { code?: string }).code === 'EPERM';
  }
}

/** Whether the process a lock record names still runs (see the top of this file). */
export async function holderRuns(record: LockRecord, path: string, facts: ProcessFacts = procFacts): Promise<boolean> {
  const bootId = facts.bootId();
  if (bootId && record.bootId && record.bootId !== bootId) return false; // taken before a reboot
  if (!pidRuns(record.pid)) return false;
  const started = facts.startTime(record.pid);
  if (bootId && record.bootId && started !== undefined && record.startTime !== undefined) return started === record.startTime;
  // No boot id or start time on one side (no /proc, a /proc that hides the process, or a lock
  // written by an agent of before): a running PID whose lock was written during this boot.
  const written = await stat(path).then((s) => s.mtimeMs, () => 0);
  return written >= Date.now() - uptime() * 1000 - 1000;
}

/** Reads the lock at `path`: its record and whether its holder runs; undefined when none. */
async function inspect(path: string, facts: ProcessFacts): Promise<{ record: LockRecord | undefined; live: boolean } | undefined> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as { code?: string }).code === 'ENOENT') return undefined;
    throw err;
  }
  const record = parse(text);
  // An unreadable record was never a complete one (records are linked into place whole).
  return { record, live: record !== undefined && (await holderRuns(record, path, facts)) };
}

/** Creates `path` holding `record`, atomically; false when it exists. */
async function create(path: string, record: LockRecord): Promise<boolean> {
  const tmp = `${path}.${record.nonce}.${randomBytes(4).toString('hex')}.tmp`;
  await writeFile(tmp, JSON.stringify(record), { flush: true });
  try {
    await link(tmp, path);
    return true;
  } catch (err) {
    if ((err as { code?: string }).code === 'EEXIST') return false;
    throw err;
  } finally {
    await rm(tmp, { force: true });
  }
}

/** Removes `path` if it still holds `record` (by its nonce). */
async function removeIfMine(path: string, record: LockRecord): Promise<void> {
  const text = await readFile(path, 'utf8').catch(() => '');
  if (parse(text)?.nonce === record.nonce) await rm(path, { force: true });
}

/**
 * Takes the store's lock for `self`; throws StoreLockedError when a running agent holds it.
 * Resolves with the function that gives it back.
 */
export async function lockStore(store: string, self: LockRecord = selfRecord(), facts: ProcessFacts = procFacts): Promise<() => Promise<void>> {
  const path = join(store, LOCK);
  const breaker = `${path}.break`;
  for (let attempt = 0; attempt < 50; attempt++) {
    if (await create(path, self)) return () => removeIfMine(path, self);
    const found = await inspect(path, facts);
    if (found?.live) throw new StoreLockedError(store, found.record!.pid);
    if (!found) continue; // given back meanwhile: try again
    // Stale: replace it, under the breaker.
    if (!(await create(breaker, self))) {
      const other = await inspect(breaker, facts);
      // A breaker left by an agent that died in the middle of a replacement (a few
      // milliseconds) is removed; one held by a running agent is waited for.
      if (other && !other.live) await rm(breaker, { force: true });
      else await new Promise((r) => setTimeout(r, 20));
      continue;
    }
    try {
      const again = await inspect(path, facts);
      if (again?.live) throw new StoreLockedError(store, again.record!.pid);
      if (again) await rm(path, { force: true });
      if (await create(path, self)) return () => removeIfMine(path, self);
    } finally {
      await removeIfMine(breaker, self);
    }
  }
  throw new Error(`cannot take the lock ${path}: it keeps changing`);
}

/** The pid of the agent running on a store (by the same test as the lock), if one is. */
export async function runningAgent(store: string, facts: ProcessFacts = procFacts): Promise<number | undefined> {
  const found = await inspect(join(store, LOCK), facts).catch(() => undefined);
  return found?.live ? found.record!.pid : undefined;
}
