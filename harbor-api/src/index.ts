// @harbor-api/client: the one module that wraps the generated Harbor types. openapi-fetch
// gives typed calls of exactly the operations in harbor-api/harbor-api.json; HarborSetup
// holds the things the project does with them.
import createClient, { type Client } from 'openapi-fetch';
import type { components, operations, paths } from './generated/harbor.js';

export type { components, operations, paths };
export type HarborSchemas = components['schemas'];
export type HarborClient = Client<paths>;
export type ReplicationPolicy = HarborSchemas['ReplicationPolicy'];
export type ReplicationFilter = HarborSchemas['ReplicationFilter'];
export type ReplicationTrigger = HarborSchemas['ReplicationTrigger'];
export type ReplicationExecution = HarborSchemas['ReplicationExecution'];
export type HarborArtifact = HarborSchemas['Artifact'];
export type RobotPermission = HarborSchemas['RobotPermission'];
export type Robot = HarborSchemas['Robot'];

export interface HarborConnection {
  /** Harbor's URL, e.g. https://harbor.example.com */
  url: string;
  username: string;
  password: string;
  /**
   * The fetch calls go through. The project passes one that reads every body under a cap
   * (core/http/bounded-body.ts's cappedFetch); a body it refuses (an error named
   * BodyTooLargeError, with the answer's `status`) becomes a HarborApiError with that status.
   */
  fetch?: (request: Request) => Promise<Response>;
  /** Timeout of one API request. @defaultValue 30000 (ms) */
  timeoutMs?: number;
}

/**
 * A call Harbor answered with an error (status > 0), or could not be made (status 0: refused,
 * reset, timed out). `message` carries Harbor's own message, from its {"errors":[…]} body.
 */
export class HarborApiError extends Error {
  constructor(readonly operation: string, readonly status: number, readonly body: unknown) {
    super(`Harbor ${operation} ${status === 0 ? 'could not be reached' : `answered ${status}`}: ${harborMessage(body)}`);
    this.name = 'HarborApiError';
  }

  /** Harbor's first error message, or what we know of the failure. */
  get harborMessage(): string {
    return harborMessage(this.body);
  }
}

function harborMessage(body: unknown): string {
  const first = (body as { errors?: { message?: string }[] } | undefined)?.errors?.[0]?.message;
  if (typeof first === 'string') return first;
  return typeof body === 'string' ? body : JSON.stringify(body ?? null);
}

export function createHarborClient(c: HarborConnection): HarborClient {
  const authorization = `Basic ${Buffer.from(`${c.username}:${c.password}`).toString('base64')}`;
  const timeoutMs = c.timeoutMs ?? 30_000;
  const base = c.fetch ?? fetch;
  // Every call gets a timeout; a network failure becomes a HarborApiError (status 0), so a
  // caller never has to tell fetch's TypeError from Harbor's answers.
  const guarded = async (input: Request): Promise<Response> => {
    try {
      return await base(new Request(input, { signal: AbortSignal.timeout(timeoutMs) }));
    } catch (err) {
      const operation = `${input.method} ${new URL(input.url).pathname}`;
      // Harbor answered, more than the caller reads: not a failure to reach it.
      const refused = err as { name?: string; status?: number; message?: string };
      if (refused.name === 'BodyTooLargeError') throw new HarborApiError(operation, refused.status ?? 0, refused.message);
      const cause = (err as { cause?: { code?: string } }).cause?.code ?? (err as Error).message;
      throw new HarborApiError(operation, 0, cause);
    }
  };
  return createClient<paths>({
    baseUrl: `${c.url.replace(/\/+$/, '')}/api/v2.0`,
    headers: { Authorization: authorization },
    fetch: guarded,
  });
}

/** The id at the end of a Location header: /api/v2.0/registries/7 → 7. */
function idFrom(response: Response): number {
  const id = Number(/\/(\d+)\/?$/.exec(response.headers.get('location') ?? '')?.[1]);
  if (!Number.isSafeInteger(id)) throw new HarborApiError('create', response.status, 'no id in Location');
  return id;
}

