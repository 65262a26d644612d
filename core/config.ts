import { readFileSync } from 'node:fs';
import { readOperationsCredential, type OperationsCredential } from './operations-auth.js';
import { DEFAULT_STATE_MAX_MB } from './state/format.js';
import { layoutNames } from './state/layouts/index.js';
import { ociLayout } from './state/layouts/oci.js';

// The one reader of process.env. Every key is documented here and in the README's
// configuration table; values are validated once, at start-up, and every bad value is
// named in one error so an operator fixes them all in one go.

export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';

export interface Config {
  /** TCP port of the endpoint. @defaultValue 8080 */
  port: number;
  /** Address to bind. @defaultValue "0.0.0.0" */
  host: string;
  /** Postgres connection string. @defaultValue postgres://postgres@127.0.0.1:5432/satellite */
  databaseUrl: string;
  /** Redis connection string (the worker's queue). @defaultValue redis://127.0.0.1:6379 */
  redisUrl: string;
  /**
   * Redis Sentinel instances ("host:port,host:port"): the Redis master is the one they name
   * REDIS_SENTINEL_MASTER, asked again after every failover; REDIS_URL is not used then.
   * @defaultValue unset
   */
  redisSentinels: { host: string; port: number }[] | undefined;
  /** The master's name in the sentinels' configuration (`sentinel monitor <name> …`). @defaultValue "mymaster" */
  redisSentinelMaster: string;
  /** The sentinels' own password (their `requirepass`). @defaultValue unset */
  redisSentinelPassword: string | undefined;
  /** Redis' password (`requirepass`, or an ACL user's, with REDIS_URL's username); takes the place of REDIS_URL's. @defaultValue unset */
  redisPassword: string | undefined;
  /** The access ID Harbor's registry endpoint is registered with. @defaultValue "harbor" */
  endpointUsername: string;
  /** The access secret; no default. Commands that serve refuse to start without it. */
  endpointPassword: string | undefined;
  /** pino level. @defaultValue "info" */
  logLevel: LogLevel;
  /**
   * The Harbor registry satellites pull the listed images from; written as `registry` in
   * every state. @defaultValue STATE_REGISTRY
   */
  imageRegistry: string;
  /** The registry states are published to (Harbor's registry). @defaultValue http://127.0.0.1:5000 */
  stateRegistry: string;
  /** How long a deleted artifact stays in states as a tombstone. @defaultValue 168 (hours) */
  tombstoneRetentionHours: number;
  /**
   * What states do with a manifest a tag moved away from, once nothing names it any more (no
   * tag, no index, no signature): "tombstone" lists it as deleted for TOMBSTONE_RETENTION_HOURS,
   * then leaves it out, so satellites free the disk it took; "keep" lists it untagged for as
   * long as it is recorded, for satellites that pin images by digest. @defaultValue "tombstone"
   */
  supersededManifests: 'tombstone' | 'keep';
  /** How long the change log keeps a change once it is published (the audit trail). @defaultValue 168 (hours) */
  changeLogRetentionHours: number;
  /** Failed logins from one address within a minute before it gets 429. @defaultValue 10 */
  authFailureLimit: number;
  /**
   * Which proxies in front of the endpoint to believe about the client address
   * (X-Forwarded-For), in express's "trust proxy" form: "loopback", "10.0.0.0/8", a hop count.
   * Unset: none, so every client behind one proxy shares its address. @defaultValue unset
   */
  trustProxy: string | undefined;
  /** Credentials for STATE_REGISTRY (a Harbor robot account with push to the state project). */
  stateRegistryUsername: string | undefined;
  stateRegistryPassword: string | undefined;
  /** The Harbor project states live in: <project>/group-state/<group>/state. @defaultValue "satellite" */
  stateProject: string;
  /** "oci" (an oras-style OCI 1.1 artifact) or "harbor-satellite" (what its satellites read). @defaultValue "oci" */
  /** A registered state layout's name (core/state/layouts/). */
  stateLayout: string;
  /** "builtin" (TypeScript distribution client) or "oras" (the CLI, via execa). @defaultValue "builtin" */
  statePusher: 'builtin' | 'oras';
  /** "builtin" (TypeScript cosign format) or "cosign" (the CLI, via execa). @defaultValue "builtin" */
  signer: 'builtin' | 'cosign';
  /**
   * The signing key (cosign's encrypted PEM or PKCS#8 PEM): a path, or the PEM itself (a value
   * that starts with "-----BEGIN", e.g. from a Kubernetes Secret as an environment variable).
   * Required by the worker.
   */
  cosignKey: string | undefined;
  /** Password of COSIGN_KEY; empty for an unencrypted or empty-password key. @defaultValue "" */
  cosignPassword: string;
  /**
   * Memory a worker process gives to the states of the groups it built last, so the next
   * build of a group reads and compresses only what changed (0: every build reads its group
   * in full). About 0.32 MB per 1,000 entries (the full layer's text and gzip members). @defaultValue 128 (MiB)
   */
  stateCacheMb: number;
  /**
   * The most a state may weigh, as JSON and as the layer that carries it: a state read from
   * the registry (`satellite state diff`) past it is abandoned, and a build whose state
   * would pass it fails (satellites with the same cap, the agent's maxStateMb, would refuse
   * it). @defaultValue 128 (MiB)
   */
  stateMaxMb: number;
  /** Builds run at once by one worker process. @defaultValue 4 */
  workerConcurrency: number;
  /** Attempts of a build before it is failed. @defaultValue 10 */
  buildAttempts: number;
  /** First retry delay; doubles each attempt. @defaultValue 1000 (ms) */
  buildBackoffMs: number;
  /**
   * The longest a change waits for more before its group is built (a burst that never
   * pauses is published at least this often). @defaultValue 500 (ms)
   */
  buildDebounceMs: number;
  /**
   * A group is built once no change came for this long: the end of a burst closes the
   * debounce early. Set it to BUILD_DEBOUNCE_MS for a fixed window. @defaultValue 100 (ms)
   */
  buildQuietMs: number;
  /**
   * How often the outbox relay looks at the outbox when no notification woke it: the safety
   * net for a notification lost with its connection, and the pace when LISTEN is not
   * available (e.g. PgBouncer in transaction mode). @defaultValue 1000 (ms)
   */
  outboxPollMs: number;
  /** A job whose worker stops renewing its lock for this long is taken over. @defaultValue 30000 (ms) */
  jobLockMs: number;
  /** Published versions kept in the registry per group. @defaultValue 10 */
  stateKeepVersions: number;
  /** How often old versions and expired tombstones are pruned. @defaultValue 3600 (s) */
  pruneIntervalSeconds: number;
  /** How often groups changed since their last build are rebuilt (safety net, tombstone expiry). @defaultValue 300 (s) */
  reconcileIntervalSeconds: number;
  /**
   * How often a worker checks that Redis still holds its repeatable jobs (prune, reconcile,
   * reconcile-all) and registers again what a Redis that came back empty lost; a
   * reconnection checks at once. @defaultValue 60 (s)
   */
  scheduleCheckSeconds: number;
  /** Timeout of one request to STATE_REGISTRY. @defaultValue 30000 (ms) */
  registryTimeoutMs: number;
  /**
   * Prefix of every Redis key of the queue. Unset: "satellite:<deployment id>", the id made
   * in the database at the first migration, so deployments sharing a Redis never share a
   * queue. @defaultValue unset
   */
  queuePrefix: string | undefined;
  /** Port of the operations listener (/metrics, /healthz, /readyz, the dashboard), of every process. @defaultValue 9464 */
  metricsPort: number;
  /** Harbor's URL, for `satellite harbor …` (the Harbor API). */
  harborUrl: string | undefined;
  /** A Harbor administrator (or a system robot with those permissions). @defaultValue "admin" */
  harborUsername: string;
  harborPassword: string | undefined;
  /**
   * The URL at which Harbor and satellites reach this service: what the registry endpoint is
   * registered with, where Harbor's webhooks are sent, what satellites report to.
   */
  endpointUrl: string | undefined;
  /**
   * The admin credential (queue dashboard, admin API). Never falls back to the endpoint's:
   * without ADMIN_PASSWORD the dashboard is off. @defaultValue "admin", no password
   */
  adminUsername: string;
  adminPassword: string | undefined;
  /** Address of the operations listener (/metrics, /healthz, /readyz, /admin/queues). @defaultValue "127.0.0.1" */
  metricsHost: string;
  /**
   * A file holding the bearer token /metrics asks for (Prometheus' `bearer_token_file`).
   * Unset, with METRICS_USERNAME unset too: /metrics answers anyone who reaches the listener.
   * @defaultValue unset
   */
  metricsTokenFile: string | undefined;
  /** The Basic username /metrics asks for, with the password in METRICS_PASSWORD_FILE. @defaultValue unset */
  metricsUsername: string | undefined;
  metricsPasswordFile: string | undefined;
  /** Failed logins per username (from any address) per minute before it gets 429. @defaultValue 50 */
  authUsernameFailureLimit: number;
  /** scrypt checks of per-group secrets at once, per process. @defaultValue 2 */
  authHashConcurrency: number;
  /** Prefix of the Redis keys of the login throttle (shared by replicas). @defaultValue the queue prefix + ":auth" */
  authThrottlePrefix: string | undefined;
  /** Blob upload sessions one credential may hold open. @defaultValue 100 */
  uploadSessionLimit: number;
  /** An upload session idle this long is gone. @defaultValue 10 (minutes) */
  uploadIdleMinutes: number;
  /** How long a satellite's registration token is valid. @defaultValue 24 (hours) */
  registrationTokenHours: number;
  /** Refused registration attempts (an unknown, used, expired or revoked token; a malformed request) per client address per minute. @defaultValue 10 */
  registrationRateLimit: number;
  /** How long a login to the dashboard (/ui) lasts, in minutes. */
  dashboardSessionMinutes: number;
  /** How often every managed group is reconciled with Harbor (and robots kept in step). @defaultValue 900 (s) */
  harborReconcileIntervalSeconds: number;
  /**
   * The public key satellites verify states with (PEM path), handed out at registration.
   * @defaultValue derived from COSIGN_KEY when that is set
   */
  cosignPublicKey: string | undefined;
  /**
   * STATE_LAYOUT=harbor-satellite: a JSON file with the config document published as the
   * satellites' config state. @defaultValue a built-in one (30 s sync, local registry on :8585)
   */
  harborSatelliteConfig: string | undefined;
  /**
   * PEM certificate chain (the server's first) and its key: with both set, the endpoint (and
   * the admin API on its port) and the operations listener serve HTTPS only. Both files are
   * read again every TLS_RELOAD_SECONDS, and a changed pair is served to the next
   * connection. @defaultValue unset (plain HTTP)
   */
  tlsCertFile: string | undefined;
  tlsKeyFile: string | undefined;
  /**
   * PEM CA certificates a client of the endpoint's port must present a certificate from
   * (mutual TLS); the operations listener never asks for one. @defaultValue unset
   */
  tlsClientCaFile: string | undefined;
  /** How often the TLS files are read again. @defaultValue 30 (s) */
  tlsReloadSeconds: number;
}

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n  - ${problems.join('\n  - ')}`);
    this.name = 'ConfigError';
  }
}

const LOG_LEVELS: readonly LogLevel[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

type Env = Record<string, string | undefined>;

/**
 * The variables that hold a secret, or a URL that may carry one. Each is also read from a
 * file named by <NAME>_FILE, the convention of the official Postgres and Redis images (a
 * mounted Kubernetes Secret or a compose secret), its trailing newlines dropped.
 */
export const SECRET_VARIABLES = [
  'ENDPOINT_PASSWORD', 'ADMIN_PASSWORD', 'HARBOR_PASSWORD', 'STATE_REGISTRY_PASSWORD', 'COSIGN_PASSWORD',
  'DATABASE_URL', 'REDIS_URL', 'REDIS_PASSWORD', 'REDIS_SENTINEL_PASSWORD',
] as const;

export interface LoadOptions {
  /** Reads the file a <NAME>_FILE variable names. @defaultValue fs.readFileSync as UTF-8 */
  readSecretFile?: (path: string) => string;
}

/** A PEM given as the value itself rather than a path to it. */
export const isPem = (value: string) => value.trimStart().startsWith('-----BEGIN');

export function loadConfig(rawEnv: Env = process.env, options: LoadOptions = {}): Config {
  const problems: string[] = [];
  const env = secretsFromFiles(rawEnv, options.readSecretFile ?? ((path) => readFileSync(path, 'utf8')), problems);
  const str = (key: string, fallback: string): string => {
    const v = env[key];
    return v === undefined || v === '' ? fallback : v;
  };
  const int = (key: string, fallback: number, min: number, max: number): number => {
    const raw = env[key];
    if (raw === undefined || raw === '') return fallback;
    const n = Number(raw);
    if (!/^\d+$/.test(raw.trim()) || !Number.isSafeInteger(n) || n < min || n > max) {
      problems.push(`${key}=${JSON.stringify(raw)} must be an integer from ${min} to ${max}`);
      return fallback;
    }
    return n;
  };
  const url = (key: string, fallback: string, schemes: string[]): string => {
    const v = str(key, fallback);
    try {
      const u = new URL(v);
      if (!schemes.includes(u.protocol)) {
        problems.push(`${key} must be a ${schemes.join(' or ')} URL, got scheme ${JSON.stringify(u.protocol)}`);
      }
    } catch {
      problems.push(`${key}=${JSON.stringify(redact(v))} is not a URL`);
    }
    return v;
  };

  const logLevel = str('LOG_LEVEL', 'info') as LogLevel;
  if (!LOG_LEVELS.includes(logLevel)) {
    problems.push(`LOG_LEVEL=${JSON.stringify(logLevel)} must be one of ${LOG_LEVELS.join(', ')}`);
  }
  const endpointUsername = str('ENDPOINT_USERNAME', 'harbor');
  if (endpointUsername.includes(':')) problems.push('ENDPOINT_USERNAME must not contain ":" (HTTP Basic forbids it)');
  const endpointPassword = env.ENDPOINT_PASSWORD === '' ? undefined : env.ENDPOINT_PASSWORD;
  if (endpointPassword !== undefined && endpointPassword.length < 12) {
    problems.push('ENDPOINT_PASSWORD must be at least 12 characters');
  }
  const stateRegistry = url('STATE_REGISTRY', 'http://127.0.0.1:5000', ['http:', 'https:']).replace(/\/+$/, '');
  const imageRegistry = url('IMAGE_REGISTRY', stateRegistry, ['http:', 'https:']).replace(/\/+$/, '');

  const oneOf = <T extends string>(key: string, fallback: T, allowed: readonly T[]): T => {
    const v = str(key, fallback) as T;
    if (!allowed.includes(v)) problems.push(`${key}=${JSON.stringify(v)} must be one of ${allowed.join(', ')}`);
    return v;
  };
  const stateProject = str('STATE_PROJECT', 'satellite');
  if (!/^[a-z0-9]+(?:[._-][a-z0-9]+)*$/.test(stateProject)) problems.push(`STATE_PROJECT=${JSON.stringify(stateProject)} is not a valid project name`);
  const stateLayout = oneOf('STATE_LAYOUT', ociLayout.name, layoutNames());
  const statePusher = oneOf('STATE_PUSHER', 'builtin', ['builtin', 'oras'] as const);
  if (statePusher === 'oras' && stateLayout !== ociLayout.name) problems.push('STATE_PUSHER=oras publishes the "oci" layout only; unset STATE_LAYOUT or STATE_PUSHER');

  const config: Config = {
    port: int('PORT', 8080, 0, 65535),
    host: str('HOST', '0.0.0.0'),
    databaseUrl: url('DATABASE_URL', 'postgres://postgres@127.0.0.1:5432/satellite', ['postgres:', 'postgresql:']),
    redisUrl: url('REDIS_URL', 'redis://127.0.0.1:6379', ['redis:', 'rediss:']),
    redisSentinels: sentinels(env.REDIS_SENTINELS, problems),
    redisSentinelMaster: str('REDIS_SENTINEL_MASTER', 'mymaster'),
    redisSentinelPassword: env.REDIS_SENTINEL_PASSWORD || undefined,
    redisPassword: env.REDIS_PASSWORD || undefined,
    endpointUsername,
    endpointPassword,
    logLevel,
    imageRegistry,
    stateRegistry,
    tombstoneRetentionHours: int('TOMBSTONE_RETENTION_HOURS', 168, 0, 24 * 365 * 10),
    supersededManifests: oneOf('SUPERSEDED_MANIFESTS', 'tombstone', ['tombstone', 'keep'] as const),
    changeLogRetentionHours: int('CHANGE_LOG_RETENTION_HOURS', 168, 0, 24 * 365 * 10),
    authFailureLimit: int('AUTH_FAILURE_LIMIT', 10, 1, 1_000_000),
    trustProxy: env.TRUST_PROXY || undefined,
    stateRegistryUsername: env.STATE_REGISTRY_USERNAME || undefined,
    stateRegistryPassword: env.STATE_REGISTRY_PASSWORD || undefined,
    stateProject,
    stateLayout,
    statePusher,
    signer: oneOf('SIGNER', 'builtin', ['builtin', 'cosign'] as const),
    cosignKey: env.COSIGN_KEY || undefined,
    cosignPassword: env.COSIGN_PASSWORD ?? '',
    workerConcurrency: int('WORKER_CONCURRENCY', 4, 1, 256),
    stateCacheMb: int('STATE_CACHE_MB', 128, 0, 1_000_000),
    stateMaxMb: int('STATE_MAX_MB', DEFAULT_STATE_MAX_MB, 1, 4096),
    buildAttempts: int('BUILD_ATTEMPTS', 10, 1, 1000),
    buildBackoffMs: int('BUILD_BACKOFF_MS', 1000, 1, 3_600_000),
    buildDebounceMs: int('BUILD_DEBOUNCE_MS', 500, 0, 600_000),
    buildQuietMs: int('BUILD_QUIET_MS', 100, 0, 600_000),
    outboxPollMs: int('OUTBOX_POLL_MS', 1000, 10, 3_600_000),
    jobLockMs: int('JOB_LOCK_MS', 30_000, 1000, 3_600_000),
    stateKeepVersions: int('STATE_KEEP_VERSIONS', 10, 1, 100_000),
    pruneIntervalSeconds: int('PRUNE_INTERVAL_SECONDS', 3600, 1, 7 * 86400),
    reconcileIntervalSeconds: int('RECONCILE_INTERVAL_SECONDS', 300, 1, 7 * 86400),
    scheduleCheckSeconds: int('SCHEDULE_CHECK_SECONDS', 60, 1, 86400),
    registryTimeoutMs: int('REGISTRY_TIMEOUT_MS', 30_000, 100, 600_000),
    queuePrefix: env.QUEUE_PREFIX || undefined,
    metricsPort: int('METRICS_PORT', 9464, 0, 65535),
    harborUrl: env.HARBOR_URL ? url('HARBOR_URL', '', ['http:', 'https:']).replace(/\/+$/, '') : undefined,
    harborUsername: str('HARBOR_USERNAME', 'admin'),
    harborPassword: env.HARBOR_PASSWORD || undefined,
    endpointUrl: env.ENDPOINT_URL ? url('ENDPOINT_URL', '', ['http:', 'https:']).replace(/\/+$/, '') : undefined,
    adminUsername: str('ADMIN_USERNAME', 'admin'),
    adminPassword: env.ADMIN_PASSWORD || undefined,
    metricsHost: str('METRICS_HOST', '127.0.0.1'),
    metricsTokenFile: env.METRICS_TOKEN_FILE || undefined,
    metricsUsername: env.METRICS_USERNAME || undefined,
    metricsPasswordFile: env.METRICS_PASSWORD_FILE || undefined,
    authUsernameFailureLimit: int('AUTH_USERNAME_FAILURE_LIMIT', 50, 1, 1_000_000),
    authHashConcurrency: int('AUTH_HASH_CONCURRENCY', 2, 1, 64),
    authThrottlePrefix: env.AUTH_THROTTLE_PREFIX || (env.QUEUE_PREFIX ? `${env.QUEUE_PREFIX}:auth` : undefined),
    uploadSessionLimit: int('UPLOAD_SESSION_LIMIT', 100, 1, 1_000_000),
    uploadIdleMinutes: int('UPLOAD_IDLE_MINUTES', 10, 1, 24 * 60),
    registrationTokenHours: int('REGISTRATION_TOKEN_HOURS', 24, 1, 24 * 365),
    registrationRateLimit: int('REGISTRATION_RATE_LIMIT', 10, 1, 1_000_000),
    dashboardSessionMinutes: int('DASHBOARD_SESSION_MINUTES', 60, 1, 7 * 24 * 60),
    harborReconcileIntervalSeconds: int('HARBOR_RECONCILE_INTERVAL_SECONDS', 900, 10, 7 * 86400),
    cosignPublicKey: env.COSIGN_PUBLIC_KEY || undefined,
    harborSatelliteConfig: env.HARBOR_SATELLITE_CONFIG || undefined,
    tlsCertFile: env.TLS_CERT_FILE || undefined,
    tlsKeyFile: env.TLS_KEY_FILE || undefined,
    tlsClientCaFile: env.TLS_CLIENT_CA_FILE || undefined,
    tlsReloadSeconds: int('TLS_RELOAD_SECONDS', 30, 1, 86400),
  };
  postgresFailoverOptions(config.databaseUrl, problems);
  if (config.redisSentinels !== undefined && env.REDIS_URL) {
    problems.push('REDIS_URL and REDIS_SENTINELS exclude each other: with sentinels the master is the one they name REDIS_SENTINEL_MASTER');
  }
  if ((config.tlsCertFile === undefined) !== (config.tlsKeyFile === undefined)) {
    problems.push('TLS_CERT_FILE and TLS_KEY_FILE go together: set both or neither');
  }
  if (config.tlsClientCaFile !== undefined && config.tlsCertFile === undefined) {
    problems.push('TLS_CLIENT_CA_FILE needs TLS_CERT_FILE and TLS_KEY_FILE: client certificates are asked for over TLS only');
  }
  if (config.adminPassword !== undefined && config.adminPassword.length < 12) problems.push('ADMIN_PASSWORD must be at least 12 characters');
  if (config.adminPassword !== undefined && config.adminPassword === endpointPassword) {
    problems.push('ADMIN_PASSWORD must differ from ENDPOINT_PASSWORD: the endpoint credential never opens the dashboard');
  }
  if ((config.metricsUsername === undefined) !== (config.metricsPasswordFile === undefined)) {
    problems.push('METRICS_USERNAME and METRICS_PASSWORD_FILE go together: set both or neither');
  }
  if ((config.stateRegistryUsername === undefined) !== (config.stateRegistryPassword === undefined)) {
    problems.push('STATE_REGISTRY_USERNAME and STATE_REGISTRY_PASSWORD go together: set both or neither');
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return config;
}

/**
 * The environment with each secret read from its <NAME>_FILE when that is set. Both set is a
 * problem naming both (which one was meant cannot be guessed); so is a file that cannot be
 * read or is empty. The file's content is never part of a message.
 */
function secretsFromFiles(env: Env, read: (path: string) => string, problems: string[]): Env {
  const fromFiles: Record<string, string> = {};
  for (const name of SECRET_VARIABLES) {
    const fileVar = `${name}_FILE`;
    const path = env[fileVar];
    if (path === undefined || path === '') continue;
    if (env[name] !== undefined && env[name] !== '') {
      problems.push(`${name} and ${fileVar} are both set: set one of them`);
      continue;
    }
    let value: string;
    try {
      value = read(path).replace(/(\r?\n)+$/, '');
    } catch (err) {
      problems.push(`${fileVar}=${JSON.stringify(path)} cannot be read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
      continue;
    }
    if (value === '') problems.push(`${fileVar}=${JSON.stringify(path)} is empty`);
    else fromFiles[name] = value;
  }
  // A view, not a copy: every other name is still looked up in env as it is asked for.
  return new Proxy(env, { get: (target, key) => (typeof key === 'string' && key in fromFiles ? fromFiles[key] : Reflect.get(target, key)) });
}

