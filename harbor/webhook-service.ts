import { GroupStore } from '../core/store/group-store.js';
import { HarborStore } from '../core/store/harbor-store.js';
import { WebhookStore } from '../core/store/webhook-store.js';
import { requireEndpointUrl, requireHarbor, type HarborContext } from './context.js';
import { ApiError, viaHarbor } from './errors.js';
import { newSecret, sha256 } from './tokens.js';

// Harbor's webhook notifications (goharbor/harbor src/pkg/notifier/model/event.go):
//   {"type","occur_at","operator","event_data":{...}}
// DELETE_ARTIFACT carries event_data.repository.repo_full_name and event_data.resources[].digest.
// REPLICATION carries event_data.replication (fields in src/controller/event/model/event.go,
// built by src/controller/event/handler/webhook/artifact/replication.go) and is sent to the
// webhooks of the source project. For a push rule like ours, src_resource describes the local
// Harbor but holds the namespace of the task's destination resource, i.e. the rule's
// destination namespace (the group); dest_resource describes our endpoint with the source
// project as namespace. execution_id and task_id were added in Harbor 2.13; older Harbors
// send neither, so the execution cannot be looked up there. Harbor sends the policy target's
// auth_header verbatim as the Authorization header.

export const WEBHOOK_POLICY_NAME = 'satellite-for-harbor';
export const WEBHOOK_EVENTS = ['REPLICATION', 'DELETE_ARTIFACT'];
export const WEBHOOK_PATH = '/api/v1/webhooks/harbor';

export interface HarborNotification {
  type: string;
  occur_at?: number;
  operator?: string;
  event_data?: {
    replication?: {
      execution_id?: number; task_id?: number; job_status?: string; trigger_type?: string;
      src_resource?: { namespace?: string; registry_type?: string; endpoint?: string };
      dest_resource?: { namespace?: string; registry_name?: string; registry_type?: string; endpoint?: string };
    };
    repository?: { repo_full_name?: string; namespace?: string };
    resources?: { digest?: string; tag?: string }[];
  };
}

export interface NotificationOutcome {
  event: string;
  /** Groups whose build was queued (REPLICATION) or whose reconcile was (DELETE_ARTIFACT). */
  groups: string[];
}

export class WebhookService {
  private readonly webhooks: WebhookStore;
  private readonly groups: GroupStore;
  private readonly jobs: HarborStore;

  constructor(private readonly ctx: HarborContext) {
    this.webhooks = new WebhookStore(ctx.pool);
    this.groups = new GroupStore(ctx.pool);
    this.jobs = new HarborStore(ctx.pool);
  }

  /**
   * Makes sure each project has our webhook policy, as we want it: posting to ENDPOINT_URL's
   * webhook path, enabled, for our event types, with our secret. A project we already
   * configured keeps its secret, and a policy that drifted in Harbor (ENDPOINT_URL changed, or
   * edited by hand) is put back; one without (or whose policy was removed in Harbor, or whose
   * auth header is no longer our secret) gets a new random secret, sent to Harbor as the
   * policy's auth header and kept here only hashed.
   */
  async ensureProjects(projects: readonly string[]): Promise<void> {
    const harbor = requireHarbor(this.ctx);
    const address = `${requireEndpointUrl(this.ctx)}${WEBHOOK_PATH}`;
    for (const project of projects) {
      const known = await this.webhooks.get(project);
      const inHarbor = await viaHarbor(() => harbor.webhookPolicy(project, WEBHOOK_POLICY_NAME));
      const target = inHarbor?.targets?.length === 1 ? inHarbor.targets[0] : undefined;
      // Harbor shows a target's auth header: still ours when it authenticates as this project.
      const ourSecret = known && inHarbor?.id === known.harborId && target?.auth_header
        && (await this.webhooks.projectOf(sha256(target.auth_header))) === project ? target.auth_header : undefined;
      const inStep = ourSecret !== undefined && inHarbor!.enabled === true && target!.type === 'http' && target!.address === address
        && target!.payload_format === 'Default' && [...(inHarbor!.event_types ?? [])].sort().join() === [...WEBHOOK_EVENTS].sort().join();
      if (inStep) continue;
      if (inHarbor) this.ctx.log.info({ project, policy: inHarbor.id, address: target?.address, enabled: inHarbor.enabled }, 'webhook policy differs from ours: putting it back');
      const secret = ourSecret ?? newSecret('whs');
      const id = await viaHarbor(() => harbor.ensureWebhookPolicy(project, {
        name: WEBHOOK_POLICY_NAME, address, authHeader: secret, eventTypes: WEBHOOK_EVENTS,
      }));
      await this.webhooks.save(project, id, sha256(secret));
      this.ctx.log.info({ project, policy: id }, 'webhook policy configured');
    }
  }

