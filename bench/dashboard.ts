// The dashboard's pages with a fleet of 1,000 satellites in 100 groups (issue 20: each page
// within 200 ms). Each page is timed as the browser loads it: its HTML, then the admin API
// calls its script makes (in parallel, as the script does), with the session cookie.
//
//   npm run bench:dashboard                        1,000 satellites, 100 groups, 10 versions each
//   BENCH_SATELLITES=5000 BENCH_GROUPS=300 npm run bench:dashboard
//
// Groups are created through the admin API (their Harbor rules in the Harbor double);
// versions, satellites, their robots, reports and the history of what each applied when
// are seeded in SQL as registrations and status reports would have left them: most on the
// latest version, some behind by 1-3, some failing, some silent.
import { ADMIN, startAdminHarness } from '../test/support/admin.js';

const SATELLITES = Number(process.env.BENCH_SATELLITES ?? 1000);
const GROUPS = Number(process.env.BENCH_GROUPS ?? 100);
const VERSIONS = 10;
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 60);
const out = (s = '') => process.stdout.write(`${s}\n`);
const digest = (group: number, version: number) => `sha256:${(group * 1000 + version).toString(16).padStart(64, '0')}`;

async function main(): Promise<void> {
  const h = await startAdminHarness();
  try {
    out(`seeding ${GROUPS} groups (through the API) x ${VERSIONS} versions, ${SATELLITES} satellites...`);
    for (let g = 0; g < GROUPS; g++) {
      const res = await h.api('/api/v1/groups', { method: 'POST', body: { name: `g${g}`, filters: [{ type: 'name', value: `library/g${g}/**` }] } });
      if (res.status !== 201) throw new Error(`group g${g}: ${res.status} ${JSON.stringify(res.body)}`);
    }
    await h.db.pool.query(
      `INSERT INTO state_versions (group_name, version, content_digest, status, layout, repository, artifact_count, manifest_digest, created_at, published_at)
       SELECT 'g' || g, v, 'sha256:content-' || g || '-' || v, 'published', 'oci', 'satellite/group-state/g' || g || '/state', 50 + v,
              'sha256:' || lpad(to_hex(g * 1000 + v), 64, '0'), now() - make_interval(hours => $2 - v), now() - make_interval(hours => $2 - v)
         FROM generate_series(0, $1 - 1) g, generate_series(1, $2) v`, [GROUPS, VERSIONS]);
    const now = Date.now();
    for (let s = 0; s < SATELLITES; s += 100) {
      const rows: unknown[][] = [];
      for (let i = s; i < Math.min(SATELLITES, s + 100); i++) {
        const groups = [...new Set([i % GROUPS, (i * 7 + 3) % GROUPS, ...(i % 3 === 0 ? [(i * 13 + 5) % GROUPS] : [])])];
        const behind = i % 10 === 0 ? 1 + (i % 3) : 0;
        const failing = i % 25 === 0;
        const report = {
          agentVersion: '0.1.0', syncedAt: new Date(now - 30_000).toISOString(),
          groups: groups.map((g) => ({
            name: `g${g}`, version: VERSIONS - behind, digest: digest(g, VERSIONS - behind),
            appliedAt: new Date(now - (VERSIONS - behind === VERSIONS ? 3_600_000 - (i % 600) * 1000 : 7_200_000)).toISOString(),
            checkedAt: new Date(now - 30_000).toISOString(),
            images: { present: 50, pending: 0, failed: failing ? 2 : 0 },
            failures: failing ? [{ repository: `library/g${g}/app`, digest: digest(g, 999), reason: 'blob digest mismatch' }, { repository: `library/g${g}/web`, digest: digest(g, 998), reason: 'connection reset' }] : [],
          })),
        };
        rows.push([`s${i}`, i, `robot$satellite-s${i}`, i % 50 === 0 ? new Date(now - 3_600_000) : new Date(now - 20_000), JSON.stringify(report), groups.map((g) => `g${g}`)]);
      }
      for (const [name, id, robot, seen, report, groups] of rows) {
        await h.db.pool.query(
          `WITH s AS (INSERT INTO satellites (name, robot_id, robot_name, robot_secret_hash, robot_projects, registered_at, last_seen, report, reported_at)
                      VALUES ($1, $2, $3, '\\x00', '{satellite,library}', now() - interval '1 day', $4, $5, $4) RETURNING name)
           INSERT INTO satellite_groups (satellite, group_name) SELECT name, unnest($6::text[]) FROM s`, [name, id, robot, seen, report, groups]);
      }
    }
    // When each applied each version (the overview's 7-day history): one row per
    // satellite, group and version, an hour after each hourly-spaced publish.
    await h.db.pool.query(
      `INSERT INTO satellite_applied (satellite, group_name, version, applied_at)
       SELECT sg.satellite, sg.group_name, v.version, v.published_at + make_interval(mins => 5 + (hashtext(sg.satellite) & 31))
         FROM satellite_groups sg JOIN state_versions v ON v.group_name = sg.group_name
        WHERE v.version <= $1 - CASE WHEN substring(sg.satellite FROM 2)::int % 10 = 0 THEN 1 + substring(sg.satellite FROM 2)::int % 3 ELSE 0 END`, [VERSIONS]);
    await h.db.pool.query('ANALYZE');

    // A session, as the browser has after logging in.
    const login = await fetch(`${h.url}/ui/login`, {
      method: 'POST', redirect: 'manual', headers: { 'Content-Type': 'application/x-www-form-urlencoded', Origin: h.url },
      body: new URLSearchParams({ username: ADMIN.username, password: ADMIN.password }).toString(),
    });
    const cookie = /satellite_ui_session=[^;]+/.exec(login.headers.get('set-cookie') ?? '')?.[0];
    if (!cookie) throw new Error(`login failed: ${login.status}`);
    const get = async (path: string) => {
      const res = await fetch(h.url + path, { headers: { Cookie: cookie, Accept: 'application/json' } });
      const body = await res.arrayBuffer();
      if (res.status !== 200) throw new Error(`${path}: ${res.status} ${Buffer.from(body).toString().slice(0, 200)}`);
      return body.byteLength;
    };
    // While satellites converge each load finds a version applied since the last, and the
    // history is computed again; otherwise it is reused.
    let applied = 0;
    const anotherApplied = () => h.db.pool.query(
      "INSERT INTO satellite_applied (satellite, group_name, version, applied_at) VALUES ('s0', 'g0', $1, now())", [VERSIONS + 1 + applied++]);
    const pages: [string, string, string[], (() => Promise<unknown>)?][] = [
      ['fleet overview', '/ui/', ['/api/v1/fleet']],
      ['fleet, converging', '/ui/', ['/api/v1/fleet'], anotherApplied],
      ['group', '/ui/groups/g1', ['/api/v1/groups/g1/versions', '/api/v1/satellites?group=g1', '/api/v1/groups/g1']],
      ['satellite', '/ui/satellites/s1', ['/api/v1/satellites/s1', '/api/v1/satellites/s1/report', '/api/v1/fleet']], // its first load
    ];
    out(`${SATELLITES} satellites, ${GROUPS} groups, ${VERSIONS} versions each; ${ROUNDS} loads of each page (after 5 to warm up)`);
    out('page               p50 ms   p95 ms   max ms   API bytes');
    for (const [name, html, calls, before] of pages) {
      const times: number[] = [];
      let bytes = 0;
      for (let r = 0; r < ROUNDS + 5; r++) {
        await before?.();
        const t0 = performance.now();
        await get(html);
        const sizes = await Promise.all(calls.map(get));
        if (r >= 5) times.push(performance.now() - t0);
        bytes = sizes.reduce((a, b) => a + b, 0);
      }
      times.sort((a, b) => a - b);
      const q = (p: number) => times[Math.min(times.length - 1, Math.floor(p * times.length))]!.toFixed(1);
      out(`${name.padEnd(18)} ${q(0.5).padStart(6)}   ${q(0.95).padStart(6)}   ${times[times.length - 1]!.toFixed(1).padStart(6)}   ${bytes}`);
    }
  } finally {
    await h.close();
  }
}

main().then(() => process.exit(0), (err: unknown) => {
  process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
