import { ConfigError, loadConfig, requireEndpointPassword, requireSigningKey, type Config, type LoadOptions } from '../../core/config.js';

// What the deployment files (deploy/kubernetes, deploy/compose) are checked against: the
// service's own configuration module, not a list kept beside it.

/**
 * Every environment variable core/config.ts reads, found by running loadConfig on an
 * environment that records each name asked of it (once empty, once with every name set, so
 * a name read only when another is set is seen too).
 */
export function configVariables(): Set<string> {
  const read = new Set<string>();
  for (const value of [undefined, '1']) {
    const env = new Proxy({} as Record<string, string | undefined>, {
      get(_target, key) {
        if (typeof key === 'string') read.add(key);
        return value;
      },
    });
    try {
      loadConfig(env);
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
    }
  }
  return read;
}

/** The commands of `satellite` a deployment runs, and what each listens on. */
export type ServiceCommand = 'serve' | 'adapter' | 'worker' | 'migrate';

/**
 * A value of the right shape for a secret the files reference by name only, so that
 * loadConfig can check everything around it (each distinct: ADMIN_PASSWORD may not equal
 * ENDPOINT_PASSWORD).
 */
export function secretPlaceholder(variable: string): string {
  if (variable === 'DATABASE_URL') return 'postgres://satellite:placeholder@db.invalid:5432/satellite';
  if (variable === 'REDIS_URL') return 'redis://:placeholder@cache.invalid:6379';
  return `${variable.toLowerCase()}-placeholder-0123456789`;
}

/**
 * What core/config.ts and the command require of the environment, as problems (none when
 * the process would start): loadConfig's own checks, the secrets serving or signing needs,
 * and the connections whose defaults are loopback addresses, meaningless in a container.
 */
export function processProblems(command: ServiceCommand, env: Record<string, string>, options: LoadOptions = {}): string[] {
  let config: Config;
  try {
    config = loadConfig(env, options);
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  const problems: string[] = [];
  const need = (...names: string[]) => {
    for (const n of names) if (!env[n] && !env[`${n}_FILE`]) problems.push(`${n} is not set (its default is a loopback address)`);
  };
  const required = (fn: () => unknown) => {
    try {
      fn();
    } catch (err) {
      if (err instanceof ConfigError) problems.push(...err.problems);
      else throw err;
    }
  };
  need('DATABASE_URL');
  if (command !== 'migrate') need('REDIS_URL');
  if (command === 'serve' || command === 'adapter') required(() => requireEndpointPassword(config));
  if (command === 'serve' || command === 'worker') {
    required(() => requireSigningKey(config));
    need('STATE_REGISTRY');
  }
  return problems;
}

/** The TCP ports the command listens on, each with the address it binds. */
export function listeningPorts(command: ServiceCommand, env: Record<string, string>, options: LoadOptions = {}): { port: number; host: string; what: string }[] {
  if (command === 'migrate') return [];
  const config = loadConfig(env, options);
  const ports = [{ port: config.metricsPort, host: config.metricsHost, what: 'operations listener (METRICS_PORT)' }];
  if (command !== 'worker') ports.push({ port: config.port, host: config.host, what: 'endpoint (PORT)' });
  return ports;
}

export const isLoopback = (host: string) => host === 'localhost' || host === '::1' || host.startsWith('127.');