function check<T>(operation: string, r: { data?: T; error?: unknown; response: Response }): T {
  if (!r.response.ok) throw new HarborApiError(operation, r.response.status, r.error);
  return r.data as T;
}

/** Harbor's repository path parameter: a slash inside the name is encoded twice. */
export function repositoryParam(repository: string): string {
  return encodeURIComponent(repository);
}

/** Harbor pages hold at most 100 entries (the spec's maximum page_size). */
const PAGE_SIZE = 100;

/**
 * Every page of a list operation, in order. Stops at a short page, or when X-Total-Count is
 * reached; a failed page fails the whole listing, so callers never act on half a list.
 */
async function allPages<T>(operation: string, fetchPage: (page: number) => Promise<{ data?: T[]; error?: unknown; response: Response }>): Promise<T[]> {
  const out: T[] = [];
  for (let page = 1; ; page++) {
    const r = await fetchPage(page);
    const items = check(operation, r) ?? [];
    out.push(...items);
    const total = Number(r.response.headers.get('x-total-count') ?? NaN);
    if (items.length < PAGE_SIZE || (Number.isFinite(total) && out.length >= total)) return out;
  }
}

export interface GroupPolicyInput {
  group: string;
  registryId: number;
  /** Harbor resource filters, e.g. [{ type: 'name', value: 'library/**' }]. */
  filters: ReplicationFilter[];
  /** @defaultValue { type: 'event_based' } */
  trigger?: ReplicationTrigger;
}

export interface WebhookPolicyInput {
  name: string;
  address: string;
  /** Sent by Harbor as the Authorization header of every notification. */
  authHeader: string;
  eventTypes: string[];
}

/** The access a satellite's robot gets on each project it may read. */
export interface RobotAccess {
  resource: string;
  action: string;
}

/**
 * What the project does in Harbor. Every "ensure" looks first and creates or corrects only
 * what differs, so it can be re-run.
 */
export class HarborSetup {
  constructor(private readonly client: HarborClient) {}

  async ping(): Promise<void> {
    const r = await this.client.GET('/ping', { parseAs: 'text' });
    if (!r.response.ok) throw new HarborApiError('getPing', r.response.status, r.error);
  }

  async ensureRegistry(input: { name: string; url: string; accessKey: string; accessSecret: string; insecure?: boolean }): Promise<number> {
    const list = check('listRegistries', await this.client.GET('/registries', { params: { query: { q: `name=${input.name}` } } }));
    const found = (list ?? []).find((r) => r.name === input.name);
    if (found?.id !== undefined) {
      // Put back what we want. Harbor never shows the secret (it answers "*****"), so a stale
      // one cannot be seen: the credential is sent again every time, with the URL, so an
      // endpoint registered with an old address or secret is corrected, not kept.
      check('updateRegistry', await this.client.PUT('/registries/{id}', {
        params: { path: { id: found.id } },
        body: {
          url: input.url, insecure: input.insecure ?? false, credential_type: 'basic', access_key: input.accessKey, access_secret: input.accessSecret,
        },
      }));
      return found.id;
    }
    const created = await this.client.POST('/registries', {
      body: {
        name: input.name,
        type: 'docker-registry',
        url: input.url,
        insecure: input.insecure ?? false,
        credential: { type: 'basic', access_key: input.accessKey, access_secret: input.accessSecret },
        description: 'Satellite for Harbor: records what each edge group should run',
      },
    });
    check('createRegistry', created);
    return idFrom(created.response);
  }

  policyName(group: string): string {
    return `satellite-${group}`;
  }

