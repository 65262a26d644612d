import { HarborSetup, type RobotAccess } from '@harbor-api/client';
import { GroupStore } from '../core/store/group-store.js';
import { SatelliteStore, type RobotRecord, type SatelliteRecord } from '../core/store/satellite-store.js';
import { requireHarbor, type HarborContext } from './context.js';
import { viaHarbor } from './errors.js';
import { sha256 } from './tokens.js';

// Each satellite pulls with a Harbor robot account of its own, with least privilege: read
// access to the project holding the states and to the projects of the images its groups
// list now, nothing else. A system-level robot, since it spans several projects; each
// project gets `repository:pull` (what pulling needs) and, for Harbor Satellite's
// satellites, which list artifacts through the API, also `repository:read` and
// `artifact:read` (what their ground control grants): the state layout says which
// (core/state/layouts/).

const sameList = (a: readonly string[], b: readonly string[]) => a.length === b.length && a.every((x, i) => x === b[i]);

export class RobotService {
  private readonly satellites: SatelliteStore;
  private readonly groups: GroupStore;

  constructor(private readonly ctx: HarborContext) {
    this.satellites = new SatelliteStore(ctx.pool);
    this.groups = new GroupStore(ctx.pool);
  }

  access(): readonly RobotAccess[] {
    return this.ctx.settings.layout.robotAccess;
  }

  /** The robot's name as we create it; Harbor shows it with its prefix (robot$satellite-<name>). */
  robotName(satellite: string): string {
    return `satellite-${satellite}`;
  }

  /** The state project and the projects of every live image the groups list, sorted. */
  async neededProjects(groups: readonly string[]): Promise<string[]> {
    return [...new Set([this.ctx.settings.stateProject, ...(await this.groups.imageProjects(groups))])].sort();
  }

  /**
   * A robot for the satellite with a new secret: created, or, when one of that name is left
   * from an earlier registration, given the right permissions and a new secret. The secret
   * is returned once; only its hash goes into `robot`.
   */
  async issue(satellite: SatelliteRecord): Promise<{ robot: RobotRecord; secret: string }> {
    const harbor = requireHarbor(this.ctx);
    const projects = await this.neededProjects(satellite.groups);
    const permissions = HarborSetup.projectPermissions(projects, this.access());
    const name = this.robotName(satellite.name);
    const description = `Satellite ${satellite.name}: pulls its group states and images (managed by Satellite for Harbor)`;
    const existing = await viaHarbor(() => harbor.findRobot(name));
    let robot: { id: number; name: string; secret: string };
    if (existing) {
      await viaHarbor(() => harbor.setRobotPermissions(existing.id, permissions));
      const secret = await viaHarbor(() => harbor.refreshRobotSecret(existing.id));
      robot = { id: existing.id, name: existing.name ?? name, secret };
    } else {
      robot = await viaHarbor(() => harbor.createRobot(name, description, permissions));
    }
    return { robot: { id: robot.id, name: robot.name, secretHash: sha256(robot.secret), projects }, secret: robot.secret };
  }

  /** A new secret for a satellite's robot, chosen by Harbor. */
  async rotate(robotId: number): Promise<{ secret: string; secretHash: Buffer }> {
    const harbor = requireHarbor(this.ctx);
    const secret = await viaHarbor(() => harbor.refreshRobotSecret(robotId));
    return { secret, secretHash: sha256(secret) };
  }

  async remove(robotId: number): Promise<void> {
    const harbor = requireHarbor(this.ctx);
    await viaHarbor(() => harbor.deleteRobot(robotId));
  }

  /**
   * Brings a satellite's robot in step with what its groups list now. Harbor is called only
   * when the projects differ from what it was last told. Holds the satellite's row meanwhile.
   */
  async sync(satellite: string): Promise<'updated' | 'unchanged' | 'not registered'> {
    const outcome = await this.satellites.withLock(satellite, async (s, c) => {
      if (!s.robot) return 'not registered' as const;
      const projects = await this.neededProjects(s.groups);
      if (sameList(projects, s.robot.projects)) return 'unchanged' as const;
      const harbor = requireHarbor(this.ctx);
      await viaHarbor(() => harbor.setRobotPermissions(s.robot!.id, HarborSetup.projectPermissions(projects, this.access())));
      await this.satellites.setRobotProjects(satellite, projects, c);
      this.ctx.log.info({ satellite, projects }, 'robot permissions updated');
      return 'updated' as const;
    });
    return outcome ?? 'not registered';
  }

  /** sync() for every satellite of a group, or of all groups. */
  async syncMany(group?: string): Promise<Record<string, string>> {
    const names = group === undefined ? await this.satellites.registered() : await this.satellites.ofGroup(group);
    const out: Record<string, string> = {};
    for (const name of names) out[name] = await this.sync(name);
    return out;
  }
}
