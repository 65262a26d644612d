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
  /** Failed logins from one address within a minute before it gets 429. @defaultValue 10 */
  authFailureLimit: number;
}

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n  - ${problems.join('\n  - ')}`);
    this.name = 'ConfigError';
  }
}

const LOG_LEVELS: readonly LogLevel[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

type Env = Record<string, string | undefined>;

export function loadConfig(env: Env = process.env): Config {
  const problems: string[] = [];
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

  const config: Config = {
    port: int('PORT', 8080, 0, 65535),
    host: str('HOST', '0.0.0.0'),
    databaseUrl: url('DATABASE_URL', 'postgres://postgres@127.0.0.1:5432/satellite', ['postgres:', 'postgresql:']),
    redisUrl: url('REDIS_URL', 'redis://127.0.0.1:6379', ['redis:', 'rediss:']),
    endpointUsername,
    endpointPassword,
    logLevel,
    imageRegistry,
    stateRegistry,
    tombstoneRetentionHours: int('TOMBSTONE_RETENTION_HOURS', 168, 0, 24 * 365 * 10),
    authFailureLimit: int('AUTH_FAILURE_LIMIT', 10, 1, 1_000_000),
  };
  if (problems.length > 0) throw new ConfigError(problems);
  return config;
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
