import { readFileSync } from 'node:fs';
import { Ajv } from 'ajv';
import { parse } from 'yaml';

// A Compose file as `docker compose config` reads it: YAML with merge keys, then variable
// interpolation; and its check against the Compose Specification's JSON schema
// (deploy/compose/compose-spec, vendored with its source and license).

export type ComposeFile = {
  name?: string;
  services: Record<string, ComposeService>;
  networks?: Record<string, { name?: string; external?: boolean } | null>;
  secrets?: Record<string, { file?: string }>;
  [key: string]: unknown;
};

export interface ComposeService {
  image?: string;
  command?: string[] | string;
  environment?: Record<string, string | null> | string[];
  networks?: string[] | Record<string, unknown>;
  depends_on?: string[] | Record<string, { condition?: string }>;
  read_only?: boolean;
  tmpfs?: string[] | string;
  cap_drop?: string[];
  security_opt?: string[];
  secrets?: (string | { source: string })[];
  ports?: (string | number | { target: number })[];
  [key: string]: unknown;
}

export class InterpolationError extends Error {}

/**
 * The Compose Specification's interpolation (https://compose-spec.io, "Interpolation"):
 * $VAR, ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, ${VAR?error},
 * ${VAR:+replacement}, ${VAR+replacement}, and $$ for a literal $. Written here because the
 * only implementation is compose-go's; no npm package does it.
 */
export function interpolate(text: string, env: Record<string, string | undefined>): string {
  let out = '';
  for (let i = 0; i < text.length; i++) {
    const ch = text[i]!;
    if (ch !== '$') {
      out += ch;
      continue;
    }
    const next = text[i + 1];
    if (next === '$') {
      out += '$';
      i++;
      continue;
    }
    if (next === '{') {
      let depth = 1;
      let j = i + 2;
      for (; j < text.length && depth > 0; j++) {
        if (text[j] === '{') depth++;
        else if (text[j] === '}') depth--;
      }
      if (depth !== 0) throw new InterpolationError(`unclosed \${ in ${JSON.stringify(text)}`);
      out += expand(text.slice(i + 2, j - 1), env);
      i = j - 1;
      continue;
    }
    const m = /^[A-Za-z_][A-Za-z0-9_]*/.exec(text.slice(i + 1));
    if (!m) throw new InterpolationError(`a lone $ in ${JSON.stringify(text)} (write $$)`);
    out += env[m[0]] ?? '';
    i += m[0].length;
  }
  return out;
}

function expand(body: string, env: Record<string, string | undefined>): string {
  const m = /^([A-Za-z_][A-Za-z0-9_]*)(?:(:?)([-?+])(.*))?$/s.exec(body);
  if (!m) throw new InterpolationError(`\${${body}} is not a valid substitution`);
  const [, name, colon, op, arg = ''] = m;
  const value = env[name!];
  const unset = colon ? value === undefined || value === '' : value === undefined;
  if (op === undefined) return value ?? '';
  if (op === '-') return unset ? interpolate(arg, env) : value!;
  if (op === '+') return unset ? '' : interpolate(arg, env);
  if (unset) throw new InterpolationError(`${name}: ${interpolate(arg, env) || 'required'}`);
  return value!;
}

/** Every variable the file interpolates, with whether it is required (${VAR:?…}). */
export function interpolatedVariables(text: string): Map<string, { required: boolean }> {
  const found = new Map<string, { required: boolean }>();
  for (const m of text.matchAll(/\$\{([A-Za-z_][A-Za-z0-9_]*)(:?[-?+])?/g)) {
    const required = m[2] === '?' || m[2] === ':?';
    found.set(m[1]!, { required: required || found.get(m[1]!)?.required === true });
  }
  return found;
}

function deepInterpolate(value: unknown, env: Record<string, string | undefined>): unknown {
  if (typeof value === 'string') return interpolate(value, env);
  if (Array.isArray(value)) return value.map((v) => deepInterpolate(v, env));
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, deepInterpolate(v, env)]));
  }
  return value;
}

/** The file parsed (merge keys applied) and interpolated with `env`. */
export function loadCompose(path: string, env: Record<string, string | undefined>): ComposeFile {
  return deepInterpolate(parse(readFileSync(path, 'utf8'), { merge: true }), env) as ComposeFile;
}

/** Problems the Compose Specification's schema finds, one line each. */
export function composeSchemaProblems(doc: unknown, schemaPath = 'deploy/compose/compose-spec/compose-spec.json'): string[] {
  // strict: false, as the schema uses the draft 2019 keyword "deprecated" that draft-07
  // lacks; validateSchema: false, as it names draft-07 by an address Ajv does not register
  // (https, no "#"). Ajv's default draft is draft-07 itself.
  const ajv = new Ajv({ allErrors: true, strict: false, validateSchema: false });
  const validate = ajv.compile(JSON.parse(readFileSync(schemaPath, 'utf8')));
  if (validate(doc)) return [];
  return (validate.errors ?? []).map((e) => `${e.instancePath || '/'} ${e.message}${e.params && 'additionalProperty' in e.params ? `: ${String(e.params.additionalProperty)}` : ''}`);
}

/** A service's environment as a map (the list form NAME=value too). */
export function environmentOf(service: ComposeService): Record<string, string> {
  const env = service.environment ?? {};
  if (Array.isArray(env)) return Object.fromEntries(env.map((e) => [e.slice(0, e.indexOf('=')), e.slice(e.indexOf('=') + 1)]));
  return Object.fromEntries(Object.entries(env).map(([k, v]) => [k, v ?? '']));
}
