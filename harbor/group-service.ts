import type { HarborSetup, ReplicationExecution, ReplicationPolicy } from '@harbor-api/client';
import { GroupStore, type GroupSummary, type HarborFilter, type HarborTrigger, type ManagedGroup } from '../core/store/group-store.js';
import { HarborStore } from '../core/store/harbor-store.js';
import { requireEndpointUrl, requireHarbor, type HarborContext } from './context.js';
import { ApiError, badRequest, notFound, viaHarbor } from './errors.js';
import { checkFilters, checkTrigger, literalProjects, sourceProjects } from './filters.js';
import { WebhookService } from './webhook-service.js';

// Groups, driven through Harbor's API: one replication rule per group (destination
// namespace = group, No Flattening, deletions replicated), the endpoint it replicates to,
// the project states go to, and webhooks on the source projects. Every step looks first and
// creates or corrects only what differs, so a failed attempt is finished by the next one.

/** The name of the registry endpoint this service is registered as in Harbor. */
export const REGISTRY_NAME = 'satellite';
/** A group is one path component of a repository name. */
export const GROUP_NAME = /^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*$/;

export interface GroupInput {
  name: string;
  filters: HarborFilter[];
  trigger?: HarborTrigger;
  /** Start a manual execution once the rule exists. */
  replicate?: boolean;
}

export interface ExecutionView {
  id: number;
  status: string;
  trigger: string;
  startTime: string | null;
  endTime: string | null;
  total: number;
  succeed: number;
  failed: number;
}

export interface GroupView {
  name: string;
  policyId: number | null;
  adopted: boolean;
  filters: HarborFilter[];
  trigger: HarborTrigger;
  projects: string[];
  satellites: number;
  state: { version: number; digest: string | null; publishedAt: string | null } | null;
  lastExecution: ExecutionView | null;
  /** Why lastExecution is unknown, when Harbor could not be asked. */
  harborError?: string;
  createdAt: string;
  updatedAt: string;
}

const executionView = (e: ReplicationExecution): ExecutionView => ({
  id: e.id ?? 0, status: e.status ?? '', trigger: e.trigger ?? '', startTime: e.start_time ?? null, endTime: e.end_time ?? null,
  total: e.total ?? 0, succeed: e.succeed ?? 0, failed: e.failed ?? 0,
});

const sameJson = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);

export function checkGroupName(name: string, field = 'name'): string {
  if (!GROUP_NAME.test(name) || name.length > 63) throw badRequest(field, 'a group name is one lower-case path component (a-z, 0-9, ".", "_", "-"), at most 63 characters');
  return name;
}

export class GroupService {
  private readonly store: GroupStore;
  private readonly jobs: HarborStore;
  private readonly webhooks: WebhookService;

  constructor(private readonly ctx: HarborContext) {
    this.store = new GroupStore(ctx.pool);
    this.jobs = new HarborStore(ctx.pool);
    this.webhooks = new WebhookService(ctx);
  }

  private async registryId(harbor: HarborSetup): Promise<number> {
    const url = requireEndpointUrl(this.ctx);
    const secret = this.ctx.settings.endpointPassword;
    if (!secret) throw new ApiError('UNAVAILABLE', 'ENDPOINT_PASSWORD is not set: the secret Harbor\'s registry endpoint uses');
    return viaHarbor(() => harbor.ensureRegistry({
      name: REGISTRY_NAME, url, accessKey: this.ctx.settings.endpointUsername, accessSecret: secret, insecure: url.startsWith('http://'),
    }));
  }

  /** The projects whose webhooks report on a rule's sources: those its name filters can reach. */
  private async projectsOf(harbor: HarborSetup, filters: readonly HarborFilter[]): Promise<string[]> {
    const all = await viaHarbor(() => harbor.projectNames());
    const literal = literalProjects(filters);
    return literal ? literal.filter((p) => all.includes(p)) : sourceProjects(filters, all).filter((p) => p !== this.ctx.settings.stateProject);
  }

