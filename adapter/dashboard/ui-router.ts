import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import express, { type Request, type Response } from 'express';
import type { Logger } from '../../core/logger.js';
import { ApiError } from '../../harbor/errors.js';
import { cookie, sameSecret, SESSION_COOKIE, type Session, type Sessions } from './sessions.js';
import { STYLES } from './styles.js';

// The fleet dashboard under /ui, on the admin API's listener: a login form that opens a
// session (cookie HttpOnly, SameSite=Strict, Secure when the request came over TLS), a
// logout form, and one small page (adapter/dashboard/client/app.ts) that reads and writes
// only through the admin API, with the session cookie and its CSRF token. Every script,
// style and the chart library (uPlot, from node_modules) are served from here: nothing is
// fetched from the internet (Harbor sites are often air-gapped).

export interface DashboardOptions {
  sessions: Sessions;
  /** Checks the admin's credential through the admin API's (throttled) authenticator. */
  checkLogin(username: string, password: string, address: string): Promise<'ok' | 'wrong' | 'throttled'>;
  /** How often the pages ask the API again (live updates), in seconds. */
  pollSeconds: number;
  log: Logger;
}

const require = createRequire(import.meta.url);
const cache = new Map<string, Buffer>();
/** A file read once (the assets do not change while the service runs). */
const asset = (path: string) => cache.get(path) ?? cache.set(path, readFileSync(path)).get(path)!;
const ASSETS: Record<string, { type: string; body: () => Buffer }> = {
  'app.js': { type: 'text/javascript; charset=utf-8', body: () => asset(fileURLToPath(new URL('./client/app.js', import.meta.url))) },
  'app.css': { type: 'text/css; charset=utf-8', body: () => Buffer.from(STYLES) },
  'uPlot.iife.min.js': { type: 'text/javascript; charset=utf-8', body: () => asset(require.resolve('uplot/dist/uPlot.iife.min.js')) },
  'uPlot.min.css': { type: 'text/css; charset=utf-8', body: () => asset(require.resolve('uplot/dist/uPlot.min.css')) },
};

const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

const escapeHtml = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function page(title: string, body: string, head = ''): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)} · Satellite for Harbor</title>
<link rel="stylesheet" href="/ui/assets/uPlot.min.css">
<link rel="stylesheet" href="/ui/assets/app.css">
${head}
</head>
<body>
${body}
</body>
</html>
`;
}

function loginPage(message: string | undefined, status: 'expired' | 'error' | undefined): string {
  return page('Log in', `<main class="login">
<h1>Satellite for Harbor</h1>
<p>Fleet dashboard: log in with the admin API's credential (ADMIN_USERNAME / ADMIN_PASSWORD).</p>
${message ? `<p class="${status === 'error' ? 'error' : 'notice'}" role="alert">${escapeHtml(message)}</p>` : ''}
<form method="post" action="/ui/login">
<label for="username">Username</label>
<input id="username" name="username" autocomplete="username" required maxlength="256">
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required maxlength="1024">
<button type="submit">Log in</button>
</form>
</main>`);
}

function appPage(session: Session, pollSeconds: number): string {
  return page('Fleet', `<header>