/**
 * libpq's ways to find a primary among several servers (`host=a,b`, target_session_attrs)
 * are not implemented by node-postgres, which would connect to the first and ignore the
 * rest: refused, so nobody believes the service fails over by them.
 */
function postgresFailoverOptions(databaseUrl: string, problems: string[]): void {
  let u: URL;
  try {
    u = new URL(databaseUrl);
  } catch {
    return; // named already
  }
  const hosts = [u.hostname, ...u.searchParams.getAll('host')];
  if (hosts.some((h) => h.includes(','))) {
    problems.push('DATABASE_URL names several hosts: node-postgres connects to one; give one address that always leads to the primary (see "Highly available Postgres" in the README)');
  }
  if (u.searchParams.has('target_session_attrs')) {
    problems.push('DATABASE_URL: target_session_attrs is a libpq option node-postgres does not implement; give one address that always leads to the primary (see "Highly available Postgres" in the README)');
  }
}

/** REDIS_SENTINELS: "host:port" items separated by commas (an IPv6 address in brackets). */
function sentinels(raw: string | undefined, problems: string[]): { host: string; port: number }[] | undefined {
  if (raw === undefined || raw.trim() === '') return undefined;
  const list: { host: string; port: number }[] = [];
  for (const item of raw.split(',').map((x) => x.trim()).filter((x) => x !== '')) {
    const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\s[\]]+)):(\d{1,5})$/.exec(item);
    const port = m ? Number(m[3]) : NaN;
    if (!m || port < 1 || port > 65535) {
      problems.push(`REDIS_SENTINELS item ${JSON.stringify(item)} is not host:port`);
      continue;
    }
    list.push({ host: (m[1] ?? m[2])!, port });
  }
  if (list.length === 0) problems.push('REDIS_SENTINELS names no sentinel');
  return list;
}

