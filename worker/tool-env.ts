import type { Options, Result } from 'execa';
import { SECRET_VARIABLES } from '../core/config.js';

/**
 * What the service holds that a CLI it runs (cosign, oras) must not inherit: every secret
 * variable (and its _FILE path) and the signing key (a PEM may be the value itself). execa passes the whole environment on by default, so a cosign plugin or
 * a crash dump of one would otherwise see the database URL and the endpoint's password.
 * A deny-list rather than an allow-list: the CLIs need the rest as an operator set it
 * (proxies, CA bundles, HOME, cosign's and oras' own variables).
 */
const WITHHELD = new Set<string>([
  ...SECRET_VARIABLES.flatMap((name) => [name, `${name}_FILE`]),
  'COSIGN_KEY',
]);

/** This process's environment without the service's secrets, plus `extra`: what runTool gives a CLI. */
export function toolEnvironment(extra: Record<string, string | undefined> = {}, env: NodeJS.ProcessEnv = process.env): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(env)) if (value !== undefined && !WITHHELD.has(name)) out[name] = value;
  for (const [name, value] of Object.entries(extra)) if (value !== undefined) out[name] = value;
  return out;
}

/**
 * Runs a CLI (cosign, oras) through execa with toolEnvironment(`env`) as its whole
 * environment. execa is loaded on first use: only SIGNER=cosign and the oras pusher run
 * one, and execa with its dependencies otherwise weighs 5-9 MiB of every worker's memory
 * (the default built-in signer and pusher never need it).
 */
export async function runTool(file: string, args: readonly string[],
  options: Omit<Options, 'env' | 'extendEnv'> & { env?: Record<string, string | undefined> } = {}): Promise<Result> {
  const { execa } = await import('execa');
  return execa(file, args, { ...options, env: toolEnvironment(options.env), extendEnv: false });
}