<nav aria-label="Main"><a href="/ui/" class="brand">Satellite for Harbor</a></nav>
<p id="live" class="live" aria-live="polite"></p>
<form method="post" action="/ui/logout" class="logout">
<input type="hidden" name="csrf" value="${escapeHtml(session.csrf)}">
<button type="submit">Log out</button>
</form>
</header>
<main id="main"><p>Loading…</p></main>
<script src="/ui/assets/uPlot.iife.min.js"></script>
<script type="module" src="/ui/assets/app.js"></script>`,
  `<meta name="csrf-token" content="${escapeHtml(session.csrf)}">\n<meta name="poll-seconds" content="${pollSeconds}">`);
}

/**
 * Whether `origin` names the host the browser reached us at (behind TRUST_PROXY, the
 * proxy's X-Forwarded-Host). The host only: behind a proxy that ends TLS without
 * TRUST_PROXY the scheme is not known here, and another site cannot send our host.
 */
function isOwnOrigin(req: Request, origin: string): boolean {
  try {
    return new URL(origin).host === req.host;
  } catch {
    return false; // "null" (a sandboxed or opaque origin) is never ours
  }
}

/**
 * Whether a state-changing request comes from our own pages: its Origin (sent by browsers
 * on every POST, PATCH and DELETE) is ours, and the browser does not call it cross-site.
 */
export function fromOwnPages(req: Request): boolean {
  const origin = req.get('origin');
  if (origin !== undefined && !isOwnOrigin(req, origin)) return false;
  const site = req.get('sec-fetch-site');
  return site === undefined || site === 'same-origin' || site === 'none';
}

export function sessionId(req: Request): string | undefined {
  return cookie(req.headers.cookie, SESSION_COOKIE);
}

/**
 * Authenticates an admin API request by its session cookie, for the dashboard's pages: a
 * live session; and for anything but GET/HEAD, its CSRF token in X-CSRF-Token and an
 * Origin that is ours. Throws the admin API's own errors (401, 403).
 */
export async function authenticateSession(sessions: Sessions, req: Request): Promise<void> {
  const session = await sessions.get(sessionId(req));
  if (!session) throw new ApiError('UNAUTHORIZED', 'the dashboard session expired or was ended: log in again at /ui/login');
  if (req.method === 'GET' || req.method === 'HEAD') return;
  const token = req.get('x-csrf-token');
  if (!fromOwnPages(req) || !token || !sameSecret(token, session.csrf)) {
    throw new ApiError('FORBIDDEN', 'a cross-site request, or one without the session\'s CSRF token (X-CSRF-Token), is refused');
  }
}

export function dashboardRouter(o: DashboardOptions): express.Router {
  const r = express.Router();
  const form = express.urlencoded({ extended: false, limit: '4kb', parameterLimit: 10 });
  r.use('/ui', (_req, res, next) => {
    res.set({
      'Content-Security-Policy': CSP, 'X-Content-Type-Options': 'nosniff', 'X-Frame-Options': 'DENY',
      'Referrer-Policy': 'same-origin', 'Cache-Control': 'no-store',
    });
    next();
  });
  const setCookie = (req: Request, res: Response, value: string, maxAgeSeconds: number) => {
    res.cookie(SESSION_COOKIE, value, { httpOnly: true, sameSite: 'strict', secure: req.secure, path: '/', maxAge: maxAgeSeconds * 1000 });
  };
  const html = (res: Response, status: number, body: string) => res.status(status).type('html').send(body);
  const refused = (res: Response) => html(res, 403, page('Refused', '<main><h1>Refused</h1><p role="alert">A cross-site form, or one without this session\'s token, is refused. Use the dashboard\'s own pages.</p><p><a href="/ui/">Back to the dashboard</a></p></main>'));

  // Routing is not strict ("/ui" also matches "/ui/"): only the bare path is redirected.
  r.get('/ui', (req, res, next) => (req.originalUrl.split('?')[0] === '/ui' ? res.redirect(303, '/ui/') : next()));
  r.get('/ui/assets/:name', (req, res) => {
    const a = ASSETS[String(req.params.name)];
    if (!a) {
      html(res, 404, page('Not found', '<main><h1>Not found</h1></main>'));
      return;
    }
    res.set('Cache-Control', 'private, max-age=300').type(a.type).send(a.body());
  });
  // What the session store cannot answer (Redis away) is a page saying so, never a 500.
  const guard = (fn: (req: Request, res: Response) => Promise<void>) => async (req: Request, res: Response) => {
    try {
      await fn(req, res);
    } catch (err) {
      if (!(err instanceof ApiError) || err.code !== 'UNAVAILABLE') throw err;
      o.log.error({ err }, 'dashboard sessions unavailable');
      res.set('Retry-After', '5');
      html(res, 503, page('Unavailable', `<main><h1>Unavailable</h1><p role="alert">${escapeHtml(err.message)}</p></main>`));
    }
  };
  r.get('/ui/login', guard(async (req, res) => {
    if (await o.sessions.get(sessionId(req))) {
      res.redirect(303, '/ui/');
      return;
    }
    html(res, 200, loginPage(req.query.expired !== undefined ? 'Your session expired or was ended; log in again.' : undefined, 'expired'));
  }));
  r.post('/ui/login', form, guard(async (req, res) => {
    if (!fromOwnPages(req)) {
      refused(res);
      return;
    }
    const b = (req.body ?? {}) as Record<string, unknown>;
    const username = typeof b.username === 'string' ? b.username : '';
    const password = typeof b.password === 'string' ? b.password : '';
    const outcome = await o.checkLogin(username, password, req.ip ?? 'unknown');
    if (outcome !== 'ok') {
      o.log.warn({ username, outcome }, 'dashboard login refused');
      html(res, outcome === 'throttled' ? 429 : 401, loginPage(outcome === 'throttled' ? 'Too many failed logins from this address; wait and retry.' : 'Wrong username or password.', 'error'));
      return;
    }
    const { id } = await o.sessions.create();
    setCookie(req, res, id, o.sessions.lifetimeSeconds);
    o.log.info({ username }, 'dashboard login');
    res.redirect(303, '/ui/');
  }));
  r.post('/ui/logout', form, guard(async (req, res) => {
    const id = sessionId(req);
    const session = await o.sessions.get(id);
    const token = (req.body as Record<string, unknown> | undefined)?.csrf;
    if (!fromOwnPages(req) || (session && (typeof token !== 'string' || !sameSecret(token, session.csrf)))) {
      refused(res);
      return;
    }
    await o.sessions.end(id);
    setCookie(req, res, '', 0);
    res.redirect(303, '/ui/login');
  }));
  const app = guard(async (req: Request, res: Response) => {
    const session = await o.sessions.get(sessionId(req));
    if (!session) {
      res.redirect(303, sessionId(req) ? '/ui/login?expired' : '/ui/login');
      return;
    }
    html(res, 200, appPage(session, o.pollSeconds));
  });
  r.get('/ui/', app);
  r.get('/ui/groups/:name', app);
  r.get('/ui/satellites/:name', app);
  r.use('/ui', (_req, res) => {
    html(res, 404, page('Not found', '<main><h1>Not found</h1><p><a href="/ui/">The dashboard</a></p></main>'));
  });
  return r;
}