/** A command that serves requests cannot run without a secret to check them against. */
export function requireEndpointPassword(config: Config): string {
  if (config.endpointPassword === undefined) {
    throw new ConfigError([
      'ENDPOINT_PASSWORD is not set: choose the secret Harbor\'s registry endpoint will use ' +
        '(`make run` generates and prints one)',
    ]);
  }
  return config.endpointPassword;
}

/** The admin credential, when configured; the admin API and dashboard are not served without it. */
export function adminCredential(config: Config): { username: string; password: string } | undefined {
  return config.adminUsername && config.adminPassword ? { username: config.adminUsername, password: config.adminPassword } : undefined;
}

/**
 * The credential /metrics asks for, read from its files (only by the commands that serve it,
 * so a one-off command does not need them); undefined when none is configured.
 */
export function metricsCredential(config: Config): OperationsCredential | undefined {
  const problems: string[] = [];
  const credential = readOperationsCredential(
    { tokenFile: config.metricsTokenFile, username: config.metricsUsername, passwordFile: config.metricsPasswordFile },
    { tokenFile: 'METRICS_TOKEN_FILE', username: 'METRICS_USERNAME', passwordFile: 'METRICS_PASSWORD_FILE' },
    problems,
  );
  if (problems.length > 0) throw new ConfigError(problems);
  return credential;
}

/** STATE_REGISTRY's credentials, when configured (they come as a pair). */
export function stateRegistryCredentials(config: Config): { username: string; password: string } | undefined {
  return config.stateRegistryUsername && config.stateRegistryPassword
    ? { username: config.stateRegistryUsername, password: config.stateRegistryPassword }
    : undefined;
}

/** The worker signs every state; it cannot start without the key. */
export function requireSigningKey(config: Config): string {
  if (config.cosignKey === undefined) {
    throw new ConfigError(['COSIGN_KEY is not set: the path of the key states are signed with, or the PEM itself (`satellite keys generate` makes one)']);
  }
  return config.cosignKey;
}

/** Hides the password of a URL so it can appear in an error or a log line. */
export function redact(value: string): string {
  try {
    const u = new URL(value);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return value.replace(/\/\/([^:/@]+):[^@]*@/, '//$1:***@');
  }
}
