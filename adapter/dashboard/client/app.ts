// The dashboard's one page script, served as /ui/assets/app.js. It reads and writes only
// through the admin API (/api/v1, its OpenAPI document), with the session cookie and the
// session's CSRF token, so the command line, the API and these pages cannot disagree.
// Plain DOM, no framework: three views (fleet, group, satellite) chosen by the path, each
// asking the API again every few seconds (live updates, no second data path).

declare const uPlot: new (opts: unknown, data: unknown, target: HTMLElement) => { destroy(): void };

interface GroupOverview {
  name: string;
  latest: { version: number; publishedAt: string | null } | null;
  satellites: number;
  onLatest: number;
  behind: { total: number; byVersions: Record<string, number> };
  failing: number;
  silent: number;
  neverReported: number;
  notRegistered: number;
  pending: number;
}
interface FleetOverview {
  generatedAt: string;
  silentAfterSeconds: number;
  totals: { groups: number; satellites: number; onLatest: number; behind: number; failing: number; silent: number };
  groups: GroupOverview[];
  convergence: { pairs: number; points: { seconds: number; share: number }[] };
  history: { since: string; points: { at: string; share: number }[] };
}
interface Execution { id: number; status: string; trigger: string; startTime: string | null; endTime: string | null; total: number; succeed: number; failed: number }
interface Group {
  name: string; policyId: number | null; adopted: boolean; filters: { type: string; value: unknown; decoration?: string }[];
  trigger: { type: string; trigger_settings?: { cron?: string } }; projects: string[]; satellites: number;
  state: { version: number; digest: string | null; publishedAt: string | null } | null; lastExecution: Execution | null; harborError?: string;
}
interface Version { version: number; digest: string | null; createdAt: string; publishedAt: string | null; images: number; bytes: number | null; pruned: boolean }
interface DiffEntry { repository: string; digest: string; tag: string[] }
interface VersionDiff { group: string; from: number; to: number; added: DiffEntry[]; removed: DiffEntry[]; retagged: { repository: string; digest: string; from: string[]; to: string[] }[] }
interface Drift { group: string; latestVersion: number | null; appliedVersion: number | null; behind: number | null; failedImages: number; status: string; summary: string }
interface Satellite {
  name: string; groups: string[]; status: string; robot: { name: string; projects: string[] } | null; createdAt: string;
  registeredAt: string | null; revokedAt: string | null; lastSeen: string | null; lastSynced: string | null;
  agentVersion: string | null; imageCount: number | null; drift: Drift[];
}
interface ReportGroup {
  name: string; version: number | null; digest: string | null; appliedAt?: string | null; checkedAt?: string | null;
  images: { present: number; pending: number; failed: number }; failures?: { repository: string; digest: string; reason: string }[];
}
interface SatelliteReport {
  name: string; lastSeen: string | null; reportedAt: string | null; report: { agentVersion?: string; syncedAt?: string; groups?: ReportGroup[]; kind?: string } | null;
  token: { status: string; issuedAt: string; expiresAt: string; usedAt: string | null } | null;
}

const meta = (name: string) => document.querySelector<HTMLMetaElement>(`meta[name="${name}"]`)?.content ?? '';
const CSRF = meta('csrf-token');
const POLL_MS = Math.max(1, Number(meta('poll-seconds')) || 5) * 1000;
const main = document.getElementById('main')!;
const live = document.getElementById('live')!;

class ApiFailure extends Error {}

/**
 * Set once the operator submits the logout form: the session has ended on the server before
 * its answer arrives, and a poll refused meanwhile must not send the page to "expired" over
 * the logout's own way to the login form.
 */
let loggingOut = false;
document.querySelector('form.logout')?.addEventListener('submit', () => {
  loggingOut = true;
});