  /** The rule of a group as we create it: No Flattening, deletions replicated. */
  groupPolicy(input: GroupPolicyInput): ReplicationPolicy {
    return {
      name: this.policyName(input.group),
      description: `Edge group ${input.group}: what its satellites run`,
      dest_registry: { id: input.registryId },
      dest_namespace: input.group,
      dest_namespace_replace_count: 0,
      filters: input.filters,
      trigger: input.trigger ?? { type: 'event_based' },
      replicate_deletion: true,
      override: true,
      enabled: true,
    };
  }

  /** Creates the group's rule, or puts back what differs from what we want. */
  async ensureGroupPolicy(input: GroupPolicyInput): Promise<number> {
    const policy = this.groupPolicy(input);
    const found = await this.findPolicyByName(policy.name!);
    if (found?.id === undefined) {
      const created = await this.client.POST('/replication/policies', { body: policy });
      check('createReplicationPolicy', created);
      return idFrom(created.response);
    }
    const drifted = found.dest_namespace !== input.group || found.dest_namespace_replace_count !== 0 || found.dest_registry?.id !== input.registryId
      || found.replicate_deletion !== true || found.enabled !== true
      || JSON.stringify(found.filters ?? []) !== JSON.stringify(policy.filters)
      || JSON.stringify(found.trigger ?? {}) !== JSON.stringify(policy.trigger);
    if (drifted) await this.updatePolicy(found.id, { ...found, ...policy });
    return found.id;
  }

  async findPolicyByName(name: string): Promise<(ReplicationPolicy & { id: number }) | undefined> {
    const list = check('listReplicationPolicies', await this.client.GET('/replication/policies', { params: { query: { q: `name=${name}` } } }));
    const found = (list ?? []).find((p) => p.name === name);
    return found?.id === undefined ? undefined : (found as ReplicationPolicy & { id: number });
  }

  async getPolicy(id: number): Promise<ReplicationPolicy | undefined> {
    const r = await this.client.GET('/replication/policies/{id}', { params: { path: { id } } });
    if (r.response.status === 404) return undefined;
    return check('getReplicationPolicy', r);
  }

  /**
   * Replaces a rule. Harbor answers its read model (the destination registry in full, with
   * the credential masked); only the registry's id is sent back.
   */
  async updatePolicy(id: number, policy: ReplicationPolicy): Promise<void> {
    const { id: _id, creation_time: _c, update_time: _u, src_registry: src, dest_registry: dest, ...rest } = policy;
    const body: ReplicationPolicy = { ...rest, ...(dest?.id !== undefined ? { dest_registry: { id: dest.id } } : {}), ...(src?.id ? { src_registry: { id: src.id } } : {}) };
    check('updateReplicationPolicy', await this.client.PUT('/replication/policies/{id}', { params: { path: { id } }, body }));
  }

  /** False when there was no such rule. */
  async deletePolicy(id: number): Promise<boolean> {
    const r = await this.client.DELETE('/replication/policies/{id}', { params: { path: { id } } });
    if (r.response.status === 404) return false;
    check('deleteReplicationPolicy', r);
    return true;
  }

  /** A manual run of a group's rule: sends what the destination lacks. */
  async startReplication(policyId: number): Promise<number> {
    const started = await this.client.POST('/replication/executions', { body: { policy_id: policyId } });
    check('startReplication', started);
    return idFrom(started.response);
  }

  async latestExecution(policyId: number): Promise<ReplicationExecution | undefined> {
    const list = check('listReplicationExecutions', await this.client.GET('/replication/executions', { params: { query: { policy_id: policyId, page_size: 1, sort: '-start_time' } } }));
    return list?.[0];
  }

  async getExecution(id: number): Promise<ReplicationExecution | undefined> {
    const r = await this.client.GET('/replication/executions/{id}', { params: { path: { id } } });
    if (r.response.status === 404) return undefined;
    return check('getReplicationExecution', r);
  }

