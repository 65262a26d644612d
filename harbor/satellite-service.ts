import { AppliedStore } from '../core/store/applied-store.js';
import { GroupStore } from '../core/store/group-store.js';
import { SatelliteExistsError, SatelliteStore, type SatelliteRecord } from '../core/store/satellite-store.js';
import { groupStateRepository, type HarborContext } from './context.js';
import { ApiError, badRequest, notFound } from './errors.js';
import { HarborSatelliteStates } from './harbor-satellite-states.js';
import type { Registration } from '../core/satellite-protocol.js';
import { groupDrift, satelliteStatus, type GroupDrift, type HarborSatelliteHeartbeat, type SatelliteStatus, type StatusReport } from './fleet.js';
import { RobotService } from './robots.js';
import { matches, newSecret, sha256 } from './tokens.js';

// Satellites: created with their groups and a one-time registration token; the token,
// used once, gets the satellite its Harbor robot (least privilege, see robots.ts) and what
// its agent needs; afterwards the robot's credential authenticates its status reports.

/** Harbor's robot name grammar, which a satellite's name becomes part of. */
export const SATELLITE_NAME = /^[a-z0-9]+(?:[._-][a-z0-9]+)*$/;

export type { Registration };

export interface IssuedToken {
  name: string;
  token: string;
  expiresAt: string;
}

export interface SatelliteView {
  name: string;
  groups: string[];
  status: SatelliteStatus;
  robot: { name: string; projects: string[] } | null;
  createdAt: string;
  registeredAt: string | null;
  revokedAt: string | null;
  lastSeen: string | null;
  /** When the agent says its last sync ended (its report's syncedAt); lastSeen is when the report arrived. */
  lastSynced: string | null;
  agentVersion: string | null;
  imageCount: number | null;
  drift: GroupDrift[];
}

const iso = (d: Date | null) => d?.toISOString() ?? null;

export function checkSatelliteName(name: string, field = 'name'): string {
  if (!SATELLITE_NAME.test(name) || name.length > 63) throw badRequest(field, 'a satellite name is lower-case letters and digits, with ".", "_" or "-" between them, at most 63 characters');
  return name;
}

export class SatelliteService {
  readonly robots: RobotService;
  private readonly store: SatelliteStore;
  private readonly groups: GroupStore;

  constructor(private readonly ctx: HarborContext) {
    this.robots = new RobotService(ctx);
    this.store = new SatelliteStore(ctx.pool);
    this.groups = new GroupStore(ctx.pool);
  }

  private async checkGroups(groups: readonly string[], field = 'groups'): Promise<string[]> {
    if (groups.length === 0) throw badRequest(field, 'a satellite belongs to at least one group');
    const unique = [...new Set(groups)];
    for (const [i, g] of unique.entries()) {
      // A deleted group keeps its row (its tombstones are still being served): not joinable.
      if (!(await this.groups.isLive(g))) throw badRequest(`${field}[${i}]`, `no group ${g}: create it first (POST /api/v1/groups)`);
    }
    return unique.sort();
  }

  private token(hours?: number): { token: string; hash: Buffer; expiresAt: Date } {
    const token = newSecret('sat');
    const h = hours ?? this.ctx.settings.registrationTokenHours;
    return { token, hash: sha256(token), expiresAt: new Date(Date.now() + h * 3_600_000) };
  }

  /** A satellite and its one-time registration token (shown once, stored hashed). */
  async create(name: string, groups: readonly string[], expiresInHours?: number): Promise<IssuedToken> {
    checkSatelliteName(name);
    const checked = await this.checkGroups(groups);
    const t = this.token(expiresInHours);
    try {
      await this.store.create(name, checked, t.hash, t.expiresAt);
    } catch (err) {
      if (err instanceof SatelliteExistsError) throw new ApiError('CONFLICT', `satellite ${name} exists; issue it a new token with POST /api/v1/satellites/${name}/token`);
      throw err;
    }
    this.ctx.log.info({ satellite: name, groups: checked, expiresAt: t.expiresAt }, 'satellite created');
    return { name, token: t.token, expiresAt: t.expiresAt.toISOString() };
  }

  /** A new registration token (re-registration); earlier unused ones stop working. */
  async newToken(name: string, expiresInHours?: number): Promise<IssuedToken> {
    const t = this.token(expiresInHours);
    if (!(await this.store.issueToken(name, t.hash, t.expiresAt))) throw notFound(`satellite ${name}`);
    return { name, token: t.token, expiresAt: t.expiresAt.toISOString() };
  }

  /** The answer of a registration, for a robot credential. */
  registration(s: SatelliteRecord, robot: { name: string; secret: string }): Registration {
    if (!this.ctx.settings.publicKeyPem) throw new ApiError('UNAVAILABLE', 'no public key to hand out: set COSIGN_PUBLIC_KEY (or COSIGN_KEY)');
    return {
      name: s.name,
      registry: this.ctx.settings.imageRegistry,
      username: robot.name,
      password: robot.secret,
      publicKey: this.ctx.settings.publicKeyPem,
      // The identity the worker signs with (worker/signer.ts: the state registry's host and
      // the repository), so a device reaching Harbor under another name still verifies.
      groups: s.groups.map((g) => {
        const state = groupStateRepository(this.ctx, g);
        return { name: g, state, identity: `${new URL(this.ctx.settings.stateRegistry).host}/${state}` };
      }),
      statusUrl: this.ctx.settings.endpointUrl ? `${this.ctx.settings.endpointUrl}/api/v1/satellites/${s.name}/status` : null,
    };
  }