/** A call of the admin API; a session that ended sends the browser back to the login form. */
async function api<T>(path: string, init: { method?: string; body?: unknown } = {}): Promise<T> {
  const res = await fetch(path, {
    method: init.method ?? 'GET',
    credentials: 'same-origin',
    headers: { Accept: 'application/json', 'X-CSRF-Token': CSRF, ...(init.body === undefined ? {} : { 'Content-Type': 'application/json' }) },
    ...(init.body === undefined ? {} : { body: JSON.stringify(init.body) }),
  });
  if (res.status === 401) {
    if (!loggingOut) location.assign('/ui/login?expired');
    throw new ApiFailure('the session ended');
  }
  const text = await res.text();
  const body = text ? JSON.parse(text) as unknown : undefined;
  if (!res.ok) {
    const errors = (body as { errors?: { message: string }[] } | undefined)?.errors ?? [{ message: `HTTP ${res.status}` }];
    throw new ApiFailure(errors.map((e) => e.message).join('; '));
  }
  return body as T;
}

/** An element, its attributes and children (strings become text: nothing is parsed as HTML). */
function h<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Record<string, string | number | boolean | undefined> = {}, ...children: (Node | string | null | undefined | false)[]): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === false) continue;
    el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children) if (c !== null && c !== undefined && c !== false) el.append(c);
  return el;
}

const pathParam = (prefix: string) => decodeURIComponent(location.pathname.slice(prefix.length).replace(/\/$/, ''));
const enc = encodeURIComponent;

function ago(iso: string | null): string {
  if (!iso) return 'never';
  const s = Math.round((Date.now() - Date.parse(iso)) / 1000);
  if (s < 60) return `${Math.max(0, s)} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} days ago`;
}
const when = (iso: string | null) => (iso ? h('time', { datetime: iso, title: iso }, ago(iso)) : h('span', { class: 'muted' }, 'never'));
const short = (digest: string | null) => (digest ? h('code', { title: digest }, `${digest.slice(0, 19)}…`) : h('span', { class: 'muted' }, '—'));
const table = (caption: string, head: string[], rows: Node[][], numeric: number[] = []) => h('table', {},
  h('caption', { class: 'muted' }, caption),
  h('thead', {}, h('tr', {}, ...head.map((x, i) => h('th', { scope: 'col', class: numeric.includes(i) ? 'num' : undefined }, x)))),
  h('tbody', {}, ...rows.map((r) => h('tr', {}, ...r.map((c, i) => h('td', { class: numeric.includes(i) ? 'num' : undefined }, c))))));
/** A byte count as people read it: 1,234 B, 12.3 KiB, 4.5 MiB. */
const bytesText = (n: number) => (n < 1024 ? `${n} B` : n < 1024 ** 2 ? `${(n / 1024).toFixed(1)} KiB` : `${(n / 1024 ** 2).toFixed(1)} MiB`);
const text = (s: string | number, cls?: string) => h('span', cls ? { class: cls } : {}, String(s));
const errorBox = (where: HTMLElement, err: unknown) => where.replaceChildren(h('p', { class: 'error', role: 'alert' }, (err as Error).message));

/** Asks `confirmText` in a modal dialog; resolves true on Confirm. */
function confirmDialog(confirmText: string, action: string): Promise<boolean> {
  return new Promise((resolve) => {
    const dialog = h('dialog', { 'aria-labelledby': 'confirm-title' },
      h('h2', { id: 'confirm-title' }, 'Please confirm'),
      h('p', {}, confirmText),
      h('form', { method: 'dialog', class: 'actions' },
        h('button', { value: 'cancel', class: 'plain' }, 'Cancel'),
        h('button', { value: 'confirm', class: 'danger' }, action)));
    dialog.addEventListener('close', () => {
      resolve(dialog.returnValue === 'confirm');
      dialog.remove();
    });
    document.body.append(dialog);
    dialog.showModal();
  });
}

/** Runs `load` now and every POLL_MS while the page is shown; says when it last answered. */
function poll(load: () => Promise<void>): void {
  let running = false;
  const tick = async () => {
    if (running || document.hidden) return;
    running = true;
    try {
      await load();
      live.textContent = `Live: updated ${new Date().toLocaleTimeString()}`;
    } catch (err) {
      if (!(err instanceof ApiFailure)) throw err;
      live.textContent = `Live: ${err.message}`;
    } finally {
      running = false;
    }
  };
  void tick();
  setInterval(() => void tick(), POLL_MS);
}

