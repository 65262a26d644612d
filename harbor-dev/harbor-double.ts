import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { loadUpstream } from '../harbor-api/tools/harbor-spec.js';
import { checkRequest, operations, type Json } from './harbor-spec-check.js';

// A stateful stand-in for Harbor's REST API (Harbor itself cannot run here), for tests and
// for `make harbor-double`. Every /api/v2.0 request is checked against Harbor's published
// swagger.yaml (harbor-spec-check.ts); a request that breaks it gets 400 and is recorded as a
// violation, which the tests assert there are none of. What is created is listed afterwards,
// with Harbor's status codes, error envelope {"errors":[{code,message}]}, pagination
// (page, page_size ≤ 100, X-Total-Count, Link) and the checks Harbor's handlers make (robot
// names and permissions, webhook targets and event types, a policy's registry).
//
// Robot permissions are enforced by a token service at /service/token, as Harbor's registry
// auth does: a token asked for `repository:<project>/<repo>:pull` lists the actions the
// robot may take. `mayPull` answers the same question directly.

export interface DoubleArtifact {
  id: number;
  project: string;
  /** Full repository name, "library/nginx". */
  repository: string;
  digest: string;
  type: string;
  media_type: string;
  manifest_media_type: string;
  tags: string[];
  labels: string[];
  extra_attrs?: Json;
  /** For an index: its children. */
  references?: { child_digest: string; platform?: Json }[];
  size: number;
  push_time: string;
}

export interface DoubleRobot {
  id: number;
  /** As created ("satellite-store-042"); Harbor shows it with its prefix: robot$satellite-store-042. */
  name: string;
  secret: string;
  level: string;
  description?: string;
  duration: number;
  disable: boolean;
  permissions: { kind: string; namespace: string; access: { resource: string; action: string; effect?: string }[] }[];
  creation_time: string;
}

export interface HarborDouble {
  url: string;
  violations: string[];
  /** operationIds, in order. */
  calls: string[];
  registries: Json[];
  /** The secret each registry endpoint was last given (Harbor shows it only as "*****"). */
  registrySecrets: Map<number, string>;
  policies: Json[];
  executions: Json[];
  projects: Json[];
  robots: DoubleRobot[];
  webhooks: Json[];
  artifacts: DoubleArtifact[];
  /** Seeds an artifact (and its project) as if it had been pushed to Harbor. */
  addArtifact(a: Partial<DoubleArtifact> & { repository: string; digest: string }): DoubleArtifact;
  /** Deletes an artifact as Harbor's UI would, and notifies the project's webhooks (DELETE_ARTIFACT). */
  removeArtifact(repository: string, digest: string): Promise<void>;
  /** Notifies the webhooks of `project` of a replication task's end (REPLICATION), as Harbor's job does. */
  notifyReplication(executionId: number, project: string, status?: string, options?: ReplicationNotice): Promise<void>;
  /** The REPLICATION payload Harbor sends at the end of a task of `executionId` (see replicationPayload). */
  replicationPayload(executionId: number, project: string, status?: string, options?: ReplicationNotice): Json;
  /** Harbor's full robot name: robot$<name>. */
  robotFullName(name: string): string;
  /** Whether the robot (full name) may pull from `project`, by its permissions. */
  mayPull(robotFullName: string, project: string): boolean;
  /** What the last webhook deliveries answered, in order. */
  deliveries: { address: string; event: string; status: number }[];
  /** Makes the next `times` calls of an operation fail with Harbor's error answer of `status`. */
  failNext(operationId: string, status: number, times?: number): void;
  /**
   * A slow Harbor: every later call of an operation is held `ms` before it is handled (and
   * so before it reads or changes anything), so concurrent callers overlap. 0 lifts it.
   */
  delay(operationId: string, ms: number): void;
  close(): Promise<void>;
}

/** What a replication task copied, and which Harbor sends the notice. */
export interface ReplicationNotice {
  /** The source repository the task copied. @defaultValue `<project>/app` */
  repository?: string;
  /** Its tags (or digests) the task copied. @defaultValue ['latest'] */
  references?: string[];
  /** Harbor before 2.13 sent neither execution_id nor task_id (goharbor/harbor#21614 added them). */
  withoutIds?: boolean;
}

