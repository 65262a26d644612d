import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { loadUpstream, type Swagger2 } from '../../openapi/tools/harbor-spec.js';

// A stand-in for Harbor's REST API (Harbor itself cannot run here). Every request is checked
// against Harbor's published swagger.yaml: the operation must exist, required parameters
// must be present, parameter and body types must match, and bodies may carry no field the
// spec does not define. A request that breaks the spec gets 400 and is recorded as a
// violation; the tests assert there are none. Behaviour is kept in memory.

type Json = Record<string, unknown>;

export interface HarborDouble {
  url: string;
  violations: string[];
  calls: string[];
  registries: Json[];
  policies: Json[];
  executions: Json[];
  projects: Json[];
  robots: Json[];
  artifacts: Map<string, Json>;
  close(): Promise<void>;
}

interface Operation {
  method: string;
  template: string;
  pattern: RegExp;
  names: string[];
  op: Json;
}

function operations(doc: Swagger2): Operation[] {
  const out: Operation[] = [];
  for (const [template, item] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(item)) {
      if (method === 'parameters') continue;
      const names: string[] = [];
      const pattern = new RegExp(`^${template.replace(/\{([^}]+)\}/g, (_, n: string) => { names.push(n); return '([^/]+)'; })}$`);
      out.push({ method: method.toUpperCase(), template, pattern, names, op: op as Json });
    }
  }
  return out;
}

function deref(doc: Swagger2, value: Json): Json {
  const ref = value.$ref;
  if (typeof ref !== 'string') return value;
  const [, section, name] = ref.split('/');
  return ((doc as unknown as Record<string, Record<string, Json>>)[section!]![name!]) as Json;
}

/** Checks a JSON value against a Swagger 2 schema; returns the problems found. */
function validate(doc: Swagger2, schema: Json | undefined, value: unknown, at: string): string[] {
  if (!schema) return [];
  const s = deref(doc, schema);
  if (value === null || value === undefined) return [];
  const type = s.type as string | undefined;
  const kind = Array.isArray(value) ? 'array' : typeof value;
  if (type === 'integer' && !(typeof value === 'number' && Number.isInteger(value))) return [`${at}: expected integer, got ${JSON.stringify(value)}`];
  if (type === 'number' && typeof value !== 'number') return [`${at}: expected number`];
  if (type === 'string' && typeof value !== 'string') return [`${at}: expected string, got ${kind}`];
  if (type === 'boolean' && typeof value !== 'boolean') return [`${at}: expected boolean, got ${kind}`];
  if (type === 'array') {
    if (!Array.isArray(value)) return [`${at}: expected array`];
    return value.flatMap((v, i) => validate(doc, s.items as Json, v, `${at}[${i}]`));
  }
  if (type === 'object' || s.properties) {
    if (kind !== 'object') return [`${at}: expected object`];
    const props = (s.properties ?? {}) as Record<string, Json>;
    const extra = s.additionalProperties as Json | boolean | undefined;
    return Object.entries(value as Json).flatMap(([k, v]) => {
      if (props[k]) return validate(doc, props[k], v, `${at}.${k}`);
      if (extra) return typeof extra === 'object' ? validate(doc, extra, v, `${at}.${k}`) : [];
      return [`${at}.${k}: not a field of the spec`];
    });
  }
  return [];
}

function checkParameter(p: Json, raw: string | undefined, where: string): string[] {
  if (raw === undefined) return p.required ? [`missing required ${p.in} parameter ${p.name} (${where})`] : [];
  if (p.type === 'integer' && !/^-?\d+$/.test(raw)) return [`${p.in} parameter ${p.name} must be an integer, got ${raw}`];
  if (p.type === 'boolean' && !/^(true|false)$/.test(raw)) return [`${p.in} parameter ${p.name} must be a boolean`];
  return [];
}

