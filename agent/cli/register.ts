import { stringify } from 'yaml';
import { readCapped, SMALL_BODY_LIMIT } from '../../core/http/bounded-body.js';
import { fetchTrusting } from '../../core/http/trust.js';
import { writeAtomic } from '../store/state-files.js';
import type { Registration } from '../../core/satellite-protocol.js';

// `satellite agent register --url <service> --token <one-time token>`: trades the token for
// the satellite's credential, groups and key (POST /api/v1/satellites/register) and writes
// the agent's configuration file with them (mode 600: it holds the credential).

export class RegistrationError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RegistrationError';
  }
}

/** A registration answer: a credential, a key and the satellite's groups (~100 bytes each). */
const ANSWER_LIMIT = 1024 * 1024;

export async function register(serviceUrl: string, token: string, /** PEM CAs trusted besides the system's. */ ca?: string): Promise<Registration> {
  const url = `${serviceUrl.replace(/\/+$/, '')}/api/v1/satellites/register`;
  let res: Response;
  try {
    res = await fetch(url, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ token }), signal: AbortSignal.timeout(30_000), ...(await fetchTrusting(ca)) });
  } catch (err) {
    // fetch says only "fetch failed"; the reason (refused, a certificate not trusted) is its cause.
    const cause = (err as Error).cause as Error | undefined;
    throw new RegistrationError(`cannot reach ${url}: ${(err as Error).message}${cause?.message ? `: ${cause.message}` : ''}`);
  }
  let text: string;
  try {
    const cap = res.ok ? { limit: ANSWER_LIMIT, what: 'a registration answer' } : { limit: SMALL_BODY_LIMIT, what: 'an error answer', truncate: true };
    text = (await readCapped(res, { url, ...cap })).toString('utf8');
  } catch (err) {
    throw new RegistrationError((err as Error).message);
  }
  if (!res.ok) {
    let message = text.slice(0, 300);
    try {
      const body = JSON.parse(text) as { error?: { message?: string }; message?: string };
      message = body.error?.message ?? body.message ?? message;
    } catch {
      // not JSON
    }
    throw new RegistrationError(`registration refused (${res.status}): ${message}`);
  }
  const r = JSON.parse(text) as Registration;
  for (const k of ['registry', 'username', 'password', 'publicKey'] as const) {
    if (typeof r[k] !== 'string' || !r[k]) throw new RegistrationError(`the registration answer has no ${k}`);
  }
  if (!Array.isArray(r.groups) || r.groups.length === 0) throw new RegistrationError('the registration answer names no group');
  return r;
}

/** The agent configuration a registration gives, with the device's own settings. */
export function configFromRegistration(r: Registration, local: { store?: string; listen?: string; platforms?: string[]; caFile?: string }): string {
  const doc: Record<string, unknown> = {
    registry: r.registry,
    username: r.username,
    password: r.password,
    ...(local.caFile ? { caFile: local.caFile } : {}),
    groups: r.groups.map((g) => ({ name: g.name, state: g.state, publicKey: r.publicKey, ...(g.identity ? { identity: g.identity } : {}) })),
    ...(r.statusUrl ? { report: { url: r.statusUrl } } : {}),
    ...(local.platforms?.length ? { platforms: local.platforms } : {}),
    store: local.store ?? '/var/lib/satellite-agent',
    listen: local.listen ?? '127.0.0.1:8585',
    interval: '30s',
  };
  return `# satellite agent configuration for ${r.name}, written by \`satellite agent register\`\n${stringify(doc)}`;
}

export async function writeConfig(path: string, text: string): Promise<void> {
  await writeAtomic(path, text, 0o600);
}