  /**
   * Creates a group in Harbor, idempotently: the same request again answers the same group
   * (created: false); a group that exists with other filters or trigger is a conflict (PATCH
   * changes them).
   */
  async create(input: GroupInput): Promise<{ created: boolean; group: GroupView; executionId?: number }> {
    const name = checkGroupName(input.name);
    const filters = checkFilters(input.filters);
    const trigger = checkTrigger(input.trigger ?? { type: 'event_based' });
    const existing = await this.store.get(name);
    if (existing && (!sameJson(existing.filters, filters) || !sameJson(existing.trigger, trigger))) {
      throw new ApiError('CONFLICT', `group ${name} exists with other filters or trigger; change them with PATCH /api/v1/groups/${name}`);
    }
    const harbor = requireHarbor(this.ctx);
    const registryId = await this.registryId(harbor);
    await viaHarbor(() => harbor.ensureProject(this.ctx.settings.stateProject));
    const policyId = await viaHarbor(() => harbor.ensureGroupPolicy({ group: name, registryId, filters, trigger }));
    const projects = await this.projectsOf(harbor, filters);
    await this.webhooks.ensureProjects(projects);
    const { created } = await this.store.save({ name, policyId, registryId, filters, trigger, projects, adopted: existing?.adopted ?? false });
    const executionId = input.replicate ? await viaHarbor(() => harbor.startReplication(policyId)) : undefined;
    this.ctx.log.info({ group: name, policy: policyId, created }, 'group configured in Harbor');
    return { created: created && !existing, group: await this.get(name), ...(executionId !== undefined ? { executionId } : {}) };
  }

  async list(): Promise<GroupView[]> {
    const groups = await this.store.list();
    return Promise.all(groups.map((g) => this.view(g)));
  }

  async get(name: string): Promise<GroupView> {
    const g = await this.store.summary(name);
    if (!g) throw notFound(`group ${name}`);
    return this.view(g);
  }

  private async view(g: GroupSummary): Promise<GroupView> {
    let lastExecution: ExecutionView | null = null;
    let harborError: string | undefined;
    if (g.policyId !== null && this.ctx.harbor) {
      try {
        const e = await viaHarbor(() => this.ctx.harbor!.latestExecution(g.policyId!));
        lastExecution = e ? executionView(e) : null;
      } catch (err) {
        harborError = (err as Error).message;
      }
    }
    return {
      name: g.name, policyId: g.policyId, adopted: g.adopted, filters: g.filters, trigger: g.trigger, projects: g.projects,
      satellites: g.satellites,
      state: g.state && { version: g.state.version, digest: g.state.digest, publishedAt: g.state.publishedAt?.toISOString() ?? null },
      lastExecution, ...(harborError ? { harborError } : {}),
      createdAt: g.createdAt.toISOString(), updatedAt: g.updatedAt.toISOString(),
    };
  }

  private async managed(name: string): Promise<ManagedGroup> {
    const g = await this.store.get(name);
    if (!g) throw notFound(`group ${name}`);
    return g;
  }

  /** Changes a group's filters or trigger, in Harbor first. */
  async update(name: string, change: { filters?: HarborFilter[]; trigger?: HarborTrigger }): Promise<GroupView> {
    const g = await this.managed(name);
    const filters = change.filters ? checkFilters(change.filters) : g.filters;
    const trigger = change.trigger ? checkTrigger(change.trigger) : g.trigger;
    const harbor = requireHarbor(this.ctx);
    let policyId = g.policyId;
    let registryId = g.registryId;
    if (g.adopted && policyId !== null) {
      const policy = await viaHarbor(() => harbor.getPolicy(policyId!));
      if (!policy) throw new ApiError('HARBOR_ERROR', `the rule of group ${name} (policy ${policyId}) no longer exists in Harbor`, undefined, 404);
      await viaHarbor(() => harbor.updatePolicy(policyId!, { ...policy, filters, trigger }));
    } else {
      registryId = await this.registryId(harbor);
      policyId = await viaHarbor(() => harbor.ensureGroupPolicy({ group: name, registryId: registryId!, filters, trigger }));
    }
    const projects = await this.projectsOf(harbor, filters);
    await this.webhooks.ensureProjects(projects);
    await this.store.save({ ...g, policyId, registryId, filters, trigger, projects });
    await this.webhooks.releaseProjects(g.projects.filter((p) => !projects.includes(p)), await this.store.projectsInUse(name));
    return this.get(name);
  }

