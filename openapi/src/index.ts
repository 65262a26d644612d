// @harbor-api/client: the one module that wraps the generated Harbor types. openapi-fetch
// gives typed calls of exactly the operations in openapi/harbor-api.json; HarborSetup
// holds the few things the project does with them.
import createClient, { type Client } from 'openapi-fetch';
import type { components, operations, paths } from './generated/harbor.js';

export type { components, operations, paths };
export type HarborSchemas = components['schemas'];
export type HarborClient = Client<paths>;

export interface HarborConnection {
  /** Harbor's URL, e.g. https://harbor.example.com */
  url: string;
  username: string;
  password: string;
  fetch?: typeof fetch;
}

export class HarborApiError extends Error {
  constructor(readonly operation: string, readonly status: number, readonly body: unknown) {
    super(`Harbor ${operation} answered ${status}: ${JSON.stringify(body)}`);
    this.name = 'HarborApiError';
  }
}

export function createHarborClient(c: HarborConnection): HarborClient {
  const authorization = `Basic ${Buffer.from(`${c.username}:${c.password}`).toString('base64')}`;
  return createClient<paths>({
    baseUrl: `${c.url.replace(/\/+$/, '')}/api/v2.0`,
    headers: { Authorization: authorization },
    ...(c.fetch ? { fetch: c.fetch } : {}),
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

export interface GroupPolicyInput {
  group: string;
  registryId: number;
  /** Harbor resource filters, e.g. [{ type: 'name', value: 'library/**' }]. */
  filters: HarborSchemas['ReplicationFilter'][];
}

/**
 * Registers the Satellite endpoint and one replication rule per group, the way the README
 * tells an administrator to: provider "Docker Registry", destination namespace = group,
 * "No Flattening" (dest_namespace_replace_count 0), event based, deletions replicated.
 * Every step looks first and creates or corrects only what differs, so it can be re-run.
 */
export class HarborSetup {
  constructor(private readonly client: HarborClient) {}

  async ensureRegistry(input: { name: string; url: string; accessKey: string; accessSecret: string; insecure?: boolean }): Promise<number> {
    const list = check('listRegistries', await this.client.GET('/registries', { params: { query: { q: `name=${input.name}` } } }));
    const found = (list ?? []).find((r) => r.name === input.name);
    if (found?.id !== undefined) return found.id;
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

  async ensureGroupPolicy(input: GroupPolicyInput): Promise<number> {
    const name = this.policyName(input.group);
    const policy: HarborSchemas['ReplicationPolicy'] = {
      name,
      description: `Edge group ${input.group}: what its satellites run`,
      dest_registry: { id: input.registryId },
      dest_namespace: input.group,
      dest_namespace_replace_count: 0,
      filters: input.filters,
      trigger: { type: 'event_based' },
      replicate_deletion: true,
      override: true,
      enabled: true,
    };
    const list = check('listReplicationPolicies', await this.client.GET('/replication/policies', { params: { query: { q: `name=${name}` } } }));
    const found = (list ?? []).find((p) => p.name === name);
    if (found?.id === undefined) {
      const created = await this.client.POST('/replication/policies', { body: policy });
      check('createReplicationPolicy', created);
      return idFrom(created.response);
    }
    const drifted = found.dest_namespace !== input.group || found.dest_namespace_replace_count !== 0 || found.dest_registry?.id !== input.registryId
      || found.replicate_deletion !== true || found.enabled !== true;
    if (drifted) {
      check('updateReplicationPolicy', await this.client.PUT('/replication/policies/{id}', { params: { path: { id: found.id } }, body: { ...found, ...policy } }));
    }
    return found.id;
  }

  /** A manual run of a group's rule: sends what the destination lacks. */
  async startReplication(policyId: number): Promise<number> {
    const started = await this.client.POST('/replication/executions', { body: { policy_id: policyId } });
    check('startReplication', started);
    return idFrom(started.response);
  }

  async latestExecution(policyId: number): Promise<HarborSchemas['ReplicationExecution'] | undefined> {
    const list = check('listReplicationExecutions', await this.client.GET('/replication/executions', { params: { query: { policy_id: policyId, page_size: 1, sort: '-start_time' } } }));
    return list?.[0];
  }

  /** The private project states are published to. */
  async ensureProject(name: string): Promise<'exists' | 'created'> {
    const head = await this.client.HEAD('/projects', { params: { query: { project_name: name } } });
    if (head.response.status === 200) return 'exists';
    if (head.response.status !== 404) throw new HarborApiError('headProject', head.response.status, head.error);
    check('createProject', await this.client.POST('/projects', { body: { project_name: name, metadata: { public: 'false' } } }));
    return 'created';
  }

  /** A robot account that may only pull from `project`: what a satellite logs in with. */
  async createPullRobot(project: string, name: string): Promise<{ name: string; secret: string }> {
    const created = check('CreateRobot', await this.client.POST('/robots', {
      body: {
        name,
        description: 'Satellite: pulls its group state and images',
        level: 'project',
        duration: -1,
        permissions: [{ kind: 'project', namespace: project, access: [{ resource: 'repository', action: 'pull' }] }],
      },
    }));
    if (!created?.name || !created.secret) throw new HarborApiError('CreateRobot', 201, 'no name or secret in the answer');
    return { name: created.name, secret: created.secret };
  }

  /** An artifact by digest, e.g. to resolve the source of a manifest; undefined when absent. */
  async findArtifact(project: string, repository: string, digest: string): Promise<HarborSchemas['Artifact'] | undefined> {
    const r = await this.client.GET('/projects/{project_name}/repositories/{repository_name}/artifacts/{reference}', {
      params: { path: { project_name: project, repository_name: repositoryParam(repository), reference: digest } },
    });
    if (r.response.status === 404) return undefined;
    return check('getArtifact', r);
  }
}