  /** The private project states are published to. */
  async ensureProject(name: string): Promise<'exists' | 'created'> {
    const head = await this.client.HEAD('/projects', { params: { query: { project_name: name } } });
    if (head.response.status === 200) return 'exists';
    if (head.response.status !== 404) throw new HarborApiError('headProject', head.response.status, head.error);
    check('createProject', await this.client.POST('/projects', { body: { project_name: name, metadata: { public: 'false' } } }));
    return 'created';
  }

  async projectNames(): Promise<string[]> {
    const projects = await allPages('listProjects', (page) =>
      this.client.GET('/projects', { params: { query: { page, page_size: PAGE_SIZE, with_detail: false } } }));
    return projects.flatMap((p) => (p.name ? [p.name] : []));
  }

  /** Every repository's full name ("library/nginx"). */
  async repositoryNames(): Promise<string[]> {
    const repos = await allPages('listAllRepositories', (page) =>
      this.client.GET('/repositories', { params: { query: { page, page_size: PAGE_SIZE } } }));
    return repos.flatMap((r) => (r.name ? [r.name] : []));
  }

  /** Every artifact of a repository, with tags and labels. `repository` excludes the project. */
  async artifacts(project: string, repository: string): Promise<HarborArtifact[]> {
    return allPages('listArtifacts', (page) =>
      this.client.GET('/projects/{project_name}/repositories/{repository_name}/artifacts', {
        params: {
          path: { project_name: project, repository_name: repositoryParam(repository) },
          query: { page, page_size: PAGE_SIZE, with_tag: true, with_label: true },
        },
      }));
  }

  /** An artifact by digest, e.g. to resolve the source of a manifest; undefined when absent. */
  async findArtifact(project: string, repository: string, digest: string): Promise<HarborArtifact | undefined> {
    const r = await this.client.GET('/projects/{project_name}/repositories/{repository_name}/artifacts/{reference}', {
      params: { path: { project_name: project, repository_name: repositoryParam(repository), reference: digest } },
    });
    if (r.response.status === 404) return undefined;
    return check('getArtifact', r);
  }

  /** Per-project permissions granting `access` on each of `projects` (sorted, deduplicated). */
  static projectPermissions(projects: Iterable<string>, access: readonly RobotAccess[]): RobotPermission[] {
    return [...new Set(projects)].sort().map((namespace) => ({ kind: 'project', namespace, access: access.map((a) => ({ ...a })) }));
  }

  /**
   * A system-level robot (it spans several projects) with exactly `permissions`, never
   * expiring. Answers Harbor's full name (with its robot prefix) and the secret, shown once.
   */
  async createRobot(name: string, description: string, permissions: RobotPermission[]): Promise<{ id: number; name: string; secret: string }> {
    const created = check('CreateRobot', await this.client.POST('/robots', {
      body: { name, description, level: 'system', duration: -1, disable: false, permissions },
    }));
    if (created?.id === undefined || !created.name || !created.secret) throw new HarborApiError('CreateRobot', 201, 'no id, name or secret in the answer');
    return { id: created.id, name: created.name, secret: created.secret };
  }

  /** A system robot by the name it was created with (without Harbor's prefix). */
  async findRobot(name: string): Promise<(Robot & { id: number }) | undefined> {
    const list = check('ListRobot', await this.client.GET('/robots', { params: { query: { q: `name=${name}` } } }));
    const found = (list ?? []).find((r) => r.name === name || r.name?.endsWith(`$${name}`));
    return found?.id === undefined ? undefined : (found as Robot & { id: number });
  }

  async getRobot(id: number): Promise<Robot | undefined> {
    const r = await this.client.GET('/robots/{robot_id}', { params: { path: { robot_id: id } } });
    if (r.response.status === 404) return undefined;
    return check('GetRobotByID', r);
  }

  /** Replaces a robot's permissions; name, level and duration stay (Harbor refuses changing them). */
  async setRobotPermissions(id: number, permissions: RobotPermission[]): Promise<void> {
    const robot = await this.getRobot(id);
    if (!robot) throw new HarborApiError('GetRobotByID', 404, { errors: [{ code: 'NOT_FOUND', message: `robot ${id} not found` }] });
    const body: Robot = {
      name: robot.name, description: robot.description, level: robot.level, duration: robot.duration, disable: robot.disable ?? false, permissions,
    };
    check('UpdateRobot', await this.client.PUT('/robots/{robot_id}', { params: { path: { robot_id: id } }, body }));
  }