const ROBOT_PREFIX = 'robot$';
const NAME = /^[a-z0-9]+(?:[._-][a-z0-9]+)*$/;
/** Harbor's project-scope permissions a robot may hold (src/common/rbac/const.go). */
const PROJECT_ACCESS = new Set([
  'log:list', 'project:read', 'project:delete', 'project:update', 'metadata:read', 'metadata:create', 'metadata:delete', 'metadata:list',
  'metadata:update', 'repository:read', 'repository:update', 'repository:delete', 'repository:list', 'repository:pull', 'repository:push',
  'artifact:read', 'artifact:create', 'artifact:list', 'artifact:delete', 'scan:create', 'scan:read', 'scan:stop', 'sbom:create', 'sbom:stop',
  'sbom:read', 'tag:create', 'tag:list', 'tag:delete', 'accessory:list', 'artifact-addition:read', 'artifact-label:create',
  'artifact-label:delete', 'scanner:create', 'scanner:read', 'preheat-policy:read', 'preheat-policy:create', 'preheat-policy:delete',
  'preheat-policy:list', 'preheat-policy:update', 'immutable-tag:create', 'immutable-tag:delete', 'immutable-tag:list',
  'immutable-tag:update', 'notification-policy:read', 'notification-policy:create', 'notification-policy:delete',
  'notification-policy:list', 'notification-policy:update', 'tag-retention:read', 'tag-retention:create', 'tag-retention:delete',
  'tag-retention:list', 'tag-retention:update', 'label:read', 'label:create', 'label:delete', 'label:list', 'label:update', 'quota:read',
]);
const EVENT_TYPES = new Set(['CREATE_PROJECT', 'DELETE_PROJECT', 'PUSH_ARTIFACT', 'PULL_ARTIFACT', 'DELETE_ARTIFACT', 'DELETE_REPOSITORY', 'CREATE_TAG',
  'DELETE_TAG', 'SCANNING_FAILED', 'SCANNING_STOPPED', 'SCANNING_COMPLETED', 'QUOTA_WARNING', 'QUOTA_EXCEED', 'REPLICATION', 'TAG_RETENTION']);
const FILTER_TYPES = new Set(['name', 'tag', 'label', 'resource']);
const TRIGGER_TYPES = new Set(['manual', 'event_based', 'scheduled']);

class HarborError extends Error {
  constructor(readonly status: number, readonly code: string, message: string) {
    super(message);
  }
}
const notFound = (what: string) => new HarborError(404, 'NOT_FOUND', `${what} not found`);
const badRequest = (message: string) => new HarborError(400, 'BAD_REQUEST', message);

/** Harbor's q: "k=v" exact, "k=~v" fuzzy, joined by commas. */
function parseQuery(q: string | null): (item: Json) => boolean {
  if (!q) return () => true;
  const terms = q.split(',').map((t) => {
    const m = /^([^=]+)=(~?)(.*)$/.exec(t);
    if (!m) throw badRequest(`invalid query ${t}`);
    return { key: m[1]!, fuzzy: m[2] === '~', value: m[3]! };
  });
  return (item) => terms.every((t) => {
    const v = item[t.key];
    if (v === undefined) return true; // keys the double does not model do not filter
    return t.fuzzy ? String(v).includes(t.value) : String(v) === t.value;
  });
}

export interface DoubleOptions {
  upstream: string;
  admin: { username: string; password: string };
  port?: number;
  host?: string;
}