  /**
   * Deletes a group: its rule leaves Harbor, then every artifact it lists becomes a
   * tombstone, so its satellites remove the images with the next state. Robots lose the
   * projects only those images needed (a queued job).
   */
  async delete(name: string): Promise<{ tombstoned: number }> {
    const g = await this.managed(name);
    const harbor = requireHarbor(this.ctx);
    if (g.policyId !== null) {
      try {
        await viaHarbor(() => harbor.deletePolicy(g.policyId!));
      } catch (err) {
        // Harbor refuses to delete a rule while one of its executions runs (412): nothing is
        // changed here either, and the administrator is told what to wait for.
        if (err instanceof ApiError && err.harborStatus === 412) {
          throw new ApiError('CONFLICT', `group ${name} is replicating now: Harbor refuses to delete its rule (policy ${g.policyId}) while an execution runs. ` +
            `Wait for it to finish, or stop it in Harbor (Replications > ${g.adopted ? 'the rule' : `satellite-${name}`} > Stop), then delete the group again`);
        }
        throw err;
      }
    }
    const tombstoned = await this.store.deleteAndTombstone(name, (c) => this.jobs.enqueue('sync-robots', { group: name }, c));
    try {
      await this.webhooks.releaseProjects(g.projects, await this.store.projectsInUse(name));
    } catch (err) {
      this.ctx.log.warn({ group: name, err: (err as Error).message }, 'could not remove webhook policies no group needs any more');
    }
    this.ctx.log.info({ group: name, tombstoned }, 'group deleted');
    return { tombstoned };
  }

  /**
   * Source projects can appear after a group was made (a rule for `team-*` projects reaches every
   * new team's project): each group's projects are worked out again from Harbor's projects
   * now, a new one gets the webhook policy, one no group reaches any more loses it. Answers
   * the groups whose projects changed. Run by the repeatable reconcile.
   */
  async refreshProjects(): Promise<Record<string, string[]>> {
    const harbor = requireHarbor(this.ctx);
    const changed: Record<string, string[]> = {};
    for (const g of await this.store.list()) {
      const projects = await this.projectsOf(harbor, g.filters);
      await this.webhooks.ensureProjects(projects);
      if (sameJson(projects, g.projects)) continue;
      await this.store.save({ ...g, projects });
      await this.webhooks.releaseProjects(g.projects.filter((p) => !projects.includes(p)), await this.store.projectsInUse(g.name));
      changed[g.name] = projects;
      this.ctx.log.info({ group: g.name, projects }, 'source projects of the group changed in Harbor');
    }
    return changed;
  }

  /** A manual execution of the group's rule now. */
  async replicate(name: string): Promise<{ executionId: number }> {
    const g = await this.managed(name);
    if (g.policyId === null) throw new ApiError('CONFLICT', `group ${name} has no replication rule`);
    const harbor = requireHarbor(this.ctx);
    return { executionId: await viaHarbor(() => harbor.startReplication(g.policyId!)) };
  }