/** Replaces `el`'s content only when what it shows changed (keeps focus and scroll still otherwise). */
function update(el: HTMLElement, key: string, render: () => Node[]): void {
  if (el.dataset.key === key) return;
  el.dataset.key = key;
  el.replaceChildren(...render());
}

// ---- Fleet overview ----

function behindText(g: GroupOverview): Node {
  if (g.behind.total === 0) return text(0);
  const by = Object.entries(g.behind.byVersions).sort(([a], [b]) => Number(a) - Number(b)).map(([n, c]) => `${c} by ${n}`).join(', ');
  return h('span', { class: 'warn' }, `${g.behind.total} (${by})`);
}

let chart: { destroy(): void } | undefined;
function convergenceChart(el: HTMLElement, c: FleetOverview['convergence']): Node[] {
  chart?.destroy();
  chart = undefined;
  if (c.pairs === 0 || c.points.length === 0) return [h('p', { class: 'muted' }, 'No satellite has a published version to converge on yet.')];
  const last = c.points[c.points.length - 1]!;
  // Seconds for a fleet that converged within two minutes, else minutes.
  const [unit, per] = last.seconds < 120 ? ['seconds', 1] : ['minutes', 60];
  const after = `${Math.round(last.seconds / per * 10) / 10} ${unit}`;
  const summary = h('p', { id: 'convergence-summary' },
    `${Math.round(last.share * 100)} % of ${c.pairs} satellite-group pairs run their group's latest version, the last of them ${after} after it was published.`);
  const holder = h('div', { class: 'chart', role: 'img', 'aria-label': `Convergence chart: ${summary.textContent ?? ''}` });
  // A step line: the share holds until the next satellite applies the version.
  const xs = c.points.map((p) => p.seconds / per);
  const ys = c.points.map((p) => Math.round(p.share * 1000) / 10);
  queueMicrotask(() => {
    if (typeof uPlot !== 'function') return;
    chart = new uPlot({
      width: Math.min(900, el.clientWidth || 800), height: 240,
      scales: { x: { time: false }, y: { range: [0, 100] } },
      legend: { show: false },
      axes: [{ label: `${unit} after the publish` }, { label: '% on latest' }],
      series: [{ label: unit }, { label: 'on latest (%)', stroke: '#0b5cad', width: 2, fill: 'rgba(11,92,173,0.12)', paths: uPlotStepped() }],
    }, [xs, ys], holder);
  });
  return [summary, holder];
}
let historyChart: { destroy(): void } | undefined;
function historyView(el: HTMLElement, hist: FleetOverview['history']): Node[] {
  historyChart?.destroy();
  historyChart = undefined;
  if (hist.points.length === 0) return [h('p', { class: 'muted' }, 'No satellite has applied a version in the last 7 days.')];
  const now = hist.points[hist.points.length - 1]!;
  const low = Math.min(...hist.points.map((p) => p.share));
  const summary = h('p', { id: 'history-summary' },
    `Since ${new Date(hist.since).toLocaleString()}: ${Math.round(now.share * 100)} % on the latest version now, at least ${Math.round(low * 100)} % at any time (it drops at each publish).`);
  const holder = h('div', { class: 'chart', role: 'img', 'aria-label': `History chart: ${summary.textContent ?? ''}` });
  const xs = hist.points.map((p) => Date.parse(p.at) / 1000);
  const ys = hist.points.map((p) => Math.round(p.share * 1000) / 10);
  queueMicrotask(() => {
    if (typeof uPlot !== 'function') return;
    historyChart = new uPlot({
      width: Math.min(900, el.clientWidth || 800), height: 220,
      scales: { y: { range: [0, 100] } },
      legend: { show: false },
      axes: [{}, { label: '% on latest' }],
      series: [{}, { label: 'on latest (%)', stroke: '#116329', width: 2, fill: 'rgba(17,99,41,0.10)', paths: uPlotStepped() }],
    }, [xs, ys], holder);
  });
  return [summary, holder];
}

function uPlotStepped(): unknown {
  const paths = (uPlot as unknown as { paths?: { stepped?: (o: { align: number }) => unknown } }).paths;
  return paths?.stepped?.({ align: 1 });
}

