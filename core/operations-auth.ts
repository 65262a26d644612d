import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';

// The optional credential of the operations routes that say how a process is doing
// (the service's /metrics, the agent's /status and /metrics): a bearer token, a Basic
// username and password, or both (either one opens them), each secret read from a file, as
// Prometheus' `bearer_token_file` and `basic_auth.password_file` send them. Probes
// (/healthz, /readyz) stay open: a kubelet or a load balancer has no credential to send.

export interface OperationsCredential {
  token?: string;
  basic?: { username: string; password: string };
}

/** Where the secrets are: paths of files, and the Basic username. */
export interface OperationsCredentialSource {
  tokenFile?: string;
  username?: string;
  passwordFile?: string;
}

const MIN_SECRET = 12;
const REALM = 'satellite-operations';

/**
 * Reads the secrets a source names; problems are pushed to `problems` with `names` (the
 * configuration keys, as the operator wrote them) so each is reported where it was set.
 */
export function readOperationsCredential(
  source: OperationsCredentialSource,
  names: { tokenFile: string; username: string; passwordFile: string },
  problems: string[],
): OperationsCredential | undefined {
  const secret = (path: string, key: string): string | undefined => {
    let value: string;
    try {
      value = readFileSync(path, 'utf8').replace(/\r?\n$/, '');
    } catch (err) {
      problems.push(`${key}: cannot read ${path}: ${(err as Error).message}`);
      return undefined;
    }
    if (value.length < MIN_SECRET) {
      problems.push(`${key}: the secret in ${path} must be at least ${MIN_SECRET} characters`);
      return undefined;
    }
    return value;
  };
  const credential: OperationsCredential = {};
  if (source.tokenFile !== undefined) {
    const token = secret(source.tokenFile, names.tokenFile);
    if (token !== undefined) credential.token = token;
  }
  if ((source.username === undefined) !== (source.passwordFile === undefined)) {
    problems.push(`${names.username} and ${names.passwordFile} go together: give both or neither`);
  } else if (source.username !== undefined) {
    if (source.username.includes(':')) problems.push(`${names.username} must not contain ":" (HTTP Basic forbids it)`);
    const password = secret(source.passwordFile!, names.passwordFile);
    if (password !== undefined) credential.basic = { username: source.username, password };
  }
  return credential.token !== undefined || credential.basic !== undefined ? credential : undefined;
}

/** Equal strings, in a time that does not depend on where they differ (nor on their lengths). */
function same(a: string, b: string): boolean {
  const h = (s: string) => createHash('sha256').update(s, 'utf8').digest();
  return timingSafeEqual(h(a), h(b));
}

/** Whether an Authorization header carries the credential (always true without one). */
export function operationsAuthorized(header: string | undefined, credential: OperationsCredential | undefined): boolean {
  if (!credential) return true;
  const m = /^(\S+)\s+(\S+)\s*$/.exec(header ?? '');
  if (!m) return false;
  const scheme = m[1]!.toLowerCase();
  if (scheme === 'bearer' && credential.token !== undefined) return same(m[2]!, credential.token);
  if (scheme === 'basic' && credential.basic) {
    const decoded = Buffer.from(m[2]!, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon < 0) return false;
    // Both halves are compared, always, so the time does not tell a right username.
    const user = same(decoded.slice(0, colon), credential.basic.username);
    const password = same(decoded.slice(colon + 1), credential.basic.password);
    return user && password;
  }
  return false;
}

/** The WWW-Authenticate challenges of a 401: one per scheme the credential accepts. */
export function operationsChallenges(credential: OperationsCredential): string[] {
  return [
    ...(credential.token !== undefined ? [`Bearer realm="${REALM}"`] : []),
    ...(credential.basic ? [`Basic realm="${REALM}", charset="UTF-8"`] : []),
  ];
}
