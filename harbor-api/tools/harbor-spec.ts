// Derives this project's Harbor API spec from Harbor's published Swagger 2.0 file: only the
// operations the project calls, converted to OpenAPI 3.0 (what openapi-typescript reads),
// with every definition they reach. The upstream file stays in ../shared as reference data;
// the derived spec (harbor-api/harbor-api.json) is ours and is committed, and a test derives it
// again and checks it is unchanged, so each operation and field is one Harbor publishes.
//
//   npm run generate:harbor   (rewrites harbor-api/harbor-api.json and harbor-api/src/generated/harbor.ts)

import { readFileSync } from 'node:fs';
import { parse } from 'yaml';

/** The Harbor operations the project uses, by operationId. */
export const HARBOR_OPERATIONS = [
  'getPing',
  'listRegistries',
  'createRegistry',
  'updateRegistry',
  'listReplicationPolicies',
  'createReplicationPolicy',
  'getReplicationPolicy',
  'updateReplicationPolicy',
  'deleteReplicationPolicy',
  'startReplication',
  'listReplicationExecutions',
  'getReplicationExecution',
  'headProject',
  'createProject',
  'listProjects',
  'listAllRepositories',
  'listArtifacts',
  'getArtifact',
  'CreateRobot',
  'ListRobot',
  'GetRobotByID',
  'UpdateRobot',
  'RefreshSec',
  'DeleteRobot',
  'ListWebhookPoliciesOfProject',
  'CreateWebhookPolicyOfProject',
  'UpdateWebhookPolicyOfProject',
  'DeleteWebhookPolicyOfProject',
] as const;

type Json = Record<string, unknown>;
const METHODS = ['get', 'put', 'post', 'delete', 'head', 'patch', 'options'];

export interface Swagger2 {
  basePath?: string;
  paths: Record<string, Record<string, Json>>;
  definitions: Record<string, Json>;
  parameters?: Record<string, Json>;
  responses?: Record<string, Json>;
}

export function loadUpstream(path: string): Swagger2 {
  return parse(readFileSync(path, 'utf8')) as Swagger2;
}

function deref<T extends Json>(doc: Swagger2, value: Json, section: 'parameters' | 'responses'): T {
  const ref = value.$ref;
  if (typeof ref !== 'string') return value as T;
  const name = ref.replace(`#/${section}/`, '');
  const found = doc[section]?.[name];
  if (!found) throw new Error(`unresolved ${ref}`);
  return found as T;
}

/** Swagger 2 schema → OpenAPI 3.0 schema: refs move to components, x-isnullable → nullable. */
function schema(value: unknown, used: Set<string>): unknown {
  if (Array.isArray(value)) return value.map((v) => schema(v, used));
  if (typeof value !== 'object' || value === null) return value;
  const out: Json = {};
  for (const [k, v] of Object.entries(value as Json)) {
    if (k === '$ref' && typeof v === 'string' && v.startsWith('#/definitions/')) {
      const name = v.slice('#/definitions/'.length);
      used.add(name);
      out.$ref = `#/components/schemas/${name}`;
    } else if (k === 'x-isnullable' || k === 'x-nullable') {
      if (v === true) out.nullable = true;
    } else if (k.startsWith('x-')) {
      continue;
    } else {
      out[k] = schema(v, used);
    }
  }
  // OpenAPI 3.0 ignores siblings of $ref; keep the reference alone.
  if (typeof out.$ref === 'string') return { $ref: out.$ref };
  return out;
}

function parameter(p: Json, used: Set<string>): Json {
  const { name, in: where, required, description, ...rest } = p;
  const s: Json = {};
  for (const k of ['type', 'format', 'items', 'enum', 'default', 'maximum', 'minimum']) if (rest[k] !== undefined) s[k] = schema(rest[k], used);
  return { name, in: where, required: where === 'path' ? true : Boolean(required), ...(description ? { description } : {}), schema: s };
}

export function deriveSpec(doc: Swagger2, operations: readonly string[] = HARBOR_OPERATIONS): Json {
  const used = new Set<string>();
  const paths: Record<string, Record<string, Json>> = {};
  const found = new Set<string>();
  for (const [path, item] of Object.entries(doc.paths)) {
    for (const method of METHODS) {
      const op = item[method] as Json | undefined;
      if (!op || !operations.includes(op.operationId as string)) continue;
      found.add(op.operationId as string);
      const shared = (item.parameters as unknown as Json[] | undefined) ?? [];
      const params = [...shared, ...((op.parameters as Json[] | undefined) ?? [])].map((p) => deref<Json>(doc, p, 'parameters'));
      const body = params.find((p) => p.in === 'body');
      const responses: Json = {};
      for (const [code, r] of Object.entries((op.responses as Json) ?? {})) {
        const resp = deref<Json>(doc, r as Json, 'responses');
        const headers = resp.headers as Record<string, Json> | undefined;
        responses[code] = {
          description: resp.description ?? '',
          ...(headers ? { headers: Object.fromEntries(Object.entries(headers).map(([h, v]) => [h, { ...(v.description ? { description: v.description } : {}), schema: { type: v.type } }])) } : {}),
          ...(resp.schema ? { content: { 'application/json': { schema: schema(resp.schema, used) } } } : {}),
        };
      }
      (paths[path] ??= {})[method] = {
        operationId: op.operationId,
        ...(op.summary ? { summary: op.summary } : {}),
        parameters: params.filter((p) => p.in !== 'body').map((p) => parameter(p, used)),
        ...(body ? { requestBody: { required: Boolean(body.required), content: { 'application/json': { schema: schema(body.schema, used) } } } } : {}),
        responses,
      };
    }
  }
  const missing = operations.filter((o) => !found.has(o));
  if (missing.length) throw new Error(`operations not in the upstream spec: ${missing.join(', ')}`);
  // Definitions reach other definitions: close over them.
  const schemas: Record<string, unknown> = {};
  for (let grew = true; grew;) {
    grew = false;
    for (const name of [...used].sort()) {
      if (schemas[name] !== undefined) continue;
      const def = doc.definitions[name];
      if (!def) throw new Error(`unresolved definition ${name}`);
      schemas[name] = schema(def, used);
      grew = true;
    }
  }
  return {
    openapi: '3.0.3',
    info: { title: 'Harbor API (the operations Satellite for Harbor calls)', version: '2.0', description: 'Derived from Harbor\'s swagger.yaml v2.15.2 by harbor-api/tools/harbor-spec.ts. Do not edit.' },
    servers: [{ url: doc.basePath ?? '/api/v2.0' }],
    paths,
    components: { schemas: Object.fromEntries(Object.entries(schemas).sort(([a], [b]) => (a < b ? -1 : 1))) },
  };
}