function fleetView(): void {
  const totals = h('ul', { class: 'cards', 'aria-label': 'Fleet totals' });
  const groupsTable = h('div');
  const chartBox = h('div');
  const historyBox = h('div');
  const createMsg = h('div', { 'aria-live': 'polite' });
  const satMsg = h('div', { 'aria-live': 'polite' });
  const satGroups = h('select', { id: 'satellite-groups', name: 'groups', multiple: true, required: true, size: 3 });
  const groupForm = h('form', { class: 'inline', id: 'create-group', 'aria-label': 'Create a group' },
    h('div', {}, h('label', { for: 'group-name' }, 'Group name'), h('input', { id: 'group-name', name: 'name', required: true, pattern: '[a-z0-9]+([._-][a-z0-9]+)*', maxlength: 63 })),
    h('div', {}, h('label', { for: 'group-repos' }, 'Repositories (name filter)'), h('input', { id: 'group-repos', name: 'repos', required: true, value: 'library/**' })),
    h('div', {}, h('label', { for: 'group-tags' }, 'Tags (optional)'), h('input', { id: 'group-tags', name: 'tags', placeholder: '1.*' })),
    h('div', {}, h('label', { for: 'group-trigger' }, 'Trigger'),
      h('select', { id: 'group-trigger', name: 'trigger' }, h('option', { value: 'event_based' }, 'on push (event based)'), h('option', { value: 'manual' }, 'manual'))),
    h('button', { type: 'submit' }, 'Create group'));
  groupForm.addEventListener('submit', (e) => {
    e.preventDefault();
    const f = new FormData(groupForm);
    const filters: { type: string; value: string }[] = [{ type: 'name', value: String(f.get('repos')) }];
    if (String(f.get('tags') ?? '').trim()) filters.push({ type: 'tag', value: String(f.get('tags')).trim() });
    api<{ created: boolean; group: Group }>('/api/v1/groups', { method: 'POST', body: { name: f.get('name'), filters, trigger: { type: f.get('trigger') } } }).then(
      (r) => {
        createMsg.replaceChildren(h('p', { role: 'status' }, `Group ${r.group.name} ${r.created ? 'created in Harbor' : 'already existed as asked'} (rule ${r.group.policyId ?? '—'}).`));
        groupForm.reset();
        void refresh();
      },
      (err) => errorBox(createMsg, err));
  });
  const satForm = h('form', { class: 'inline', id: 'create-satellite', 'aria-label': 'Add a satellite' },
    h('div', {}, h('label', { for: 'satellite-name' }, 'Satellite name'), h('input', { id: 'satellite-name', name: 'name', required: true, maxlength: 63 })),
    h('div', {}, h('label', { for: 'satellite-groups' }, 'Groups'), satGroups),
    h('button', { type: 'submit' }, 'Add satellite'));
  satForm.addEventListener('submit', (e) => {
    e.preventDefault();
    const f = new FormData(satForm);
    const groups = [...satGroups.selectedOptions].map((o) => o.value);
    api<{ name: string; token: string; expiresAt: string }>('/api/v1/satellites', { method: 'POST', body: { name: f.get('name'), groups } }).then(
      (t) => {
        satMsg.replaceChildren(h('div', { class: 'secret', role: 'status' },
          h('p', {}, `Registration token for satellite `, h('a', { href: `/ui/satellites/${enc(t.name)}` }, t.name), ` (valid once, until ${t.expiresAt}; not shown again):`),
          h('p', {}, h('code', { id: 'new-token' }, t.token)),
          h('p', {}, 'On the device: ', h('code', {}, `satellite agent register --url ${location.origin} --token <token>`))));
        satForm.reset();
      },
      (err) => errorBox(satMsg, err));
  });
  main.replaceChildren(
    h('h1', {}, 'Fleet'), totals,
    h('h2', {}, 'Groups'), groupsTable,
    h('h2', {}, 'Convergence after the latest publish'), chartBox,
    h('h2', {}, 'On the latest version, the last 7 days'), historyBox,
    h('h2', {}, 'New group'), groupForm, createMsg,
    h('h2', {}, 'New satellite'), satForm, satMsg);
  const refresh = async () => {
    const o = await api<FleetOverview>('/api/v1/fleet');
    const { generatedAt: _, ...shown } = o;
    update(totals, JSON.stringify(o.totals), () => [
      ['groups', o.totals.groups, ''], ['satellites', o.totals.satellites, ''], ['on latest', o.totals.onLatest, 'ok'],
      ['behind', o.totals.behind, o.totals.behind ? 'warn' : ''], ['failing', o.totals.failing, o.totals.failing ? 'bad' : ''], ['silent', o.totals.silent, o.totals.silent ? 'warn' : ''],
    ].map(([label, n, cls]) => h('li', {}, h('span', { class: `n ${String(cls)}` }, String(n)), String(label))));
    update(groupsTable, JSON.stringify(o.groups.map((g) => ({ ...g, latest: g.latest && { ...g.latest, publishedAt: g.latest.publishedAt && ago(g.latest.publishedAt) } }))), () => [
      o.groups.length === 0 ? h('p', { class: 'muted' }, 'No group yet: create one below.') : table(`Satellites per group; silent: not seen for ${Math.round(o.silentAfterSeconds / 60)} min`,
        ['Group', 'Latest version', 'Published', 'Satellites', 'On latest', 'Behind', 'Failing', 'Silent', 'Never reported', 'Not registered'],
        o.groups.map((g) => [
          h('a', { href: `/ui/groups/${enc(g.name)}` }, g.name),
          g.latest ? text(`v${g.latest.version}`) : text('none yet', 'muted'), g.latest ? when(g.latest.publishedAt) : text('—', 'muted'),
          text(g.satellites), text(g.onLatest, g.onLatest ? 'ok' : undefined), behindText(g),
          text(g.failing, g.failing ? 'bad' : undefined), text(g.silent, g.silent ? 'warn' : undefined), text(g.neverReported), text(g.notRegistered),
        ]), [3, 4, 5, 6, 7, 8, 9]),
    ]);
    update(chartBox, JSON.stringify(shown.convergence), () => convergenceChart(chartBox, o.convergence));
    // The last point is "now", which moves every refresh: redrawn when a share changes.
    update(historyBox, JSON.stringify(o.history.points.map((p) => p.share)), () => historyView(historyBox, o.history));
    const names = o.groups.map((g) => g.name);
    if (satGroups.dataset.key !== names.join(',')) {
      const chosen = new Set([...satGroups.selectedOptions].map((x) => x.value));
      satGroups.dataset.key = names.join(',');
      satGroups.replaceChildren(...names.map((n) => h('option', { value: n, selected: chosen.has(n) }, n)));
    }
  };
  poll(refresh);
}

