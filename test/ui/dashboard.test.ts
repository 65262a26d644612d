import { expect } from 'chai';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { startDockerRegistry, type LocalRegistry } from '../../harbor-dev/docker-registry.js';
import { RegistryClient } from '../../core/registry/registry-client.js';
import { ADMIN, startAdminHarness, type AdminHarness } from '../support/admin.js';
import { pushImage, runBundle } from '../support/agent.js';
import { basic } from '../support/endpoint.js';
import { image, type Image } from '../support/oci.js';
import { freePort, until } from '../support/process.js';
import { KEY_PASSWORD, testBuilder, testKeys, workerConfig, type TestKeys } from '../support/worker.js';

// The dashboard in a real browser (Debian's chromium, driven by playwright-core): an
// operator logs in, creates a group, sees a replication Harbor sends become a version,
// registers a satellite with the agent, sees it converge, compares two versions, revokes
// it. Every page is screenshotted into docs/screenshots/ and checked by axe-core.

const CHROMIUM = '/usr/bin/chromium';
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync'];
const SCREENSHOTS = join(process.cwd(), 'docs', 'screenshots');
const AXE = createRequire(import.meta.url).resolve('axe-core/axe.min.js');

describe('the dashboard in a browser: log in, groups, versions, satellites, diff, revoke', function () {
  this.timeout(120_000);
  let registry: LocalRegistry; // Harbor's registry: the images, and the states the worker publishes
  let keys: TestKeys;
  let work: string;
  let h: AdminHarness | undefined;
  let context: BrowserContext | undefined;
  let attacker: Server | undefined;

  before(async () => {
    registry = await startDockerRegistry();
    keys = await testKeys();
    work = await mkdtemp(join(tmpdir(), 'satellite-ui-'));
    await mkdir(SCREENSHOTS, { recursive: true });
  });
  after(async () => {
    await registry?.stop();
    if (keys) await rm(keys.dir, { recursive: true, force: true });
    if (work) await rm(work, { recursive: true, force: true });
  });
  afterEach(async () => {
    await context?.close();
    context = undefined;
    await h?.close();
    h = undefined;
    await new Promise((resolve) => (attacker ? attacker.close(resolve) : resolve(undefined)));
    attacker = undefined;
  });

  const start = async (dashboard: { sessionSeconds?: number } = {}) => {
    h = await startAdminHarness({
      STATE_REGISTRY: registry.url, IMAGE_REGISTRY: registry.url, COSIGN_KEY: keys.keyPath, COSIGN_PASSWORD: KEY_PASSWORD,
    }, { dashboard: { pollSeconds: 1, ...dashboard } });
    context = await chromium.launchPersistentContext(await mkdtemp(join(work, 'profile-')), {
      executablePath: CHROMIUM, headless: true, args: ARGS, viewport: { width: 1280, height: 900 },
    });
    const page = context.pages()[0] ?? await context.newPage();
    // Nothing but the service itself is ever asked for: no CDN, no web font.
    const elsewhere: string[] = [];
    page.on('request', (r) => {
      if (!r.url().startsWith(h!.url) && !r.url().startsWith('data:')) elsewhere.push(r.url());
    });
    return { page, elsewhere };
  };

  const login = async (page: Page, password = ADMIN.password) => {
    await page.goto(`${h!.url}/ui/`);
    expect(new URL(page.url()).pathname, 'sent to the login form first').to.equal('/ui/login');
    await page.getByLabel('Username').fill(ADMIN.username);
    await page.getByLabel('Password').fill(password);
    const [answer] = await Promise.all([page.waitForResponse((r) => r.url().endsWith('/ui/login') && r.request().method() === 'POST'), page.getByRole('button', { name: 'Log in' }).click()]);
    return answer;
  };

  /** axe-core run in the page: no serious or critical violation. */
  const accessible = async (page: Page, what: string) => {
    await page.evaluate(await readFile(AXE, 'utf8'));
    const result = await page.evaluate(() => (globalThis as unknown as { axe: { run(): Promise<{ violations: { id: string; impact: string; nodes: { target: string[] }[] }[] }> } }).axe.run());
    const bad = result.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical').map((v) => `${v.id} (${v.impact}): ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`);
    expect(bad, `accessibility of ${what}`).to.deep.equal([]);
  };
  const shot = (page: Page, name: string) => page.screenshot({ path: join(SCREENSHOTS, `${name}.png`), fullPage: true });

  /** What Harbor's replication sends: the manifest PUT to the endpoint (its blobs are answered present), after the image reached Harbor's registry. */
  const replicate = async (group: string, repository: string, img: Image, tag: string) => {
    h!.harbor.addArtifact({ repository, digest: img.manifest.digest, tags: [tag] });
    await pushImage(new RegistryClient(registry.url), repository, img);
    const put = await fetch(`${h!.url}/v2/${group}/${repository}/manifests/${tag}`, {
      method: 'PUT', headers: { Authorization: basic(), 'Content-Type': img.manifest.mediaType, 'User-Agent': 'harbor-registry-client' }, body: img.manifest.bytes,
    });
    expect(put.status).to.equal(201);
  };
  const publish = async (group: string) =>
    testBuilder(workerConfig({ STATE_REGISTRY: registry.url, IMAGE_REGISTRY: registry.url, COSIGN_KEY: keys.keyPath }), h!.db.pool, keys).builder.build(group);

  it('when an operator logs in, creates a group, a replication becomes a version, a satellite registers and converges, two versions are compared and the satellite is revoked, then each page shows it', async () => {
    const { page, elsewhere } = await start();
    await page.goto(`${h!.url}/ui/login`);
    await accessible(page, 'the login form');
    await shot(page, 'login');
    expect((await login(page)).status()).to.equal(303);
    const cookie = (await context!.cookies()).find((c) => c.name === 'satellite_ui_session')!;
    expect(cookie, 'the session cookie').to.deep.include({ httpOnly: true, sameSite: 'Strict', secure: false, path: '/' });
    expect(cookie.expires - Date.now() / 1000).to.be.within(3500, 3601);

    // A group, created from the overview's form: the Harbor rule exists in Harbor.
    await page.getByLabel('Group name').fill('edge-eu');
    await page.getByLabel('Repositories (name filter)').fill('library/**');
    await page.getByRole('button', { name: 'Create group' }).click();
    await page.getByText(/Group edge-eu created in Harbor/).waitFor();
    expect(h!.harbor.policies.map((p) => (p as { name: string }).name)).to.include('satellite-edge-eu');
    const row = page.getByRole('row', { name: /edge-eu/ });
    await row.getByText('none yet').waitFor();

    // Harbor replicates an image into it; the worker publishes: v1 appears without a reload.
    const v1Image = image();
    await replicate('edge-eu', 'library/app', v1Image, '1.0');
    expect((await publish('edge-eu')).version).to.equal(1);
    await row.getByText('v1').waitFor();

    // A satellite: added on the overview (its token shown once), registered by the agent.
    await page.getByLabel('Satellite name').fill('store-1');
    await page.getByLabel('Groups').selectOption('edge-eu');
    await page.getByRole('button', { name: 'Add satellite' }).click();
    const token = (await page.locator('#new-token').textContent())!;
    expect(token).to.match(/^sat_/);
    const config = join(work, 'agent.yaml');
    const registered = await runBundle(['register', '--url', h!.url, '--token', token, '--out', config, '--store', join(work, 'store'), '--listen', '127.0.0.1:0', '--platform', 'linux/amd64']);
    expect(registered.code, registered.out).to.equal(0);
    const once = await runBundle(['--once', '--config', config]);
    expect(once.code, once.out).to.equal(0);
    // It converges: one of one on the latest version, and the chart shows it.
    await until('store-1 on the latest version', async () => ((await row.locator('td').nth(4).textContent()) === '1' ? true : undefined), 15_000);
    await page.getByText(/100 % of 1 satellite-group pairs run their group's latest version/).waitFor();
    await page.getByText(/100 % on the latest version now/).waitFor();
    expect(await page.locator('.chart canvas').count(), 'both charts drawn by uPlot').to.equal(2);
    await accessible(page, 'the fleet overview');
    await shot(page, 'fleet');

    // A second replication: v2, and the group page compares it with v1.
    const v2Image = image();
    await replicate('edge-eu', 'library/web', v2Image, '2.0');
    expect((await publish('edge-eu')).version).to.equal(2);
    await row.getByText('v2').waitFor();
    await row.locator('td').nth(5).getByText(/1 \(1 by 1\)/).waitFor(); // store-1 now behind by one
    await page.getByRole('link', { name: 'edge-eu' }).click();
    await page.getByRole('heading', { name: 'Group edge-eu' }).waitFor();
    await page.getByText(/satellite-edge-eu|#\d+/).first().waitFor();
    await page.getByRole('cell', { name: 'v2' }).waitFor();
    await page.getByLabel('From version').selectOption('1');
    await page.getByLabel('To version').selectOption('2');
    await page.getByRole('button', { name: 'Show the difference' }).click();
    await page.getByText('Version 1 → 2: 1 added, 0 removed, 0 retagged').waitFor();
    expect(await page.locator('#diff li').allTextContents()).to.deep.equal([`+ library/web@${v2Image.manifest.digest} 2.0`]);
    await page.getByRole('link', { name: 'store-1' }).waitFor();
    await accessible(page, 'the group page');
    await shot(page, 'group');

    // The satellite: its report, then revoked behind a confirmation.
    await page.getByRole('link', { name: 'store-1' }).click();
    await page.getByRole('heading', { name: 'Satellite store-1' }).waitFor();
    await page.getByText('behind by 1 version').waitFor();
    await page.getByRole('cell', { name: 'v1' }).waitFor();
    await accessible(page, 'the satellite page');
    await shot(page, 'satellite');
    await page.locator('#satellite-token').getByText(/^used /).waitFor();
    // Set groups, and rotate its robot secret: each behind its confirmation, through the API.
    expect((await h!.api('/api/v1/groups', { method: 'POST', body: { name: 'edge-us', filters: [{ type: 'name', value: 'library/**' }] } })).status).to.equal(201);
    await page.reload();
    await page.getByRole('checkbox', { name: 'edge-us' }).check();
    await page.getByRole('button', { name: 'Set groups' }).click();
    await page.getByRole('dialog').getByRole('button', { name: 'Set groups' }).click();
    await page.getByText('Groups of store-1 set to edge-eu, edge-us.').waitFor();
    expect((await h!.api('/api/v1/satellites/store-1')).body.groups).to.deep.equal(['edge-eu', 'edge-us']);
    const robot = h!.harbor.robots.find((r) => r.name === 'satellite-store-1')!;
    const secretBefore = robot.secret;
    await page.getByRole('button', { name: 'Rotate robot secret' }).click();
    await page.getByRole('dialog').getByRole('button', { name: 'Rotate robot secret' }).click();
    await page.getByText('New robot credential (not shown again):').waitFor();
    const shown = await page.locator('.secret dd').nth(1).textContent();
    expect(h!.harbor.robots.find((r) => r.name === 'satellite-store-1')!.secret).to.equal(shown).and.not.equal(secretBefore);
    // By keyboard: Enter on the button opens the confirmation, Escape leaves it, nothing done.
    await page.getByRole('button', { name: 'Revoke' }).focus();
    await page.keyboard.press('Enter');
    const dialog = page.getByRole('dialog');
    await dialog.getByText('Revoke store-1?').waitFor();
    await page.keyboard.press('Escape');
    await dialog.waitFor({ state: 'detached' });
    await page.getByRole('button', { name: 'Revoke' }).click();
    await dialog.getByRole('button', { name: 'Cancel' }).click();
    expect((await h!.api('/api/v1/satellites/store-1')).body.status, 'cancelled: nothing done').to.equal('behind');
    await page.getByRole('button', { name: 'Revoke' }).click();
    await accessible(page, 'the confirmation dialog');
    await dialog.getByRole('button', { name: 'Revoke' }).click();
    await page.getByText('Satellite store-1 revoked.').waitFor();
    await page.locator('#satellite-status').getByText('revoked').waitFor();
    expect((await h!.api('/api/v1/satellites/store-1')).body.status).to.equal('revoked');
    expect(h!.harbor.robots.map((r) => r.name)).to.not.include('satellite-store-1');

    // Logging out ends the session: the cookie no longer opens the API. A poll the API
    // refuses while the logout's answer is on its way (held back here past two polls) is not
    // taken for an expired session: the operator lands on the login form, not on "expired".
    await page.route('**/ui/logout', async (route) => {
      const answer = await route.fetch({ maxRedirects: 0 });
      await new Promise((resolve) => setTimeout(resolve, 2500));
      await route.fulfill({ response: answer });
    });
    await page.getByRole('button', { name: 'Log out' }).click();
    await page.waitForURL(/\/ui\/login$/);
    await page.waitForTimeout(500);
    expect(new URL(page.url()).search, 'no "expired" after logging out').to.equal('');
    const after = await fetch(`${h!.url}/api/v1/fleet`, { headers: { Cookie: `satellite_ui_session=${cookie.value}` } });
    expect(after.status).to.equal(401);
    expect(after.headers.get('www-authenticate'), 'no Basic prompt for the pages').to.equal(null);
    expect(elsewhere, 'requests to anything but the service').to.deep.equal([]);
  });

  it('when the password is wrong, then no session; when the session expired, then the pages and the API refuse it and ask to log in again', async () => {
    const { page } = await start({ sessionSeconds: 2 });
    const wrong = await login(page, 'not-the-password-123');
    expect(wrong.status()).to.equal(401);
    await page.getByText('Wrong username or password.').waitFor();
    expect((await context!.cookies()).map((c) => c.name)).to.not.include('satellite_ui_session');

    expect((await login(page)).status()).to.equal(303);
    await page.getByRole('heading', { name: 'Fleet' }).waitFor();
    const cookie = (await context!.cookies()).find((c) => c.name === 'satellite_ui_session')!;
    const withCookie = () => fetch(`${h!.url}/api/v1/fleet`, { headers: { Cookie: `satellite_ui_session=${cookie.value}` } });
    expect((await withCookie()).status).to.equal(200);
    await new Promise((resolve) => setTimeout(resolve, 2_500));
    expect((await withCookie()).status, 'the API refuses an expired session').to.equal(401);
    // The open page notices on its next refresh, and the login form says why.
    await page.waitForURL(/\/ui\/login\?expired$/, { timeout: 10_000 });
    await page.getByText('Your session expired or was ended; log in again.').waitFor();
  });

  it('when another site posts a form to the service, or a request lacks the session\'s CSRF token, then it is refused and nothing changes', async () => {
    const { page } = await start();
    expect((await login(page)).status()).to.equal(303);
    await page.getByRole('heading', { name: 'Fleet' }).waitFor();
    expect((await h!.api('/api/v1/groups', { method: 'POST', body: { name: 'edge-eu', filters: [{ type: 'name', value: 'library/**' }] } })).status).to.equal(201);
    expect((await h!.api('/api/v1/satellites', { method: 'POST', body: { name: 'store-1', groups: ['edge-eu'] } })).status).to.equal(201);
    const tokensBefore = (await h!.db.pool.query('SELECT count(*)::int AS n FROM registration_tokens')).rows[0].n;

    // A page on another site (127.0.0.2 is not 127.0.0.1's site) posting forms at the service.
    const port = await freePort();
    attacker = createServer((_req, res) => {
      res.setHeader('Content-Type', 'text/html');
      const target = (path: string) => `<form method="post" action="${h!.url}${path}"><input name="csrf" value="guess"><button>${path}</button></form>`;
      res.end(`<!doctype html><title>elsewhere</title>${target('/api/v1/satellites/store-1/token')}${target('/ui/logout')}`);
    });
    await new Promise<void>((resolve) => attacker!.listen(port, '127.0.0.2', resolve));
    for (const path of ['/api/v1/satellites/store-1/token', '/ui/logout']) {
      const evil = await context!.newPage();
      await evil.goto(`http://127.0.0.2:${port}/`);
      const [answer] = await Promise.all([evil.waitForResponse((r) => r.url() === `${h!.url}${path}`), evil.getByRole('button', { name: path }).click()]);
      expect([401, 403], `${path} answered ${answer.status()}`).to.include(answer.status());
      await evil.close();
    }
    expect((await h!.db.pool.query('SELECT count(*)::int AS n FROM registration_tokens')).rows[0].n, 'no token issued').to.equal(tokensBefore);
    await page.reload();
    await page.getByRole('heading', { name: 'Fleet' }).waitFor();
    expect(new URL(page.url()).pathname, 'still logged in').to.equal('/ui/');

    // Even with the session cookie sent (a browser without SameSite), a foreign Origin or a missing token is refused.
    const cookie = (await context!.cookies()).find((c) => c.name === 'satellite_ui_session')!;
    const csrf = await page.locator('meta[name="csrf-token"]').getAttribute('content');
    const post = (headers: Record<string, string>) => fetch(`${h!.url}/api/v1/satellites/store-1/token`, {
      method: 'POST', headers: { Cookie: `satellite_ui_session=${cookie.value}`, 'Content-Type': 'application/json', ...headers }, body: '{}',
    });
    const foreign = await post({ Origin: `http://127.0.0.2:${port}`, 'X-CSRF-Token': csrf! });
    expect(foreign.status).to.equal(403);
    expect(((await foreign.json()) as { errors: { code: string }[] }).errors[0]!.code).to.equal('FORBIDDEN');
    expect((await post({ Origin: h!.url })).status, 'no token').to.equal(403);
    expect((await post({ Origin: h!.url, 'X-CSRF-Token': 'x'.repeat(csrf!.length) })).status, 'a wrong token').to.equal(403);
    expect((await h!.db.pool.query('SELECT count(*)::int AS n FROM registration_tokens')).rows[0].n, 'still no token issued').to.equal(tokensBefore);
    expect((await post({ Origin: h!.url, 'X-CSRF-Token': csrf! })).status, 'the pages\' own request').to.equal(201);
  });
});