export async function startHarborDouble(upstreamPath: string, admin: { username: string; password: string }): Promise<HarborDouble> {
  const doc = loadUpstream(upstreamPath);
  const ops = operations(doc);
  const expectedAuth = `Basic ${Buffer.from(`${admin.username}:${admin.password}`).toString('base64')}`;
  const d: HarborDouble = {
    url: '', violations: [], calls: [], registries: [], policies: [], executions: [], projects: [], robots: [], artifacts: new Map(),
    close: async () => undefined,
  };
  let nextId = 1;

  const handle = (req: IncomingMessage, res: ServerResponse, body: string) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const send = (status: number, payload?: unknown, headers: Record<string, string> = {}) => {
      res.writeHead(status, { 'Content-Type': 'application/json', ...headers });
      res.end(payload === undefined || req.method === 'HEAD' ? undefined : JSON.stringify(payload));
    };
    const violation = (message: string) => {
      d.violations.push(`${req.method} ${url.pathname}: ${message}`);
      send(400, { errors: [{ code: 'BAD_REQUEST', message }] });
    };
    if (!url.pathname.startsWith('/api/v2.0/')) return violation('not under the API base path /api/v2.0');
    const path = url.pathname.slice('/api/v2.0'.length);
    const match = ops.map((o) => ({ o, m: o.method === req.method ? o.pattern.exec(path) : null })).find((x) => x.m);
    if (!match) return violation('no such operation in Harbor\'s spec');
    const { o, m } = match;
    const params: Record<string, string> = {};
    o.names.forEach((n, i) => (params[n] = decodeURIComponent(m![i + 1]!)));
    d.calls.push(o.op.operationId as string);
    if (req.headers.authorization !== expectedAuth) return send(401, { errors: [{ code: 'UNAUTHORIZED', message: 'unauthorized' }] });

    const declared = ((o.op.parameters as Json[] | undefined) ?? []).map((p) => deref(doc, p));
    const problems: string[] = [];
    for (const p of declared) {
      if (p.in === 'path') problems.push(...checkParameter(p, params[p.name as string], 'path'));
      if (p.in === 'query') problems.push(...checkParameter(p, url.searchParams.get(p.name as string) ?? undefined, 'query'));
      if (p.in === 'header') problems.push(...checkParameter(p, req.headers[(p.name as string).toLowerCase()] as string | undefined, 'header'));
      if (p.in === 'body') {
        if (!body) {
          if (p.required) problems.push('missing required body');
        } else {
          try {
            problems.push(...validate(doc, p.schema as Json, JSON.parse(body), 'body'));
          } catch {
            problems.push('body is not JSON');
          }
        }
      }
    }
    for (const key of url.searchParams.keys()) {
      if (!declared.some((p) => p.in === 'query' && p.name === key)) problems.push(`unknown query parameter ${key}`);
    }
    if (problems.length) return violation(problems.join('; '));
    const json = (body ? JSON.parse(body) : {}) as Json;
    const byName = (list: Json[], q: string | null) => {
      const name = /^name=(.*)$/.exec(q ?? '')?.[1];
      return name === undefined ? list : list.filter((x) => x.name === name);
    };

    switch (o.op.operationId) {
      case 'getPing':
        return send(200, 'Pong');
      case 'listRegistries':
        return send(200, byName(d.registries, url.searchParams.get('q')));
      case 'createRegistry': {
        if (d.registries.some((r) => r.name === json.name)) return send(409, { errors: [{ code: 'CONFLICT', message: 'name exists' }] });
        const id = nextId++;
        d.registries.push({ ...json, id, credential: { ...(json.credential as Json), access_secret: '*****' } });
        return send(201, undefined, { Location: `/api/v2.0/registries/${id}` });
      }
      case 'listReplicationPolicies':
        return send(200, byName(d.policies, url.searchParams.get('q')));
      case 'createReplicationPolicy': {
        if (d.policies.some((p) => p.name === json.name)) return send(409, { errors: [{ code: 'CONFLICT', message: 'name exists' }] });
        const id = nextId++;
        const reg = d.registries.find((r) => r.id === (json.dest_registry as Json | undefined)?.id);
        if (!reg) return send(400, { errors: [{ code: 'BAD_REQUEST', message: 'destination registry not found' }] });
        d.policies.push({ ...json, id, dest_registry: reg });
        return send(201, undefined, { Location: `/api/v2.0/replication/policies/${id}` });
      }
      case 'updateReplicationPolicy': {
        const i = d.policies.findIndex((p) => p.id === Number(params.id));
        if (i < 0) return send(404, { errors: [{ code: 'NOT_FOUND', message: 'no policy' }] });
        d.policies[i] = { ...json, id: Number(params.id) };
        return send(200);
      }
      case 'startReplication': {
        const id = nextId++;
        d.executions.push({ id, policy_id: json.policy_id, status: 'InProgress', trigger: 'manual', start_time: new Date().toISOString() });
        return send(201, undefined, { Location: `/api/v2.0/replication/executions/${id}` });
      }
      case 'listReplicationExecutions': {
        const policy = Number(url.searchParams.get('policy_id'));
        return send(200, d.executions.filter((e) => !policy || e.policy_id === policy).reverse());
      }
      case 'headProject':
        return send(d.projects.some((p) => p.project_name === url.searchParams.get('project_name')) ? 200 : 404);
      case 'createProject':
        if (d.projects.some((p) => p.project_name === json.project_name)) return send(409, { errors: [{ code: 'CONFLICT', message: 'exists' }] });
        d.projects.push(json);
        return send(201, undefined, { Location: `/api/v2.0/projects/${nextId++}` });
      case 'CreateRobot': {
        const id = nextId++;
        const ns = ((json.permissions as Json[])[0]?.namespace as string) ?? '';
        const robot = { id, name: `robot$${ns}+${json.name}`, secret: `secret-${id}`, creation_time: new Date().toISOString() };
        d.robots.push({ ...json, id });
        return send(201, robot, { Location: `/api/v2.0/robots/${id}` });
      }
      case 'getArtifact': {
        // Harbor takes a repository name with its slashes encoded twice (a%252Fb).
        const a = d.artifacts.get(`${params.project_name}/${decodeURIComponent(params.repository_name!)}@${params.reference}`);
        return a ? send(200, a) : send(404, { errors: [{ code: 'NOT_FOUND', message: 'artifact not found' }] });
      }
      default:
        return violation(`the double does not implement ${o.op.operationId as string}`);
    }
  };

  const server: Server = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => (body += c));
    req.on('end', () => handle(req, res, body));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  d.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  d.close = async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  };
  return d;
}
