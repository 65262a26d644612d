// Names and tags as the OCI distribution spec defines them ("Pulling manifests").
const COMPONENT = '[a-z0-9]+(?:(?:\\.|_|__|-+)[a-z0-9]+)*';
/** The grammars as pattern text, for JSON schemas that check the same. */
export const REPOSITORY_NAME_PATTERN = `^${COMPONENT}(?:/${COMPONENT})*$`;
export const TAG_PATTERN = '^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$';
const NAME = new RegExp(REPOSITORY_NAME_PATTERN);
const TAG = new RegExp(TAG_PATTERN);

/** Docker's and distribution's limit on a full repository name. */
export const MAX_NAME_LENGTH = 255;

export function isRepositoryName(name: string): boolean {
  return name.length <= MAX_NAME_LENGTH && NAME.test(name);
}

export function isTag(tag: string): boolean {
  return TAG.test(tag);
}

export interface GroupPath {
  group: string;
  /** The repository in Harbor the artifact came from, e.g. "library/nginx". */
  repository: string;
}

export type GroupPathProblem = 'no-group' | 'no-project';

/**
 * Splits a destination repository into the group (the rule's destination namespace, the
 * first component) and the source repository (the rest). Harbor repositories always live
 * in a project, so the source needs two components: fewer means the replication rule
 * flattened the path and the source can no longer be told from the name.
 */
export function splitGroupPath(name: string): GroupPath | GroupPathProblem {
  const slash = name.indexOf('/');
  if (slash < 0) return 'no-group';
  const repository = name.slice(slash + 1);
  if (!repository.includes('/')) return 'no-project';
  return { group: name.slice(0, slash), repository };
}

// A registry host as image references name it (distribution's reference grammar, "domain"):
// dot-separated components of letters, digits and inner hyphens, or a bracketed IPv6
// address, optionally ":" and a port. Nothing else (no "..", no "/", no "%") can pass, so a
// host is safe as one path component (containerd's certs.d/<host>/hosts.toml).
const DOMAIN_COMPONENT = '(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])';
const HOST = new RegExp(`^(?:${DOMAIN_COMPONENT}(?:\\.${DOMAIN_COMPONENT})*|\\[[a-fA-F0-9:.]+\\])(?::[0-9]{1,5})?$`);

export function isRegistryHost(host: string): boolean {
  return host.length <= MAX_NAME_LENGTH && HOST.test(host);
}

/**
 * Why `value` is not a registry URL (http or https, no credentials, a host as isRegistryHost
 * takes it, no query or fragment), or undefined when it is one. The host is checked as the
 * URL parser leaves it, since that is what is used: "http://%2e%2e" is host "..".
 */
export function registryUrlProblem(value: string): string | undefined {
  let u: URL;
  try {
    u = new URL(value);
  } catch {
    return `${JSON.stringify(value)} is not a URL`;
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') return `${JSON.stringify(value)} is not an http(s) URL`;
  if (u.username || u.password) return `${JSON.stringify(value)} carries credentials`;
  if (!isRegistryHost(u.host)) return `${JSON.stringify(value)} does not name a registry host (host[:port]), its host is ${JSON.stringify(u.host)}`;
  if (u.search || u.hash) return `${JSON.stringify(value)} has a query or fragment`;
  return undefined;
}
