import { existsSync, readFileSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import { X509Certificate, type KeyObject } from 'node:crypto';
import { parse as parseYaml } from 'yaml';
import { loadPublicKey } from '../../core/cosign/keys.js';
import { isRepositoryName } from '../../core/oci/names.js';
import { readOperationsCredential, type OperationsCredential } from '../../core/operations-auth.js';
import { DEFAULT_STATE_MAX_MB } from '../../core/state/format.js';
import { compileSchema } from './schema.js';
import { hostPlatform, parsePlatform, type Platform } from '../sync/platform.js';

// The agent's configuration: a small YAML file (--config) and/or environment variables
// (SATELLITE_AGENT_*, which override the file's scalar keys). This module is the agent's
// only reader of process.env. Every problem is reported with the field it is in.

export interface AgentGroup {
  name: string;
  /** The state's repository in the registry, e.g. satellite/group-state/edge-eu/state. */
  state: string;
  publicKey: KeyObject;
  /** "host/repository" a state's signature must name; by default the registry's host and `state`. */
  identity: string;
  /** When set, every image the group lists must carry a cosign signature by this key. */
  imageKey?: KeyObject;
}

export interface AgentConfig {
  /** Harbor's registry URL (states are read there; images too when a state names it). */
  registry: string;
  /**
   * PEM CA certificates (caFile) trusted besides the system's for every HTTPS request the
   * agent makes: the registries, their token services, the status reports.
   */
  ca?: string;
  credentials?: { username: string; password: string };
  groups: AgentGroup[];
  platforms: Platform[];
  /** Pull an index's attestation manifests (platform unknown/unknown) too. */
  attestations: boolean;
  store: string;
  listen: { host: string; port: number };
  intervalMs: number;
  /** How often, while images are pulled, their progress is logged and recorded for `status`. */
  progressIntervalMs: number;
  /** Images pulled at once; blobs at once is twice that. */
  concurrency: number;
  timeoutMs: number;
  /** The most a state may weigh, in bytes: its layer as sent and its JSON (maxStateMb). */
  maxStateBytes: number;
  mirrors: {
    /** containerd's hosts directory (certs.d); unset: not written. */
    containerd?: string;
    /** The registries.conf.d drop-in for CRI-O and podman; unset: not written. */
    registriesConf?: string;
    /** What CRI-O/podman may pull from the mirror: "digest-only" (default), "tag-only" or "all". */
    pullFromMirror: 'digest-only' | 'tag-only' | 'all';
    /** containerd's config.toml, checked (never written) for the CRI config_path. */
    containerdConfig: string;
  };
  report?: { url: string };
  /** Bounds of the local server: bodies sent at once, and how long a stalled client keeps its connection. */
  server: {
    maxStreams: number;
    maxStreamsPerClient: number;
    idleTimeoutMs: number;
    /** A digest a verified state names but the store lacks is fetched for the peer that asks (serve/pull-through.ts); default on. */
    pullThrough: boolean;
  };
  /** What /status and /metrics ask for; unset: they answer whoever reaches `listen`. */
  operations?: OperationsCredential;
  /**
   * Origin of a registry a state names (as the worker sees Harbor, IMAGE_REGISTRY) → the URL
   * this device reaches it at. Images are pulled from the latter, with the credential when it
   * is `registry`'s origin; the mirror files name it too.
   */
  registryAliases: Record<string, string>;
  /**
   * Other agents' /v2 servers at the site (a gateway, peers), tried before the registry for
   * everything digest-addressed, and for the state's tag only when the registry is
   * unreachable (sync/upstreams.ts). Nothing they send is trusted unverified.
   */
  upstreams: string[];
  /** How long an upstream may take to answer, or stay silent mid-body, before it is skipped (upstreamTimeout). */
  upstreamTimeoutMs: number;
  /** The alternative target: a registry at the site the agent fills (every platform of an index). */
  pushTo?: { registry: string; credentials?: { username: string; password: string } };
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
}

export class AgentConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid agent configuration:\n  - ${problems.join('\n  - ')}`);
    this.name = 'AgentConfigError';
  }
}

const DURATION = '^\\s*\\d+(\\.\\d+)?\\s*(ms|s|m|h)?\\s*$';

/** The file's shape; additionalProperties false so a misspelt key is named, not ignored. */
const SCHEMA = {
  type: 'object',
  additionalProperties: false,
  properties: {
    registry: { type: 'string', minLength: 1 },
    username: { type: 'string', minLength: 1 },
    password: { type: 'string' },
    passwordFile: { type: 'string', minLength: 1 },
    caFile: { type: 'string', minLength: 1 },
    groups: {
      type: 'array',
      minItems: 1,
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['name', 'state', 'publicKey'],
        properties: {
          name: { type: 'string', minLength: 1 },
          state: { type: 'string', minLength: 1 },
          publicKey: { type: 'string', minLength: 1 },
          identity: { type: 'string', minLength: 1 },
          verifyImages: {
            type: 'object',
            additionalProperties: false,
            required: ['publicKey'],
            properties: { publicKey: { type: 'string', minLength: 1 } },
          },
        },
      },
    },
    platforms: { type: 'array', minItems: 1, items: { type: 'string' } },
    attestations: { type: 'boolean' },
    store: { type: 'string', minLength: 1 },
    listen: { type: 'string', minLength: 1 },
    interval: { type: ['string', 'number'] },
    progressInterval: { type: ['string', 'number'] },
    concurrency: { type: 'integer', minimum: 1, maximum: 64 },
    timeout: { type: ['string', 'number'] },
    maxStateMb: { type: 'integer', minimum: 1, maximum: 4096 },
    mirrors: {
      type: 'object',
      additionalProperties: false,
      properties: {
        containerd: { type: 'string', minLength: 1 },
        registriesConf: { type: 'string', minLength: 1 },
        pullFromMirror: { enum: ['digest-only', 'tag-only', 'all'] },
        containerdConfig: { type: 'string', minLength: 1 },
      },
    },
    report: {
      type: 'object',
      additionalProperties: false,
      required: ['url'],
      properties: { url: { type: 'string', minLength: 1 } },
    },
    registryAliases: { type: 'object', additionalProperties: { type: 'string', minLength: 1 } },
    upstreams: { type: 'array', items: { type: 'string', minLength: 1 } },
    upstreamTimeout: { type: ['string', 'number'] },
    pushTo: {
      type: 'object',
      additionalProperties: false,
      required: ['registry'],
      properties: { registry: { type: 'string', minLength: 1 }, username: { type: 'string', minLength: 1 }, password: { type: 'string' } },
    },
    server: {
      type: 'object',
      additionalProperties: false,
      properties: {
        maxStreams: { type: 'integer', minimum: 1, maximum: 100_000 },
        maxStreamsPerClient: { type: 'integer', minimum: 1, maximum: 100_000 },
        idleTimeout: { type: ['string', 'number'] },
        pullThrough: { type: 'boolean' },
      },
    },
    operations: {
      type: 'object',
      additionalProperties: false,
      properties: { tokenFile: { type: 'string', minLength: 1 }, username: { type: 'string', minLength: 1 }, passwordFile: { type: 'string', minLength: 1 } },
    },
    logLevel: { enum: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] },
  },
} as const;

const validateFile = compileSchema(SCHEMA);

type Env = Record<string, string | undefined>;
type FileShape = Record<string, unknown>;

/** "30s", "5m", "250ms", "1h" or a number of seconds, in milliseconds. */
export function parseDuration(value: unknown): number | undefined {
  if (typeof value === 'number') return value > 0 ? value * 1000 : undefined;
  if (typeof value !== 'string' || !new RegExp(DURATION).test(value)) return undefined;
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$/.exec(value)!;
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[(m[2] ?? 's') as 'ms' | 's' | 'm' | 'h'];
  const ms = Number(m[1]) * unit;
  return ms > 0 ? ms : undefined;
}

/** Environment variables that override a key of the file. */
const ENV_KEYS: Record<string, string> = {
  SATELLITE_AGENT_REGISTRY: 'registry',
  SATELLITE_AGENT_USERNAME: 'username',
  SATELLITE_AGENT_PASSWORD: 'password',
  SATELLITE_AGENT_PASSWORD_FILE: 'passwordFile',
  SATELLITE_AGENT_STORE: 'store',
  SATELLITE_AGENT_LISTEN: 'listen',
  SATELLITE_AGENT_INTERVAL: 'interval',
  SATELLITE_AGENT_LOG_LEVEL: 'logLevel',
};

/** Where the Debian package and the README's unit put the configuration. */
export const DEFAULT_CONFIG_PATH = '/etc/satellite/agent.yaml';

/**
 * The configuration file: named by --config or SATELLITE_AGENT_CONFIG, else
 * /etc/satellite/agent.yaml when it exists; undefined (the environment alone) otherwise.
 */
export function configPath(flag: string | undefined, env: Env = process.env): string | undefined {
  return flag ?? env.SATELLITE_AGENT_CONFIG ?? (existsSync(DEFAULT_CONFIG_PATH) ? DEFAULT_CONFIG_PATH : undefined);
}

export function loadAgentConfig(path: string | undefined, env: Env = process.env): AgentConfig {
  let file: FileShape = {};
  if (path !== undefined) {
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (err) {
      throw new AgentConfigError([`cannot read ${path}: ${(err as Error).message}`]);
    }
    try {
      file = (parseYaml(text) ?? {}) as FileShape;
    } catch (err) {
      throw new AgentConfigError([`${path} is not valid YAML: ${(err as Error).message}`]);
    }
    if (typeof file !== 'object' || Array.isArray(file)) throw new AgentConfigError([`${path} must hold a mapping of keys`]);
  }
  for (const [name, key] of Object.entries(ENV_KEYS)) if (env[name] !== undefined && env[name] !== '') file[key] = env[name];
  if (env.SATELLITE_AGENT_PLATFORMS) file.platforms = env.SATELLITE_AGENT_PLATFORMS.split(',').map((s) => s.trim());

  const schemaProblems = validateFile(file);
  if (schemaProblems.length) throw new AgentConfigError(schemaProblems);
  return resolveConfig(file, path === undefined ? process.cwd() : dirname(resolve(path)), env);
}

function resolveConfig(file: FileShape, base: string, env: Env): AgentConfig {
  const problems: string[] = [];
  const at = (p: string) => (isAbsolute(p) ? p : resolve(base, p));

  const registry = requiredUrl(file.registry, 'registry', problems);
  let credentials: AgentConfig['credentials'];
  const username = file.username as string | undefined;
  let password = file.password as string | undefined;
  if (file.passwordFile !== undefined) {
    if (password !== undefined) problems.push('password and passwordFile: give one of them');
    try {
      password = readFileSync(at(file.passwordFile as string), 'utf8').replace(/\r?\n$/, '');
    } catch (err) {
      problems.push(`passwordFile: cannot read ${file.passwordFile as string}: ${(err as Error).message}`);
    }
  }
  if (username !== undefined && password !== undefined) credentials = { username, password };
  else if (username !== undefined || password !== undefined) problems.push('username and password (or passwordFile) go together: give both or neither');

  let ca: string | undefined;
  if (file.caFile !== undefined) {
    try {
      ca = readFileSync(at(file.caFile as string), 'utf8');
      new X509Certificate(ca); // the first certificate of the bundle parses
    } catch (err) {
      problems.push(`caFile: ${file.caFile as string} is not a readable PEM certificate bundle: ${(err as Error).message}`);
      ca = undefined;
    }
  }

  const key = (pemOrPath: string, where: string): KeyObject | undefined => {
    try {
      const pem = pemOrPath.includes('-----BEGIN') ? pemOrPath : readFileSync(at(pemOrPath), 'utf8');
      return loadPublicKey(pem);
    } catch (err) {
      problems.push(`${where}: ${(err as Error).message}`);
      return undefined;
    }
  };
  const registryHost = registry ? new URL(registry).host : '';
  const seen = new Set<string>();
  const groups: AgentGroup[] = [];
  const fileGroups = (file.groups ?? []) as { name: string; state: string; publicKey: string; identity?: string; verifyImages?: { publicKey: string } }[];
  if (fileGroups.length === 0) problems.push('groups: list at least one group ({name, state, publicKey})');
  fileGroups.forEach((g, i) => {
    const where = `groups[${i}]`;
    if (seen.has(g.name)) problems.push(`${where}.name: group ${g.name} is listed twice`);
    // A group's name names its files in the store (states/<group>.json): one path component.
    if (!isRepositoryName(g.name) || g.name.includes('/')) problems.push(`${where}.name: ${JSON.stringify(g.name)} is not a group name (lower-case letters, digits and . _ - separators)`);
    seen.add(g.name);
    if (!isRepositoryName(g.state)) problems.push(`${where}.state: ${JSON.stringify(g.state)} is not a repository name`);
    const publicKey = key(g.publicKey, `${where}.publicKey`);
    const imageKey = g.verifyImages ? key(g.verifyImages.publicKey, `${where}.verifyImages.publicKey`) : undefined;
    if (publicKey) groups.push({ name: g.name, state: g.state, publicKey, identity: g.identity ?? `${registryHost}/${g.state}`, ...(imageKey ? { imageKey } : {}) });
  });

  const platforms: Platform[] = [];
  for (const [i, text] of ((file.platforms as string[] | undefined) ?? []).entries()) {
    const p = parsePlatform(text);
    if (p) platforms.push(p);
    else problems.push(`platforms[${i}]: ${JSON.stringify(text)} is not os/architecture[/variant]`);
  }
  if (file.platforms === undefined) platforms.push(hostPlatform());

  const listen = parseListen((file.listen as string | undefined) ?? '127.0.0.1:8585');
  if (!listen) problems.push(`listen: ${JSON.stringify(file.listen)} is not host:port`);
  const intervalMs = file.interval === undefined ? 30_000 : parseDuration(file.interval);
  if (intervalMs === undefined) problems.push(`interval: ${JSON.stringify(file.interval)} is not a duration such as 30s or 5m`);
  const progressIntervalMs = file.progressInterval === undefined ? 10_000 : parseDuration(file.progressInterval);
  if (progressIntervalMs === undefined || progressIntervalMs <= 0) problems.push(`progressInterval: ${JSON.stringify(file.progressInterval)} is not a duration such as 10s`);
  const timeoutMs = file.timeout === undefined ? 30_000 : parseDuration(file.timeout);
  if (timeoutMs === undefined) problems.push(`timeout: ${JSON.stringify(file.timeout)} is not a duration such as 30s`);
  const registryAliases: Record<string, string> = {};
  for (const [from, to] of Object.entries((file.registryAliases ?? {}) as Record<string, string>)) {
    const a = requiredUrl(from, `registryAliases: the key ${JSON.stringify(from)}`, problems);
    const b = requiredUrl(to, `registryAliases[${JSON.stringify(from)}]`, problems);
    if (a && b) registryAliases[new URL(a).origin] = b;
  }
  const upstreams: string[] = [];
  for (const [i, u] of ((file.upstreams as string[] | undefined) ?? []).entries()) {
    const url = requiredUrl(u, `upstreams[${i}]`, problems);
    if (!url) continue;
    if (new URL(url).pathname !== '/') problems.push(`upstreams[${i}]: ${JSON.stringify(u)} must be a base URL (scheme, host and port, e.g. http://site-gw:8585): another agent serves /v2 at its root`);
    else if (upstreams.includes(new URL(url).origin)) problems.push(`upstreams[${i}]: ${JSON.stringify(u)} is listed twice`);
    else upstreams.push(new URL(url).origin);
  }
  const upstreamTimeoutMs = file.upstreamTimeout === undefined ? 5_000 : parseDuration(file.upstreamTimeout);
  if (upstreamTimeoutMs === undefined) problems.push(`upstreamTimeout: ${JSON.stringify(file.upstreamTimeout)} is not a duration such as 5s`);
  const report = file.report as { url: string } | undefined;
  if (report) requiredUrl(report.url, 'report.url', problems);
  const mirrors = (file.mirrors ?? {}) as Record<string, string>;
  const push = file.pushTo as { registry: string; username?: string; password?: string } | undefined;
  const pushRegistry = push ? requiredUrl(push.registry, 'pushTo.registry', problems) : undefined;
  if (push && (push.username === undefined) !== (push.password === undefined)) problems.push('pushTo.username and pushTo.password go together');
  const srv = (file.server ?? {}) as { maxStreams?: number; maxStreamsPerClient?: number; idleTimeout?: string | number; pullThrough?: boolean };
  const idleTimeoutMs = srv.idleTimeout === undefined ? 60_000 : parseDuration(srv.idleTimeout);
  if (idleTimeoutMs === undefined) problems.push(`server.idleTimeout: ${JSON.stringify(srv.idleTimeout)} is not a duration such as 60s`);
  const server = { maxStreams: srv.maxStreams ?? 128, maxStreamsPerClient: srv.maxStreamsPerClient ?? 32, idleTimeoutMs: idleTimeoutMs!, pullThrough: srv.pullThrough ?? false };
  if (server.maxStreamsPerClient >= server.maxStreams) problems.push(`server.maxStreamsPerClient (${server.maxStreamsPerClient}) must be below server.maxStreams (${server.maxStreams}): one client could take every stream`);
  const ops = file.operations as { tokenFile?: string; username?: string; passwordFile?: string } | undefined;
  const operations = ops && readOperationsCredential(
    { ...ops, ...(ops.tokenFile ? { tokenFile: at(ops.tokenFile) } : {}), ...(ops.passwordFile ? { passwordFile: at(ops.passwordFile) } : {}) },
    { tokenFile: 'operations.tokenFile', username: 'operations.username', passwordFile: 'operations.passwordFile' },
    problems,
  );

  if (problems.length) throw new AgentConfigError(problems);
  return {
    registry: registry!,
    ...(ca ? { ca } : {}),
    ...(credentials ? { credentials } : {}),
    groups,
    platforms,
    attestations: (file.attestations as boolean | undefined) ?? false,
    store: at((file.store as string | undefined) ?? '/var/lib/satellite-agent'),
    listen: listen!,
    intervalMs: intervalMs!,
    progressIntervalMs: progressIntervalMs!,
    concurrency: (file.concurrency as number | undefined) ?? 4,
    timeoutMs: timeoutMs!,
    maxStateBytes: ((file.maxStateMb as number | undefined) ?? DEFAULT_STATE_MAX_MB) * 1024 * 1024,
    mirrors: {
      ...(mirrors.containerd ? { containerd: at(mirrors.containerd) } : {}),
      ...(mirrors.registriesConf ? { registriesConf: at(mirrors.registriesConf) } : {}),
      pullFromMirror: (mirrors.pullFromMirror as AgentConfig['mirrors']['pullFromMirror'] | undefined) ?? 'digest-only',
      containerdConfig: at(mirrors.containerdConfig ?? env.SATELLITE_AGENT_CONTAINERD_CONFIG ?? '/etc/containerd/config.toml'),
    },
    ...(report ? { report: { url: report.url.replace(/\/+$/, '') } } : {}),
    server,
    ...(operations ? { operations } : {}),
    registryAliases,
    upstreams,
    upstreamTimeoutMs: upstreamTimeoutMs!,
    ...(push && pushRegistry ? { pushTo: { registry: pushRegistry, ...(push.username !== undefined ? { credentials: { username: push.username, password: push.password! } } : {}) } } : {}),
    logLevel: (file.logLevel as AgentConfig['logLevel'] | undefined) ?? 'info',
  };
}

function requiredUrl(value: unknown, field: string, problems: string[]): string | undefined {
  if (typeof value !== 'string' || value === '') {
    problems.push(`${field}: required (e.g. https://harbor.example.com)`);
    return undefined;
  }
  try {
    const u = new URL(value);
    if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error('scheme');
    return value.replace(/\/+$/, '');
  } catch {
    problems.push(`${field}: ${JSON.stringify(value)} is not an http(s) URL`);
    return undefined;
  }
}

/** "host:port", "[v6]:port" or ":port" (all addresses). */
export function parseListen(text: string): { host: string; port: number } | undefined {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(text.trim());
  if (!m) return undefined;
  const port = Number(m[3]);
  if (port > 65535) return undefined;
  return { host: m[1] ?? (m[2] || '0.0.0.0'), port };
}

/** Where this device pulls the images of a state naming `registry` from: its alias, else itself. */
export function imageRegistry(config: Pick<AgentConfig, 'registryAliases'>, registry: string): string {
  try {
    return config.registryAliases[new URL(registry).origin] ?? registry;
  } catch {
    return registry;
  }
}