  /**
   * Uses a registration token: once, for a live satellite, before it expires. Anything else
   * is 401 and nothing is created (Harbor is not even called). The robot is made inside the
   * token's transaction: if Harbor fails, the token stays usable.
   */
  async register(token: string): Promise<Registration> {
    if (!this.ctx.settings.publicKeyPem) throw new ApiError('UNAVAILABLE', 'no public key to hand out: set COSIGN_PUBLIC_KEY (or COSIGN_KEY)');
    const result = await this.store.claimToken(sha256(token), async (s) => {
      const { robot, secret } = await this.robots.issue(s);
      return { robot, answer: this.registration(s, { name: robot.name, secret }) };
    });
    if (!result.ok) {
      this.ctx.log.warn({ problem: result.problem }, 'registration refused');
      throw new ApiError('UNAUTHORIZED', 'the registration token is unknown, used, expired or revoked');
    }
    this.ctx.log.info({ satellite: result.answer.name, robot: result.answer.username }, 'satellite registered');
    return result.answer;
  }

  /** The fleet, or only the satellites of `group`. */
  async list(group?: string): Promise<SatelliteView[]> {
    const all = (await this.store.list()).filter((s) => group === undefined || s.groups.includes(group));
    const latest = await this.store.latestVersions([...new Set(all.flatMap((s) => s.groups))]);
    return Promise.all(all.map((s) => this.view(s, latest)));
  }

  async get(name: string): Promise<SatelliteView> {
    const s = await this.store.get(name);
    if (!s) throw notFound(`satellite ${name}`);
    return this.view(s, await this.store.latestVersions(s.groups));
  }

  private async view(s: SatelliteRecord, latest: Map<string, { version: number; digest: string | null }>): Promise<SatelliteView> {
    const report = s.report as (StatusReport | HarborSatelliteHeartbeat | null);
    const ours = report && !('kind' in report) ? report : null;
    const drift: GroupDrift[] = [];
    for (const g of s.groups) {
      const reported = ours?.groups.find((x) => x.name === g);
      const byDigest = reported?.digest ? await this.store.versionOfDigest(g, reported.digest) : undefined;
      drift.push(groupDrift(g, latest.get(g), reported, byDigest));
    }
    let status: SatelliteStatus;
    if (s.revokedAt) status = 'revoked';
    else if (!s.robot) status = 'not registered';
    else if (!report) status = 'never reported';
    else if ('kind' in report) status = 'reporting';
    else status = satelliteStatus(drift);
    return {
      name: s.name, groups: s.groups, status, robot: s.robot && { name: s.robot.name, projects: s.robot.projects },
      createdAt: s.createdAt.toISOString(), registeredAt: iso(s.registeredAt), revokedAt: iso(s.revokedAt), lastSeen: iso(s.lastSeen),
      lastSynced: ours?.syncedAt ?? null,
      agentVersion: ours?.agentVersion ?? null,
      imageCount: ours ? ours.groups.reduce((n, g) => n + g.images.present, 0) : (report && 'kind' in report ? report.image_count ?? null : null),
      drift,
    };
  }

  /** Changes a satellite's groups; a registered one's robot follows at once. */
  async setGroups(name: string, groups: readonly string[]): Promise<SatelliteView> {
    const checked = await this.checkGroups(groups);
    const done = await this.store.withLock(name, async (_s, c) => {
      await this.store.setGroups(name, checked, c);
      return true;
    });
    if (done === undefined) throw notFound(`satellite ${name}`);
    await this.robots.sync(name);
    const s = await this.store.get(name);
    if (this.ctx.settings.layout.harborSatellites && s?.robot) {
      await new HarborSatelliteStates(this.ctx).publishSatellite(name, s.groups);
    }
    return this.get(name);
  }

  /** A new robot secret (the old one stops working); answered once, like a registration. */
  async rotate(name: string): Promise<Registration> {
    const answer = await this.store.withLock(name, async (s, c) => {
      if (!s.robot) throw new ApiError('CONFLICT', `satellite ${name} is not registered yet`);
      const { secret, secretHash } = await this.robots.rotate(s.robot.id);
      await this.store.storeRobot(name, { ...s.robot, secretHash }, c);
      return this.registration(s, { name: s.robot.name, secret });
    });
    if (!answer) throw notFound(`satellite ${name}`);
    this.ctx.log.info({ satellite: name }, 'robot secret rotated');
    return answer;
  }

  /** Revokes a satellite: its robot is deleted in Harbor first, then its tokens stop working. */
  async revoke(name: string): Promise<void> {
    const done = await this.store.withLock(name, async (s, c) => {
      if (s.robot) await this.robots.remove(s.robot.id);
      await this.store.revoke(name, c);
      return true;
    });
    if (!done) throw notFound(`satellite ${name}`);
    this.ctx.log.info({ satellite: name }, 'satellite revoked');
  }

  /** The satellite a robot credential (HTTP Basic) belongs to; 401 otherwise. */
  async authenticateRobot(authorization: string | undefined): Promise<string> {
    const m = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(authorization ?? '');
    const given = m ? Buffer.from(m[1]!, 'base64').toString('utf8') : '';
    const colon = given.indexOf(':');
    const found = colon > 0 ? await this.store.byRobot(given.slice(0, colon)) : undefined;
    if (!found || !matches(given.slice(colon + 1), found.secretHash)) {
      throw new ApiError('UNAUTHORIZED', 'a satellite reports with its robot credential (HTTP Basic)');
    }
    return found.name;
  }

  /** Stores what satellite `name` (authenticated as `caller`) runs. */
  async report(name: string, caller: string, report: StatusReport | HarborSatelliteHeartbeat): Promise<void> {
    if (caller !== name) throw new ApiError('FORBIDDEN', `this credential is satellite ${caller}'s, not ${name}'s`);
    await this.store.recordReport(name, report);
    if (!('kind' in report)) await new AppliedStore(this.ctx.pool).record(name, report); // the dashboard's convergence history
  }
}