  /**
   * Takes over a replication rule made by hand (by id or name). Its destination namespace is
   * the group. A rule that flattens the path would record wrong sources: it is refused with
   * what to change, unless `fix` asks to set "No Flattening" on it. A group that already has
   * another rule keeps it: adopting is refused, naming both rules, unless `replace` asks for
   * the new one to take its place (the old rule stays in Harbor, as the warning says).
   */
  async adopt(ref: string, fix: boolean, replace = false): Promise<{ group: GroupView; fixed: boolean; warnings: string[] }> {
    const harbor = requireHarbor(this.ctx);
    const policy: ReplicationPolicy | undefined = /^\d+$/.test(ref)
      ? await viaHarbor(() => harbor.getPolicy(Number(ref)))
      : await viaHarbor(() => harbor.findPolicyByName(ref));
    if (!policy?.id) throw notFound(`replication rule ${ref}`);
    const name = policy.dest_namespace ?? '';
    if (!GROUP_NAME.test(name)) {
      throw new ApiError('BAD_REQUEST', `rule ${policy.name} has destination namespace ${JSON.stringify(name)}, which is not a group name: set it to the group's name`, 'policy');
    }
    const owner = await this.store.byPolicyId(policy.id);
    if (owner && owner.name !== name) throw new ApiError('CONFLICT', `rule ${policy.name} already belongs to group ${owner.name}`);
    const warnings: string[] = [];
    // Checked before anything changes (the fix below edits the rule in Harbor).
    const current = await this.store.get(name);
    if (current?.policyId != null && current.policyId !== policy.id) {
      const old = await viaHarbor(() => harbor.getPolicy(current.policyId!)).catch(() => undefined);
      const oldRule = `rule ${old?.name ? `${old.name} ` : ''}(policy ${current.policyId})`;
      if (!replace) {
        throw new ApiError('CONFLICT',
          `group ${name} already has ${oldRule}; adopting rule ${policy.name} (policy ${policy.id}) would replace it. ` +
          `Delete the group first, or adopt with replace (--replace) to make rule ${policy.name} the group's`, 'policy');
      }
      warnings.push(`${oldRule} is no longer group ${name}'s rule, but still replicates to namespace ${name} in Harbor: delete or disable it there`);
    }
    const endpoint = this.ctx.settings.endpointUrl;
    if (endpoint && policy.dest_registry?.url && policy.dest_registry.url.replace(/\/+$/, '') !== endpoint) {
      warnings.push(`rule ${policy.name} replicates to ${policy.dest_registry.url}, not to ENDPOINT_URL ${endpoint}`);
    }
    if (policy.replicate_deletion !== true) {
      warnings.push(`rule ${policy.name} does not replicate deletions: images deleted in Harbor leave the group only at the next reconcile`);
    }
    let fixed = false;
    if (policy.dest_namespace_replace_count !== 0) {
      const count = policy.dest_namespace_replace_count ?? -1;
      if (!fix) {
        throw new ApiError('FLATTENING',
          `rule ${policy.name} flattens the path (dest_namespace_replace_count ${count}): library/nginx would arrive as ${name}/nginx and lose its project. ` +
          'Choose Flattening "No Flattening" in Harbor, or adopt with fix (--fix) to have it set', 'policy');
      }
      await viaHarbor(() => harbor.updatePolicy(policy.id!, { ...policy, dest_namespace_replace_count: 0 }));
      fixed = true;
    }
    const filters = (policy.filters ?? []).map((f) => ({ type: f.type ?? '', value: f.value, ...(f.decoration ? { decoration: f.decoration } : {}) }));
    const trigger: HarborTrigger = policy.trigger?.type === 'scheduled'
      ? { type: 'scheduled', trigger_settings: { cron: policy.trigger.trigger_settings?.cron ?? '' } }
      : { type: policy.trigger?.type ?? 'manual' };
    const projects = await this.projectsOf(harbor, filters);
    await this.webhooks.ensureProjects(projects);
    await this.store.save({ name, policyId: policy.id, registryId: policy.dest_registry?.id ?? null, filters, trigger, projects, adopted: true });
    this.ctx.log.info({ group: name, policy: policy.id, fixed }, 'replication rule adopted');
    return { group: await this.get(name), fixed, warnings };
  }
}