export async function startHarborDouble(upstreamPath: string, admin: { username: string; password: string }, listen: { port?: number; host?: string } = {}): Promise<HarborDouble> {
  const doc = loadUpstream(upstreamPath);
  const ops = operations(doc);
  const expectedAuth = `Basic ${Buffer.from(`${admin.username}:${admin.password}`).toString('base64')}`;
  let nextId = 1;
  const now = () => new Date().toISOString();
  const faults = new Map<string, { status: number; times: number }>();
  const delays = new Map<string, number>();
  const d: HarborDouble = {
    url: '', violations: [], calls: [], registries: [], registrySecrets: new Map(), policies: [], executions: [], projects: [], robots: [], webhooks: [], artifacts: [], deliveries: [],
    addArtifact(a) {
      const project = a.repository.split('/')[0]!;
      ensureProject(project);
      const existing = d.artifacts.find((x) => x.repository === a.repository && x.digest === a.digest);
      if (existing) Object.assign(existing, a);
      const artifact: DoubleArtifact = existing ?? {
        id: nextId++, project, type: 'IMAGE', media_type: 'application/vnd.oci.image.config.v1+json',
        manifest_media_type: 'application/vnd.oci.image.manifest.v1+json', tags: [], labels: [], size: 1024, push_time: now(), ...a,
      };
      if (!existing) d.artifacts.push(artifact);
      return artifact;
    },
    async removeArtifact(repository, digest) {
      const i = d.artifacts.findIndex((a) => a.repository === repository && a.digest === digest);
      if (i < 0) throw new Error(`no artifact ${repository}@${digest}`);
      const [a] = d.artifacts.splice(i, 1);
      await deliver(a!.project, 'DELETE_ARTIFACT', {
        type: 'DELETE_ARTIFACT', occur_at: Math.floor(Date.now() / 1000), operator: admin.username,
        event_data: {
          resources: [{ digest, tag: a!.tags[0] ?? digest, resource_url: `harbor.example.com/${repository}:${a!.tags[0] ?? digest}` }],
          repository: { name: repository.slice(a!.project.length + 1), namespace: a!.project, repo_full_name: repository, repo_type: 'private' },
        },
      });
    },
    async notifyReplication(executionId, project, status = 'Success', options = {}) {
      await deliver(project, 'REPLICATION', d.replicationPayload(executionId, project, status, options));
    },
    // Harbor's payload, field for field, as goharbor/harbor v2.15.2 builds it
    // (src/controller/event/handler/webhook/artifact/replication.go, constructReplicationPayload;
    // fields in src/controller/event/model/event.go, Replication, all "omitempty" but the
    // resources' registry_type and endpoint). A push rule (local Harbor → our endpoint) is
    // described by: src_resource = the local Harbor, with the namespace of the task's
    // DESTINATION resource (the group, "edge-eu/library/nginx" → "edge-eu"); dest_resource =
    // the remote registry, with the namespace of the task's SOURCE resource (the project). Task
    // resources read "library/nginx [1 item(s) in total]" (flow/stage.go getResourceName) and
    // are split at the first "/"; execution_id and task_id exist since Harbor 2.13.
    replicationPayload(executionId, project, status = 'Success', options = {}) {
      const execution = d.executions.find((e) => e.id === executionId);
      const policy = d.policies.find((p) => p.id === execution?.policy_id);
      const registry = d.registries.find((r) => r.id === (policy?.dest_registry as Json | undefined)?.id);
      const repository = options.repository ?? `${project}/app`;
      const references = options.references ?? ['latest'];
      const source = `${repository} [${references.length} item(s) in total]`;
      const destination = `${policy?.dest_namespace ?? ''}/${source}`;
      const split = (resource: string) => {
        const i = resource.indexOf('/');
        return i < 0 ? ['', resource] : [resource.slice(0, i), resource.slice(i + 1)];
      };
      const [srcNamespace, srcNameAndTag] = split(source);
      const [destNamespace] = split(destination);
      const omitEmpty = (o: Json) => Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined && v !== '' && v !== false && v !== 0));
      const artifact = [{ type: 'artifact', status, name_tag: srcNameAndTag, references }];
      const start = Math.floor(new Date(String(execution?.start_time ?? now())).getTime() / 1000);
      return {
        type: 'REPLICATION', occur_at: Math.floor(Date.now() / 1000), operator: String(execution?.operator ?? admin.username),
        event_data: {
          replication: omitEmpty({
            harbor_hostname: 'harbor.example.com', job_status: status, description: policy?.description, artifact_type: 'artifact',
            authentication_type: (registry?.credential as Json | undefined)?.type, override_mode: policy?.override, trigger_type: execution?.trigger,
            policy_creator: admin.username, execution_timestamp: start,
            src_resource: { registry_type: 'harbor', endpoint: 'https://harbor.example.com', ...omitEmpty({ namespace: destNamespace }) },
            dest_resource: { ...omitEmpty({ registry_name: registry?.name }), registry_type: registry?.type ?? '', endpoint: registry?.url ?? '', ...omitEmpty({ namespace: srcNamespace }) },
            successful_artifact: status === 'Success' ? artifact : undefined,
            failed_artifact: status === 'Error' ? artifact : undefined,
            execution_id: options.withoutIds ? undefined : executionId,
            task_id: options.withoutIds ? undefined : nextId++,
          }),
        },
      };
    },
    robotFullName: (name) => `${ROBOT_PREFIX}${name}`,
    failNext(operationId, status, times = 1) {
      faults.set(operationId, { status, times });
    },
    delay(operationId, ms) {
      if (ms > 0) delays.set(operationId, ms);
      else delays.delete(operationId);
    },
    mayPull(robotFullName, project) {
      return actionsFor(d.robots.find((r) => `${ROBOT_PREFIX}${r.name}` === robotFullName), project).includes('pull');
    },
    close: async () => undefined,
  };

  function ensureProject(name: string): Json {
    let p = d.projects.find((x) => x.name === name);
    if (!p) {
      p = { project_id: nextId++, name, project_name: name, metadata: { public: 'false' }, creation_time: now() };
      d.projects.push(p);
    }
    return p;
  }

  /** The registry actions a robot holds on a project, as Harbor's token service grants them. */
  function actionsFor(robot: DoubleRobot | undefined, project: string): string[] {
    if (!robot || robot.disable) return [];
    const access = robot.permissions
      .filter((p) => p.kind === 'project' && (p.namespace === project || p.namespace === '*'))
      .flatMap((p) => p.access.filter((a) => a.resource === 'repository' && a.effect !== 'deny').map((a) => a.action));
    return ['pull', 'push'].filter((a) => access.includes(a));
  }

  async function deliver(project: string, event: string, payload: Json): Promise<void> {
    const p = d.projects.find((x) => x.name === project);
    for (const w of d.webhooks.filter((x) => x.project_id === p?.project_id && x.enabled !== false && (x.event_types as string[]).includes(event))) {
      for (const t of w.targets as Json[]) {
        const res = await fetch(t.address as string, {
          method: 'POST',
          headers: { 'Content-Type': 'application/json', ...(t.auth_header ? { Authorization: t.auth_header as string } : {}) },
          body: JSON.stringify(payload),
        }).catch(() => undefined);
        d.deliveries.push({ address: t.address as string, event, status: res?.status ?? 0 });
      }
    }
  }

  function page<T>(url: URL, list: T[]): { items: T[]; headers: Record<string, string> } {
    const pageNo = Number(url.searchParams.get('page') ?? 1);
    const size = Number(url.searchParams.get('page_size') ?? 10);
    const items = list.slice((pageNo - 1) * size, pageNo * size);
    const links: string[] = [];
    const link = (n: number) => {
      const q = new URLSearchParams(url.searchParams);
      q.set('page', String(n));
      q.set('page_size', String(size));
      return `<${url.pathname}?${decodeURIComponent(q.toString())}>`;
    };
    if (pageNo > 1 && (pageNo - 1) * size < list.length) links.push(`${link(pageNo - 1)}; rel="prev"`);
    if (pageNo * size < list.length) links.push(`${link(pageNo + 1)}; rel="next"`);
    return { items, headers: { 'X-Total-Count': String(list.length), ...(links.length ? { Link: links.join(' , ') } : {}) } };
  }

  const robotView = (r: DoubleRobot) => ({
    id: r.id, name: `${ROBOT_PREFIX}${r.name}`, description: r.description, level: r.level, duration: r.duration, disable: r.disable,
    editable: true, expires_at: -1, permissions: r.permissions, creation_time: r.creation_time, update_time: r.creation_time,
  });
  const artifactView = (a: DoubleArtifact) => ({
    id: a.id, type: a.type, media_type: a.media_type, manifest_media_type: a.manifest_media_type, digest: a.digest, size: a.size,
    push_time: a.push_time, repository_name: a.repository, project_id: ensureProject(a.project).project_id,
    tags: a.tags.map((name) => ({ name, push_time: a.push_time, immutable: false })),
    labels: a.labels.map((name, i) => ({ id: i + 1, name, scope: 'g' })),
    extra_attrs: a.extra_attrs ?? {}, references: a.references?.map((r) => ({ child_digest: r.child_digest, platform: r.platform })) ?? [],
  });

  function validateRobot(body: Json): void {
    if (!NAME.test(String(body.name ?? ''))) throw badRequest('robot name is not in lower case or contains illegal characters');
    const duration = Number(body.duration ?? NaN);
    if (!(duration === -1 || (Number.isInteger(duration) && duration > 0))) throw badRequest(`bad request error duration input: ${body.duration}, duration must be either -1(Never) or a positive integer`);
    if (body.level !== 'system' && body.level !== 'project') throw badRequest(`bad request error level input: ${body.level}`);
    const perms = (body.permissions as DoubleRobot['permissions'] | undefined) ?? [];
    if (perms.length === 0) throw badRequest('bad request empty permission');
    if (body.level === 'project' && perms.length > 1) throw badRequest('bad request permission');
    for (const p of perms) {
      if (!p.access?.length) throw badRequest('bad request empty access');
      if (p.kind !== 'project' && p.kind !== 'system') throw badRequest(`bad request permission level: ${p.kind}`);
      if (p.kind === 'project') {
        for (const a of p.access) if (!PROJECT_ACCESS.has(`${a.resource}:${a.action}`)) throw badRequest(`bad request permission: ${a.resource}:${a.action}`);
        if (p.namespace !== '*' && !d.projects.some((x) => x.name === p.namespace)) throw notFound(`project ${p.namespace}`);
      }
    }
  }

  function validateWebhook(body: Json): void {
    const events = (body.event_types as string[] | undefined) ?? [];
    if (events.length === 0) throw badRequest('empty event type');
    for (const e of events) if (!EVENT_TYPES.has(e)) throw badRequest(`unsupported event type ${e}`);
    const targets = (body.targets as Json[] | undefined) ?? [];
    if (targets.length === 0) throw badRequest(`empty notification target with policy ${body.name}`);
    for (const t of targets) {
      if (t.type !== 'http' && t.type !== 'slack') throw badRequest(`unsupported target type ${t.type} with policy ${body.name}`);
      try {
        new URL(String(t.address));
      } catch {
        throw badRequest(`invalid address ${t.address}`);
      }
    }
  }

  function validatePolicy(body: Json): Json {
    if (!body.name) throw badRequest('name is required');
    for (const f of (body.filters as Json[] | undefined) ?? []) {
      if (!FILTER_TYPES.has(String(f.type))) throw badRequest(`invalid filter type ${f.type}`);
      if (f.type === 'label' ? !Array.isArray(f.value) : typeof f.value !== 'string') throw badRequest(`invalid filter value for ${f.type}`);
    }
    const trigger = body.trigger as Json | undefined;
    if (trigger && !TRIGGER_TYPES.has(String(trigger.type))) throw badRequest(`invalid trigger type ${trigger.type}`);
    const registry = d.registries.find((r) => r.id === (body.dest_registry as Json | undefined)?.id);
    if (!registry) throw badRequest('destination registry not found');
    return registry;
  }

  const projectOf = (nameOrId: string, byName: boolean) =>
    d.projects.find((p) => (byName || !/^\d+$/.test(nameOrId) ? p.name === nameOrId : p.project_id === Number(nameOrId)));

  /** The operation's answer: [status, body?, headers?]. */
  function handleOperation(id: string, url: URL, params: Record<string, string>, json: Json, headers: IncomingMessage['headers']): [number, unknown?, Record<string, string>?] {
    const q = parseQuery(url.searchParams.get('q'));
    const created = (path: string, newId: number): [number, undefined, Record<string, string>] => [201, undefined, { Location: `/api/v2.0${path}/${newId}` }];
    switch (id) {
      case 'getPing':
        return [200, 'Pong'];
      case 'listRegistries': {
        const p = page(url, d.registries.filter(q));
        return [200, p.items, p.headers];
      }
      case 'createRegistry': {
        if (d.registries.some((r) => r.name === json.name)) throw new HarborError(409, 'CONFLICT', `registry ${json.name} already exists`);
        const newId = nextId++;
        d.registrySecrets.set(newId, String((json.credential as Json | undefined)?.access_secret ?? ''));
        d.registries.push({ ...json, id: newId, status: 'healthy', credential: { ...(json.credential as Json), access_secret: '*****' }, creation_time: now() });
        return created('/registries', newId);
      }
      case 'updateRegistry': {
        // Harbor's RegistryUpdate: flat fields, each optional; the secret is kept, never shown.
        const r = d.registries.find((x) => x.id === Number(params.id));
        if (!r) throw notFound(`registry ${params.id}`);
        if (json.name !== undefined && json.name !== r.name && d.registries.some((x) => x.name === json.name)) throw new HarborError(409, 'CONFLICT', `registry ${json.name} already exists`);
        for (const k of ['name', 'description', 'url', 'insecure'] as const) if (json[k] !== undefined) r[k] = json[k];
        const credential = { ...(r.credential as Json) };
        if (json.credential_type !== undefined) credential.type = json.credential_type;
        if (json.access_key !== undefined) credential.access_key = json.access_key;
        if (json.access_secret !== undefined) d.registrySecrets.set(Number(params.id), String(json.access_secret));
        r.credential = { ...credential, access_secret: '*****' };
        r.update_time = now();
        return [200];
      }
      case 'listReplicationPolicies': {
        const p = page(url, d.policies.filter(q));
        return [200, p.items, p.headers];
      }
      case 'createReplicationPolicy': {
        const registry = validatePolicy(json);
        if (d.policies.some((p) => p.name === json.name)) throw new HarborError(409, 'CONFLICT', `policy ${json.name} already exists`);
        const newId = nextId++;
        d.policies.push({ ...json, id: newId, dest_registry: registry, src_registry: { id: 0, name: 'Local', type: 'harbor' }, creation_time: now(), update_time: now() });
        return created('/replication/policies', newId);
      }
      case 'getReplicationPolicy': {
        const p = d.policies.find((x) => x.id === Number(params.id));
        if (!p) throw notFound(`policy ${params.id}`);
        return [200, p];
      }
      case 'updateReplicationPolicy': {
        const i = d.policies.findIndex((p) => p.id === Number(params.id));
        if (i < 0) throw notFound(`policy ${params.id}`);
        const registry = validatePolicy(json);
        if (d.policies.some((p) => p.name === json.name && p.id !== Number(params.id))) throw new HarborError(409, 'CONFLICT', `policy ${json.name} already exists`);
        d.policies[i] = { ...json, id: Number(params.id), dest_registry: registry, src_registry: d.policies[i]!.src_registry, creation_time: d.policies[i]!.creation_time, update_time: now() };
        return [200];
      }
      case 'deleteReplicationPolicy': {
        const i = d.policies.findIndex((p) => p.id === Number(params.id));
        if (i < 0) throw notFound(`policy ${params.id}`);
        // As Harbor's handler: a rule with a running execution is not deleted.
        if (d.executions.some((e) => e.policy_id === Number(params.id) && e.status === 'InProgress')) {
          throw new HarborError(412, 'PRECONDITION', `the policy ${params.id} has running executions, can not be deleted`);
        }
        d.policies.splice(i, 1);
        return [200];
      }
      case 'startReplication': {
        if (!d.policies.some((p) => p.id === json.policy_id)) throw notFound(`policy ${json.policy_id}`);
        const newId = nextId++;
        d.executions.push({ id: newId, policy_id: json.policy_id, status: 'InProgress', trigger: 'manual', start_time: now(), total: 0, failed: 0, succeed: 0, in_progress: 0, stopped: 0 });
        return created('/replication/executions', newId);
      }
      case 'listReplicationExecutions': {
        const policy = Number(url.searchParams.get('policy_id'));
        const list = d.executions.filter((e) => !policy || e.policy_id === policy);
        const sorted = url.searchParams.get('sort') === '-start_time' ? [...list].reverse() : list;
        const p = page(url, sorted);
        return [200, p.items, p.headers];
      }
      case 'getReplicationExecution': {
        const e = d.executions.find((x) => x.id === Number(params.id));
        if (!e) throw notFound(`execution ${params.id}`);
        return [200, e];
      }
      case 'headProject':
        return [d.projects.some((p) => p.name === url.searchParams.get('project_name')) ? 200 : 404];
      case 'createProject': {
        if (d.projects.some((p) => p.name === json.project_name)) throw new HarborError(409, 'CONFLICT', `The project named ${json.project_name} already exists`);
        const p = ensureProject(String(json.project_name));
        Object.assign(p, { metadata: json.metadata ?? { public: 'false' } });
        return created('/projects', p.project_id as number);
      }
      case 'listProjects': {
        const p = page(url, d.projects.filter((x) => !url.searchParams.get('name') || x.name === url.searchParams.get('name')).filter(q));
        return [200, p.items, p.headers];
      }
      case 'listAllRepositories': {
        const names = [...new Set(d.artifacts.map((a) => a.repository))].sort();
        const repos = names.map((name) => {
          const list = d.artifacts.filter((a) => a.repository === name);
          return { id: list[0]!.id, name, project_id: ensureProject(list[0]!.project).project_id, artifact_count: list.length, pull_count: 0 };
        });
        const p = page(url, repos.filter(q));
        return [200, p.items, p.headers];
      }
      case 'listArtifacts': {
        if (!d.projects.some((p) => p.name === params.project_name)) throw notFound(`project ${params.project_name}`);
        const repository = `${params.project_name}/${decodeURIComponent(params.repository_name!)}`;
        const list = d.artifacts.filter((a) => a.repository === repository).map(artifactView)
          .map((a) => ({ ...a, ...(url.searchParams.get('with_label') === 'true' ? {} : { labels: undefined }), ...(url.searchParams.get('with_tag') === 'false' ? { tags: undefined } : {}) }));
        const p = page(url, list);
        return [200, p.items, p.headers];
      }
      case 'getArtifact': {
        // Harbor takes a repository name with its slashes encoded twice (a%252Fb).
        const repository = `${params.project_name}/${decodeURIComponent(params.repository_name!)}`;
        const ref = params.reference!;
        const a = d.artifacts.find((x) => x.repository === repository && (x.digest === ref || x.tags.includes(ref)));
        if (!a) throw notFound(`artifact ${repository}@${ref}`);
        return [200, artifactView(a)];
      }
      case 'CreateRobot': {
        validateRobot(json);
        const perms = json.permissions as DoubleRobot['permissions'];
        const name = json.level === 'project' ? `${perms[0]!.namespace}+${json.name}` : String(json.name);
        if (d.robots.some((r) => r.name === name)) throw new HarborError(409, 'CONFLICT', `robot account ${ROBOT_PREFIX}${name} already exists`);
        const robot: DoubleRobot = {
          id: nextId++, name, secret: randomBytes(16).toString('hex').replace(/^(.)/, 'A$1') + 'z9', level: String(json.level),
          description: json.description as string | undefined, duration: Number(json.duration), disable: Boolean(json.disable), permissions: perms, creation_time: now(),
        };
        d.robots.push(robot);
        return [201, { id: robot.id, name: `${ROBOT_PREFIX}${name}`, secret: robot.secret, creation_time: robot.creation_time, expires_at: -1 }, { Location: `/api/v2.0/robots/${robot.id}` }];
      }
      case 'ListRobot': {
        const list = d.robots.filter((r) => r.level === 'system').filter((r) => q({ ...r, name: r.name })).map(robotView);
        const p = page(url, list);
        return [200, p.items, p.headers];
      }
      case 'GetRobotByID': {
        const r = d.robots.find((x) => x.id === Number(params.robot_id));
        if (!r) throw notFound(`robot ${params.robot_id}`);
        return [200, robotView(r)];
      }
      case 'UpdateRobot': {
        const r = d.robots.find((x) => x.id === Number(params.robot_id));
        if (!r) throw notFound(`robot ${params.robot_id}`);
        validateRobot({ ...json, name: r.name, duration: json.duration ?? r.duration });
        if (json.level !== r.level || json.name !== `${ROBOT_PREFIX}${r.name}`) throw badRequest('cannot update the level or name of robot');
        Object.assign(r, { description: json.description, disable: Boolean(json.disable), permissions: json.permissions });
        return [200];
      }
      case 'RefreshSec': {
        const r = d.robots.find((x) => x.id === Number(params.robot_id));
        if (!r) throw notFound(`robot ${params.robot_id}`);
        if (typeof json.secret === 'string' && json.secret !== '') {
          if (!/^(?=.*[a-z])(?=.*[A-Z])(?=.*\d).{8,128}$/.test(json.secret)) {
            throw badRequest('the secret must be 8-128, inclusively, characters long with at least 1 uppercase letter, 1 lowercase letter and 1 number');
          }
          r.secret = json.secret;
          return [200, { secret: '' }];
        }
        r.secret = `${randomBytes(16).toString('hex')}Az9`;
        return [200, { secret: r.secret }];
      }
      case 'DeleteRobot': {
        const i = d.robots.findIndex((x) => x.id === Number(params.robot_id));
        if (i < 0) throw notFound(`robot ${params.robot_id}`);
        d.robots.splice(i, 1);
        return [200];
      }
      case 'ListWebhookPoliciesOfProject':
      case 'CreateWebhookPolicyOfProject':
      case 'UpdateWebhookPolicyOfProject':
      case 'DeleteWebhookPolicyOfProject': {
        const project = projectOf(params.project_name_or_id!, headers['x-is-resource-name'] === 'true');
        if (!project) throw notFound(`project ${params.project_name_or_id}`);
        const mine = d.webhooks.filter((w) => w.project_id === project.project_id);
        if (id === 'ListWebhookPoliciesOfProject') {
          const p = page(url, mine.filter(q));
          return [200, p.items, p.headers];
        }
        if (id === 'CreateWebhookPolicyOfProject') {
          validateWebhook(json);
          if (mine.some((w) => w.name === json.name)) throw new HarborError(409, 'CONFLICT', `notification policy ${json.name} already exists`);
          const newId = nextId++;
          d.webhooks.push({ ...json, id: newId, project_id: project.project_id, creator: admin.username, creation_time: now(), update_time: now() });
          return [201, undefined, { Location: `${url.pathname}/${newId}` }];
        }
        const i = d.webhooks.findIndex((w) => w.id === Number(params.webhook_policy_id) && w.project_id === project.project_id);
        if (i < 0) throw notFound(`webhook policy ${params.webhook_policy_id}`);
        if (id === 'DeleteWebhookPolicyOfProject') {
          d.webhooks.splice(i, 1);
          return [200];
        }
        validateWebhook(json);
        d.webhooks[i] = { ...d.webhooks[i], ...json, id: d.webhooks[i]!.id, project_id: project.project_id, update_time: now() };
        return [200];
      }
      default:
        throw new HarborError(400, 'BAD_REQUEST', `the double does not implement ${id}`);
    }
  }

  /** Harbor's registry token service: the access a credential gets to one repository. */
  function tokenService(req: IncomingMessage, url: URL, send: (s: number, b?: unknown) => void): void {
    const basic = /^Basic\s+(.+)$/i.exec(req.headers.authorization ?? '')?.[1];
    const [user, ...rest] = basic ? Buffer.from(basic, 'base64').toString().split(':') : [];
    const password = rest.join(':');
    const isAdmin = `${user}:${password}` === `${admin.username}:${admin.password}`;
    const robot = d.robots.find((r) => `${ROBOT_PREFIX}${r.name}` === user && r.secret === password);
    if (basic && !isAdmin && !robot) return send(401, { errors: [{ code: 'UNAUTHORIZED', message: 'authentication required' }] });
    const access = url.searchParams.getAll('scope').flatMap((scope) => {
      const m = /^repository:([^:]+):(.+)$/.exec(scope);
      if (!m) return [];
      const wanted = m[2]!.split(',');
      const held = isAdmin ? ['pull', 'push', '*'] : actionsFor(robot, m[1]!.split('/')[0]!);
      return [{ type: 'repository', name: m[1]!, actions: wanted.filter((a) => held.includes(a)) }];
    });
    const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
    const token = `${b64({ typ: 'JWT', alg: 'none' })}.${b64({ iss: 'harbor-token-issuer', sub: user ?? '', access })}.`;
    send(200, { token, access_token: token, expires_in: 1800, issued_at: now() });
  }

  const handle = async (req: IncomingMessage, res: ServerResponse, body: string) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const send = (status: number, payload?: unknown, headers: Record<string, string> = {}) => {
      res.writeHead(status, { 'Content-Type': 'application/json; charset=utf-8', ...headers });
      res.end(payload === undefined || req.method === 'HEAD' ? undefined : JSON.stringify(payload));
    };
    if (url.pathname === '/service/token' && req.method === 'GET') return tokenService(req, url, send);
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
    d.calls.push(o.id);
    if (req.headers.authorization !== expectedAuth) return send(401, { errors: [{ code: 'UNAUTHORIZED', message: 'unauthorized' }] });
    const problems = checkRequest(doc, o, { path: params, query: url.searchParams, headers: req.headers, body });
    if (problems.length) return violation(problems.join('; '));
    const held = delays.get(o.id);
    if (held) await new Promise((r) => setTimeout(r, held));
    const fault = faults.get(o.id);
    if (fault && fault.times > 0) {
      fault.times--;
      const code = fault.status === 403 ? 'FORBIDDEN' : fault.status >= 500 ? 'UNKNOWN' : 'BAD_REQUEST';
      return send(fault.status, { errors: [{ code, message: fault.status >= 500 ? 'internal server error' : 'injected by the test' }] });
    }
    try {
      const [status, payload, headers] = handleOperation(o.id, url, params, (body ? JSON.parse(body) : {}) as Json, req.headers);
      send(status, payload, headers);
    } catch (err) {
      if (!(err instanceof HarborError)) throw err;
      send(err.status, { errors: [{ code: err.code, message: err.message }] });
    }
  };

  const server: Server = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => (body += c));
    req.on('end', () => {
      handle(req, res, body).catch((err: Error) => {
        res.writeHead(500, { 'Content-Type': 'application/json' }).end(JSON.stringify({ errors: [{ code: 'UNKNOWN', message: err.message }] }));
      });
    });
  });
  await new Promise<void>((r) => server.listen(listen.port ?? 0, listen.host ?? '127.0.0.1', r));
  d.url = `http://${listen.host ?? '127.0.0.1'}:${(server.address() as AddressInfo).port}`;
  let closed: Promise<unknown> | undefined;
  d.close = async () => {
    closed ??= new Promise((r) => {
      server.closeAllConnections();
      server.close(r);
    });
    await closed;
  };
  return d;
}

