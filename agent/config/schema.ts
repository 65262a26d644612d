import { Ajv, type ErrorObject } from 'ajv';

// JSON Schema validation (ajv) with errors phrased for a person: each names the field, in
// the path notation of the document it came from (groups[0].state).

const ajv = new Ajv({ allErrors: true, strict: false });

function fieldPath(instancePath: string, extra?: string): string {
  const parts = instancePath.split('/').slice(1).map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'));
  if (extra !== undefined) parts.push(extra);
  return parts.reduce((acc, p) => (/^\d+$/.test(p) ? `${acc}[${p}]` : acc ? `${acc}.${p}` : p), '') || '(top level)';
}

function describe(e: ErrorObject): string {
  const params = e.params as Record<string, unknown>;
  if (e.keyword === 'additionalProperties') return `${fieldPath(e.instancePath, params.additionalProperty as string)}: unknown key`;
  if (e.keyword === 'required') return `${fieldPath(e.instancePath, params.missingProperty as string)}: required`;
  if (e.keyword === 'enum') return `${fieldPath(e.instancePath)}: must be one of ${(params.allowedValues as unknown[]).map((v) => JSON.stringify(v)).join(', ')}`;
  return `${fieldPath(e.instancePath)}: ${e.message ?? 'invalid'}`;
}

/** A validator returning the problems found (none when the value fits). */
export function compileSchema(schema: object): (value: unknown) => string[] {
  const validate = ajv.compile(schema);
  return (value) => (validate(value) ? [] : [...new Set<string>((validate.errors ?? []).map(describe))]);
}