// ---- Group ----

function filterText(f: Group['filters'][number]): string {
  const v = Array.isArray(f.value) ? f.value.join(', ') : String(f.value);
  return `${f.type} ${f.decoration === 'excludes' ? 'excludes' : 'matches'} ${v}`;
}

function groupView(name: string): void {
  const rule = h('div');
  const versions = h('div');
  const satellites = h('div');
  const diffOut = h('div', { id: 'diff', 'aria-live': 'polite' });
  const from = h('select', { id: 'diff-from', name: 'from', required: true });
  const to = h('select', { id: 'diff-to', name: 'to', required: true });
  const diffForm = h('form', { class: 'inline', id: 'diff-form', 'aria-label': 'Compare two versions' },
    h('div', {}, h('label', { for: 'diff-from' }, 'From version'), from),
    h('div', {}, h('label', { for: 'diff-to' }, 'To version'), to),
    h('button', { type: 'submit' }, 'Show the difference'));
  diffForm.addEventListener('submit', (e) => {
    e.preventDefault();
    api<VersionDiff>(`/api/v1/groups/${enc(name)}/diff?from=${enc(from.value)}&to=${enc(to.value)}`).then((d) => {
      const list = (cls: string, sign: string, items: string[]) => items.map((x) => h('li', { class: cls }, `${sign} ${x}`));
      const tags = (t: string[]) => t.join(',') || '(untagged)';
      const items = [
        ...list('diff-added', '+', d.added.map((x) => `${x.repository}@${x.digest} ${tags(x.tag)}`)),
        ...list('diff-removed', '−', d.removed.map((x) => `${x.repository}@${x.digest} ${tags(x.tag)}`)),
        ...list('diff-retagged', '~', d.retagged.map((x) => `${x.repository}@${x.digest} ${tags(x.from)} → ${tags(x.to)}`)),
      ];
      diffOut.replaceChildren(h('h3', {}, `Version ${d.from} → ${d.to}: ${d.added.length} added, ${d.removed.length} removed, ${d.retagged.length} retagged`),
        items.length ? h('ul', { class: 'mono' }, ...items) : h('p', {}, 'No difference in what satellites run.'));
    }, (err) => errorBox(diffOut, err));
  });
  main.replaceChildren(h('h1', {}, `Group ${name}`),
    h('h2', {}, 'Harbor rule'), rule,
    h('h2', {}, 'Versions'), versions,
    h('h2', {}, 'Difference between two versions'), diffForm, diffOut,
    h('h2', {}, 'Satellites'), satellites);
  let ruleLoaded = 0;
  poll(async () => {
    const [vs, sats] = await Promise.all([
      api<Version[]>(`/api/v1/groups/${enc(name)}/versions`),
      api<Satellite[]>(`/api/v1/satellites?group=${enc(name)}`),
    ]);
    // The rule's execution is Harbor's: asked again at most every 30 s.
    if (Date.now() - ruleLoaded > 30_000) {
      ruleLoaded = Date.now();
      const g = await api<Group>(`/api/v1/groups/${enc(name)}`);
      const e = g.lastExecution;
      update(rule, JSON.stringify(g), () => [h('dl', { class: 'facts' },
        h('dt', {}, 'Rule'), h('dd', {}, g.policyId === null ? 'none' : `#${g.policyId}${g.adopted ? ' (adopted)' : ''}`),
        h('dt', {}, 'Filters'), h('dd', {}, g.filters.map(filterText).join('; ') || 'everything'),
        h('dt', {}, 'Trigger'), h('dd', {}, g.trigger.type + (g.trigger.trigger_settings?.cron ? ` (${g.trigger.trigger_settings.cron})` : '')),
        h('dt', {}, 'Source projects'), h('dd', {}, g.projects.join(', ') || '—'),
        h('dt', {}, 'Last execution'), h('dd', {}, e ? `#${e.id} ${e.status} (${e.succeed}/${e.total} succeeded, ${e.failed} failed), ${e.trigger}, ${e.endTime ?? e.startTime ?? ''}` : 'none'),
        ...(g.harborError ? [h('dt', {}, 'Harbor'), h('dd', { class: 'error' }, g.harborError)] : []))]);
    }
    update(versions, JSON.stringify(vs), () => [vs.length === 0 ? h('p', { class: 'muted' }, 'Nothing published yet.')
      : table('Published versions, newest first', ['Version', 'Published', 'Images', 'Size', 'Digest', 'In the registry'],
        vs.map((v) => [text(`v${v.version}`), when(v.publishedAt), text(v.images), text(v.bytes === null ? '—' : bytesText(v.bytes)), short(v.digest), text(v.pruned ? 'pruned' : 'yes', v.pruned ? 'muted' : undefined)]), [2, 3])]);
    const key = vs.map((v) => v.version).join(',');
    if (from.dataset.key !== key) {
      from.dataset.key = key;
      const opts = (sel: number | undefined) => vs.map((v) => h('option', { value: v.version, selected: v.version === sel }, `v${v.version}`));
      from.replaceChildren(...opts(vs[1]?.version ?? vs[0]?.version));
      to.replaceChildren(...opts(vs[0]?.version));
    }
    const mine = sats;
    update(satellites, JSON.stringify(mine.map((s) => [s.name, s.status, s.drift, s.lastSeen && ago(s.lastSeen)])), () => [mine.length === 0 ? h('p', { class: 'muted' }, 'No satellite in this group.')
      : table('Satellites of this group', ['Satellite', 'Status', 'This group', 'Last seen'], mine.map((s) => {
        const d = s.drift.find((x) => x.group === name);
        return [h('a', { href: `/ui/satellites/${enc(s.name)}` }, s.name), statusText(s.status), text(d?.summary ?? '—'), when(s.lastSeen)];
      }))]);
  });
}

