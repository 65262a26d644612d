import type { AgentStateDoc, GroupRecord, ProgressDoc } from '../store/state-files.js';

// `satellite agent status`: what the running (or last) agent applied, read from its store.

export interface GroupStatus {
  name: string;
  version: number | null;
  digest: string | null;
  pinned: boolean;
  checkedAt: string | null;
  appliedAt: string | null;
  staleSince: string | null;
  error: string | null;
  images: { present: number; pending: number; failed: number; skipped: number };
  failures: { repository: string; digest: string; reason: string }[];
  skipped: { repository: string; digest: string; reason: string }[];
}

export function groupStatus(name: string, rec: GroupRecord | undefined, pinned: boolean): GroupStatus {
  const images = Object.values(rec?.images ?? {});
  const by = (s: string) => images.filter((i) => i.status === s);
  const list = (s: string) => by(s).map((i) => ({ repository: i.repository, digest: i.digest, reason: i.reason ?? '' }));
  return {
    name,
    version: rec?.applied?.version ?? null,
    digest: rec?.applied?.digest ?? null,
    pinned,
    checkedAt: rec?.checkedAt ?? null,
    appliedAt: rec?.applied?.appliedAt ?? null,
    staleSince: rec?.staleSince ?? null,
    error: rec?.error ?? null,
    images: { present: by('present').length, pending: by('pending').length, failed: by('failed').length, skipped: by('skipped').length },
    failures: list('failed'),
    skipped: list('skipped'),
  };
}

/** The table `status` prints; `pid`: the agent running on the store, null when none. */
export function statusTable(doc: AgentStateDoc, groups: GroupStatus[], pid: number | null = null, pulling: ProgressDoc['images'] = []): string {
  const rows = [['GROUP', 'VERSION', 'DIGEST', 'CHECKED', 'APPLIED', 'IMAGES', 'STATE']];
  for (const g of groups) {
    const state = g.staleSince ? `stale since ${g.staleSince}` : g.error ? `error: ${g.error}` : 'ok';
    rows.push([
      g.name,
      g.version === null ? '-' : `v${g.version}${g.pinned ? ' (pinned)' : ''}`,
      g.digest ? g.digest.slice(0, 19) : '-',
      g.checkedAt ?? '-',
      g.appliedAt ?? '-',
      `${g.images.present} present, ${g.images.pending} pending, ${g.images.failed} failed${g.images.skipped ? `, ${g.images.skipped} other platform` : ''}`,
      state,
    ]);
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  const lines = rows.map((r) => r.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd());
  for (const g of groups) for (const f of g.failures) lines.push(`  ${g.name}: ${f.repository}@${f.digest}: ${f.reason}`);
  for (const p of pulling) lines.push(`  ${p.group}: pulling ${p.repository}@${p.digest.slice(0, 19)}: ${progressText(p.bytesDone, p.bytesTotal)}`);
  for (const [url, u] of Object.entries(doc.upstreams ?? {})) {
    const counts = Object.entries(u.failures).map(([reason, n]) => `${n} ${reason}`).join(', ');
    const last = u.last ? `; last ${u.last.at}: ${u.last.reason}: ${u.last.message}` : '';
    lines.push(`upstream ${url}: failures ${counts || 'none'}${last}${u.skippedUntil ? `; skipped until ${u.skippedUntil}` : ''}`);
  }
  const full = doc.store?.full;
  if (full) {
    const free = full.bytesFree === null ? 'free space unknown' : `${formatBytes(full.bytesFree)} free`;
    lines.push(`store full since ${full.since} (${full.reason}; ${free}): pulls paused until space is freed; what is stored is served`);
  }
  const started = doc.startedAt ? `started ${doc.startedAt}` : '';
  const running = pid === null ? `not running${started ? ` (last ${started})` : ''}` : `running (pid ${pid})${started ? `, ${started}` : ''}`;
  lines.push(`agent ${doc.agentVersion} ${running}${doc.runtime?.containerd ? `; containerd: ${doc.runtime.containerd}` : ''}`);
  return lines.join('\n');
}

/** "3.0 MiB / 10.0 MiB (30 %)". */
export function progressText(done: number, total: number): string {
  return `${formatBytes(done)} / ${formatBytes(total)} (${total ? Math.floor((done / total) * 100) : 0} %)`;
}

/** "1.5 MiB", "312 KiB", "20 B". */
export function formatBytes(n: number): string {
  if (n >= 1024 ** 3) return `${(n / 1024 ** 3).toFixed(1)} GiB`;
  if (n >= 1024 ** 2) return `${(n / 1024 ** 2).toFixed(1)} MiB`;
  if (n >= 1024) return `${Math.round(n / 1024)} KiB`;
  return `${n} B`;
}
