import type { Swagger2 } from '../harbor-api/tools/harbor-spec.js';

// Checks requests against Harbor's published swagger.yaml for the Harbor API double:
// the operation must exist, required parameters must be present, parameter and body types
// must match (with the spec's maximum and required fields), and bodies may carry no field
// the spec does not define. Hand-written: the upstream file is Swagger 2.0, which the
// OpenAPI 3 validators of the field (ajv-based) do not read without a conversion that would
// itself need checking; these few rules are the ones a client can get wrong.

export type Json = Record<string, unknown>;

export interface Operation {
  method: string;
  template: string;
  pattern: RegExp;
  names: string[];
  op: Json;
  id: string;
}

export function operations(doc: Swagger2): Operation[] {
  const out: Operation[] = [];
  for (const [template, item] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(item)) {
      if (method === 'parameters') continue;
      const names: string[] = [];
      const pattern = new RegExp(`^${template.replace(/\{([^}]+)\}/g, (_, n: string) => { names.push(n); return '([^/]+)'; })}$`);
      out.push({ method: method.toUpperCase(), template, pattern, names, op: op as Json, id: (op as Json).operationId as string });
    }
  }
  // A literal segment wins over a parameter (/projects/{name} vs /projects/x/…): longer
  // templates with fewer parameters first.
  return out.sort((a, b) => a.names.length - b.names.length || b.template.length - a.template.length);
}

export function deref(doc: Swagger2, value: Json): Json {
  const ref = value.$ref;
  if (typeof ref !== 'string') return value;
  const [, section, name] = ref.split('/');
  return ((doc as unknown as Record<string, Record<string, Json>>)[section!]![name!]) as Json;
}

/** Checks a JSON value against a Swagger 2 schema; returns the problems found. */
export function validate(doc: Swagger2, schema: Json | undefined, value: unknown, at: string): string[] {
  if (!schema) return [];
  const s = deref(doc, schema);
  if (value === null || value === undefined) return [];
  const type = s.type as string | undefined;
  const kind = Array.isArray(value) ? 'array' : typeof value;
  if (type === 'integer' && !(typeof value === 'number' && Number.isInteger(value))) return [`${at}: expected integer, got ${JSON.stringify(value)}`];
  if (type === 'number' && typeof value !== 'number') return [`${at}: expected number`];
  if (type === 'string' && typeof value !== 'string') return [`${at}: expected string, got ${kind}`];
  if (type === 'boolean' && typeof value !== 'boolean') return [`${at}: expected boolean, got ${kind}`];
  if (typeof s.maxLength === 'number' && typeof value === 'string' && value.length > s.maxLength) return [`${at}: longer than ${s.maxLength}`];
  if (type === 'array') {
    if (!Array.isArray(value)) return [`${at}: expected array`];
    return value.flatMap((v, i) => validate(doc, s.items as Json, v, `${at}[${i}]`));
  }
  if (type === 'object' || s.properties) {
    if (kind !== 'object') return [`${at}: expected object`];
    const props = (s.properties ?? {}) as Record<string, Json>;
    const extra = s.additionalProperties as Json | boolean | undefined;
    const missing = ((s.required as string[] | undefined) ?? []).filter((k) => (value as Json)[k] === undefined).map((k) => `${at}.${k}: required`);
    return [...missing, ...Object.entries(value as Json).flatMap(([k, v]) => {
      if (props[k]) return validate(doc, props[k], v, `${at}.${k}`);
      if (extra) return typeof extra === 'object' ? validate(doc, extra, v, `${at}.${k}`) : [];
      return [`${at}.${k}: not a field of the spec`];
    })];
  }
  return [];
}

function checkParameter(p: Json, raw: string | undefined, where: string): string[] {
  if (raw === undefined) return p.required ? [`missing required ${p.in} parameter ${p.name} (${where})`] : [];
  if (p.type === 'integer') {
    if (!/^-?\d+$/.test(raw)) return [`${p.in} parameter ${p.name} must be an integer, got ${raw}`];
    if (typeof p.maximum === 'number' && Number(raw) > p.maximum) return [`${p.in} parameter ${p.name} must be at most ${p.maximum}`];
    if (typeof p.minimum === 'number' && Number(raw) < p.minimum) return [`${p.in} parameter ${p.name} must be at least ${p.minimum}`];
  }
  if (p.type === 'boolean' && !/^(true|false)$/.test(raw)) return [`${p.in} parameter ${p.name} must be a boolean`];
  return [];
}

/** Every way a request breaks the operation's declared parameters and body. */
export function checkRequest(doc: Swagger2, o: Operation, input: {
  path: Record<string, string>; query: URLSearchParams; headers: Record<string, string | string[] | undefined>; body: string;
}): string[] {
  const declared = ((o.op.parameters as Json[] | undefined) ?? []).map((p) => deref(doc, p));
  const problems: string[] = [];
  for (const p of declared) {
    const name = p.name as string;
    if (p.in === 'path') problems.push(...checkParameter(p, input.path[name], 'path'));
    if (p.in === 'query') problems.push(...checkParameter(p, input.query.get(name) ?? undefined, 'query'));
    if (p.in === 'header') problems.push(...checkParameter(p, input.headers[name.toLowerCase()] as string | undefined, 'header'));
    if (p.in === 'body') {
      if (!input.body) {
        if (p.required) problems.push('missing required body');
      } else {
        try {
          problems.push(...validate(doc, p.schema as Json, JSON.parse(input.body), 'body'));
        } catch {
          problems.push('body is not JSON');
        }
      }
    }
  }
  for (const key of input.query.keys()) {
    if (!declared.some((p) => p.in === 'query' && p.name === key)) problems.push(`unknown query parameter ${key}`);
  }
  if (input.body && !declared.some((p) => p.in === 'body')) problems.push('a body where the operation takes none');
  return problems;
}