function statusText(status: string): Node {
  const cls = status === 'up to date' ? 'ok' : status === 'failing' || status === 'revoked' ? 'bad' : 'warn';
  return h('span', { class: cls }, status);
}

// ---- Satellite ----

function satelliteView(name: string): void {
  const facts = h('div');
  const report = h('div');
  const actionsOut = h('div', { 'aria-live': 'polite' });
  const groupsBox = h('fieldset', { id: 'satellite-groups-edit' }, h('legend', {}, 'Groups'));
  const groupsForm = h('form', { class: 'inline', id: 'set-groups', 'aria-label': 'Set the satellite\'s groups' }, groupsBox, h('button', { type: 'submit' }, 'Set groups'));
  const act = (label: string, cls: string, question: string, run: () => Promise<Node[]>) => {
    const b = h('button', { type: 'button', class: cls }, label);
    b.addEventListener('click', () => {
      void confirmDialog(question, label).then(async (yes) => {
        if (!yes) return;
        try {
          actionsOut.replaceChildren(...await run());
          void refresh();
        } catch (err) {
          errorBox(actionsOut, err);
        }
      });
    });
    return b;
  };
  const secret = (title: string, lines: [string, string][]) => [h('div', { class: 'secret', role: 'status' }, h('p', {}, title),
    h('dl', { class: 'facts' }, ...lines.flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, h('code', {}, v))])))];
  const actions = h('div', { class: 'actions' },
    act('New registration token', 'plain', `Issue a new one-time registration token for ${name}? Earlier unused tokens stop working.`, async () => {
      const t = await api<{ token: string; expiresAt: string }>(`/api/v1/satellites/${enc(name)}/token`, { method: 'POST', body: {} });
      return secret('Registration token (valid once; not shown again):', [['token', t.token], ['valid until', t.expiresAt]]);
    }),
    act('Rotate robot secret', 'plain', `Rotate ${name}'s robot secret? The running agent's credential stops working until it is given the new one.`, async () => {
      const r = await api<{ username: string; password: string }>(`/api/v1/satellites/${enc(name)}/rotate`, { method: 'POST' });
      return secret('New robot credential (not shown again):', [['username', r.username], ['password', r.password]]);
    }),
    act('Revoke', 'danger', `Revoke ${name}? Its robot account is deleted in Harbor and its credential and tokens stop working.`, async () => {
      await api(`/api/v1/satellites/${enc(name)}`, { method: 'DELETE' });
      return [h('p', { role: 'status' }, `Satellite ${name} revoked.`)];
    }));
  groupsForm.addEventListener('submit', (e) => {
    e.preventDefault();
    const groups = [...groupsBox.querySelectorAll<HTMLInputElement>('input:checked')].map((i) => i.value);
    void confirmDialog(`Set ${name}'s groups to ${groups.join(', ') || 'none'}? Its robot's pull rights follow.`, 'Set groups').then(async (yes) => {
      if (!yes) return;
      try {
        await api(`/api/v1/satellites/${enc(name)}`, { method: 'PATCH', body: { groups } });
        actionsOut.replaceChildren(h('p', { role: 'status' }, `Groups of ${name} set to ${groups.join(', ')}.`));
        groupsBox.dataset.key = '';
        void refresh();
      } catch (err) {
        errorBox(actionsOut, err);
      }
    });
  });
  main.replaceChildren(h('h1', {}, `Satellite ${name}`), facts,
    h('h2', {}, 'What it reported'), report,
    h('h2', {}, 'Actions'), actions, groupsForm, actionsOut);
  // The groups to choose from: asked again at most every 30 s.
  let all: string[] = [];
  let groupsLoaded = 0;
  const refresh = async () => {
    const [s, r] = await Promise.all([
      api<Satellite>(`/api/v1/satellites/${enc(name)}`),
      api<SatelliteReport>(`/api/v1/satellites/${enc(name)}/report`),
    ]);
    if (Date.now() - groupsLoaded > 30_000) {
      groupsLoaded = Date.now();
      all = (await api<FleetOverview>('/api/v1/fleet')).groups.map((g) => g.name);
    }
    const t = r.token;
    const tokenText = !t ? 'none issued' : t.status === 'unused' ? `unused, valid until ${t.expiresAt}` : t.status === 'used' ? `used ${t.usedAt ?? ''}` : `${t.status} (issued ${t.issuedAt})`;
    update(facts, JSON.stringify({ ...s, tokenText, lastSeen: s.lastSeen && ago(s.lastSeen), lastSynced: s.lastSynced && ago(s.lastSynced) }), () => [h('dl', { class: 'facts' },
      h('dt', {}, 'Status'), h('dd', { id: 'satellite-status' }, statusText(s.status)),
      h('dt', {}, 'Groups'), h('dd', {}, ...s.groups.flatMap((g, i) => [i ? ', ' : '', h('a', { href: `/ui/groups/${enc(g)}` }, g)])),
      h('dt', {}, 'Robot'), h('dd', {}, s.robot ? `${s.robot.name} (may pull ${s.robot.projects.join(', ')})` : s.revokedAt ? 'deleted (revoked)' : 'none yet: its registration token is unused'),
      h('dt', {}, 'Registration token'), h('dd', { id: 'satellite-token' }, tokenText),
      h('dt', {}, 'Registered'), h('dd', {}, when(s.registeredAt)),
      ...(s.revokedAt ? [h('dt', {}, 'Revoked'), h('dd', { class: 'bad' }, when(s.revokedAt))] : []),
      h('dt', {}, 'Last seen'), h('dd', {}, when(s.lastSeen)),
      h('dt', {}, 'Last synced'), h('dd', {}, when(s.lastSynced)),
      h('dt', {}, 'Agent'), h('dd', {}, s.agentVersion ?? '—'),
      h('dt', {}, 'Images present'), h('dd', {}, s.imageCount === null ? '—' : String(s.imageCount)))]);
    const groups = r.report?.groups ?? [];
    update(report, JSON.stringify([r.report, s.drift]), () => [r.report === null ? h('p', { class: 'muted' }, 'Nothing reported yet.')
      : r.report.kind ? h('p', {}, `A Harbor Satellite heartbeat (${JSON.stringify(r.report).length} bytes).`)
        : table('Per group: the version applied and its images', ['Group', 'Applied', 'Drift', 'Present', 'Pending', 'Failed', 'Applied at', 'Checked'], s.drift.map((d) => {
          const g = groups.find((x) => x.name === d.group);
          return [text(d.group), text(d.appliedVersion === null ? '—' : `v${d.appliedVersion}`), text(d.summary, d.status === 'up to date' ? 'ok' : d.status === 'failing' ? 'bad' : 'warn'),
            text(g?.images.present ?? '—'), text(g?.images.pending ?? '—'), text(g?.images.failed ?? '—', g?.images.failed ? 'bad' : undefined), when(g?.appliedAt ?? null), when(g?.checkedAt ?? null)];
        }), [3, 4, 5]),
    ...groups.flatMap((g) => (g.failures?.length ? [h('h3', {}, `Failed images of ${g.name}`),
      table('Images that could not be fetched, with the reason', ['Repository', 'Digest', 'Reason'], g.failures.map((f) => [text(f.repository), short(f.digest), text(f.reason)]))] : []))]);
    const key = `${all.join(',')}|${s.groups.join(',')}`;
    if (groupsBox.dataset.key !== key) {
      groupsBox.dataset.key = key;
      groupsBox.replaceChildren(h('legend', {}, 'Groups'), ...all.map((g) => h('label', {}, h('input', { type: 'checkbox', name: 'groups', value: g, checked: s.groups.includes(g) }), ` ${g}`)));
    }
    const revoked = s.status === 'revoked';
    for (const b of [...actions.querySelectorAll('button'), groupsForm.querySelector('button')!]) b.disabled = revoked;
  };
  poll(refresh);
}

const path = location.pathname;
if (path.startsWith('/ui/groups/')) groupView(pathParam('/ui/groups/'));
else if (path.startsWith('/ui/satellites/')) satelliteView(pathParam('/ui/satellites/'));
else fleetView();