  /** Removes our policy from projects no managed group replicates from any more. */
  async releaseProjects(projects: readonly string[], stillUsed: ReadonlySet<string>): Promise<void> {
    const harbor = requireHarbor(this.ctx);
    for (const project of projects.filter((p) => !stillUsed.has(p))) {
      const known = await this.webhooks.get(project);
      if (!known) continue;
      await viaHarbor(() => harbor.deleteWebhookPolicy(project, known.harborId));
      await this.webhooks.remove(project);
    }
  }

  /** The project a notification's Authorization belongs to; 401 when it is no policy's. */
  async authenticate(authorization: string | undefined): Promise<string> {
    const project = authorization ? await this.webhooks.projectOf(sha256(authorization)) : undefined;
    if (!project) throw new ApiError('UNAUTHORIZED', 'the Authorization header is not the secret of any webhook policy this service configured');
    return project;
  }

  /**
   * Acts on a notification from `project`'s policy, durably (the outbox tables) before the
   * answer: a replication by a group's rule queues that group's build at once; a deleted
   * artifact queues a reconcile of the groups listing it. Other events are ignored.
   */
  async receive(project: string, n: HarborNotification): Promise<NotificationOutcome> {
    if (n.type === 'REPLICATION') {
      const groups = await this.replicatedGroups(project, n);
      await this.groups.markDirty(groups);
      return { event: n.type, groups };
    }
    if (n.type === 'DELETE_ARTIFACT') {
      const repository = n.event_data?.repository?.repo_full_name;
      const digests = (n.event_data?.resources ?? []).flatMap((r) => (r.digest ? [r.digest] : []));
      if (!repository || repository.split('/')[0] !== project) {
        throw new ApiError('BAD_REQUEST', `event_data.repository.repo_full_name must name a repository of project ${project}`, 'event_data.repository.repo_full_name');
      }
      const groups = new Set<string>();
      for (const digest of digests) {
        const listing = await this.groups.listing(repository, digest);
        if (listing.length === 0) continue;
        listing.forEach((g) => groups.add(g));
        await this.jobs.enqueue('reconcile-deleted', { repository, digest });
      }
      return { event: n.type, groups: [...groups].sort() };
    }
    return { event: n.type, groups: [] };
  }

  /**
   * The groups a replication notification is about. Harbor 2.13 and later name the execution:
   * its rule is looked up and is the answer. Otherwise (an older Harbor, or Harbor cannot be
   * asked right now) the payload's namespaces are matched with the groups replicating from the
   * project: src_resource.namespace is the rule's destination namespace in Harbor's payload,
   * dest_resource.namespace is looked at too, should Harbor ever swap them back; a group counts
   * only if we hold a rule for it. When neither tells, every group replicating from the
   * project is built (a build of an unchanged group publishes nothing, so building too many
   * costs little and loses nothing).
   */
  private async replicatedGroups(project: string, n: HarborNotification): Promise<string[]> {
    const replication = n.event_data?.replication;
    const executionId = replication?.execution_id;
    if (this.ctx.harbor && typeof executionId === 'number') {
      try {
        const execution = await this.ctx.harbor.getExecution(executionId);
        if (execution?.policy_id !== undefined) {
          const group = await this.groups.byPolicyId(execution.policy_id);
          return group ? [group.name] : [];
        }
      } catch (err) {
        this.ctx.log.warn({ err: (err as Error).message, executionId }, 'cannot look up the replication execution; telling the group from the payload');
      }
    }
    const all = await this.groups.byProject(project);
    for (const namespace of [replication?.src_resource?.namespace, replication?.dest_resource?.namespace]) {
      const group = all.find((g) => g.name === namespace && g.policyId !== null);
      if (group) return [group.name];
    }
    return all.map((g) => g.name);
  }
}