  /** A new random secret chosen by Harbor, returned once. */
  async refreshRobotSecret(id: number): Promise<string> {
    const r = check('RefreshSec', await this.client.PATCH('/robots/{robot_id}', { params: { path: { robot_id: id } }, body: {} }));
    if (!r?.secret) throw new HarborApiError('RefreshSec', 200, 'no secret in the answer');
    return r.secret;
  }

  /** False when there was no such robot. */
  async deleteRobot(id: number): Promise<boolean> {
    const r = await this.client.DELETE('/robots/{robot_id}', { params: { path: { robot_id: id } } });
    if (r.response.status === 404) return false;
    check('DeleteRobot', r);
    return true;
  }

  /** The project's webhook policy called `name` as Harbor has it (targets with their auth header), if there is one. */
  async webhookPolicy(project: string, name: string): Promise<(HarborSchemas['WebhookPolicy'] & { id: number }) | undefined> {
    const policies = await allPages('ListWebhookPoliciesOfProject', (page) =>
      this.client.GET('/projects/{project_name_or_id}/webhook/policies', {
        params: { path: { project_name_or_id: project }, header: { 'X-Is-Resource-Name': true }, query: { page, page_size: PAGE_SIZE } },
      }));
    const found = policies.find((p) => p.name === name);
    return found?.id === undefined ? undefined : (found as HarborSchemas['WebhookPolicy'] & { id: number });
  }

  /** The id of the project's webhook policy called `name`, if there is one. */
  async webhookPolicyId(project: string, name: string): Promise<number | undefined> {
    return (await this.webhookPolicy(project, name))?.id;
  }

  /** Creates or corrects the project's webhook policy called `input.name`; returns its id. */
  async ensureWebhookPolicy(project: string, input: WebhookPolicyInput): Promise<number> {
    const path = { project_name_or_id: project };
    const header = { 'X-Is-Resource-Name': true };
    const policies = await allPages('ListWebhookPoliciesOfProject', (page) =>
      this.client.GET('/projects/{project_name_or_id}/webhook/policies', { params: { path, header, query: { page, page_size: PAGE_SIZE } } }));
    const body: HarborSchemas['WebhookPolicy'] = {
      name: input.name,
      description: 'Satellite for Harbor: replications and deletions that change what edge groups run',
      enabled: true,
      event_types: input.eventTypes,
      targets: [{
        type: 'http', address: input.address, auth_header: input.authHeader,
        skip_cert_verify: input.address.startsWith('http://'), payload_format: 'Default',
      }],
    };
    const found = policies.find((p) => p.name === input.name);
    if (found?.id === undefined) {
      const created = await this.client.POST('/projects/{project_name_or_id}/webhook/policies', { params: { path, header }, body });
      check('CreateWebhookPolicyOfProject', created);
      return idFrom(created.response);
    }
    check('UpdateWebhookPolicyOfProject', await this.client.PUT('/projects/{project_name_or_id}/webhook/policies/{webhook_policy_id}', {
      params: { path: { ...path, webhook_policy_id: found.id }, header }, body,
    }));
    return found.id;
  }

  /** False when there was no such policy. */
  async deleteWebhookPolicy(project: string, id: number): Promise<boolean> {
    const r = await this.client.DELETE('/projects/{project_name_or_id}/webhook/policies/{webhook_policy_id}', {
      params: { path: { project_name_or_id: project, webhook_policy_id: id }, header: { 'X-Is-Resource-Name': true } },
    });
    if (r.response.status === 404) return false;
    check('DeleteWebhookPolicyOfProject', r);
    return true;
  }
}
