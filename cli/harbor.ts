import { HarborSetup } from '@harbor-api/client';
import { ConfigError, requireEndpointPassword, type Config } from '../core/config.js';
import { isRepositoryName } from '../core/oci/names.js';
import { migrate } from '../core/db/migrate.js';
import { createPool } from '../core/db/pool.js';
import { createLogger } from '../core/logger.js';
import { GroupStore } from '../core/store/group-store.js';
import { harborApi, harborContext } from '../harbor/context.js';
import { RobotService } from '../harbor/robots.js';
import { SATELLITE_NAME } from '../harbor/satellite-service.js';

const out = (s: string) => process.stdout.write(`${s}\n`);

function harbor(config: Config): HarborSetup {
  const missing = [
    config.harborUrl ? undefined : 'HARBOR_URL is not set: the Harbor to configure, e.g. https://harbor.example.com',
    config.harborPassword ? undefined : 'HARBOR_PASSWORD is not set: the password of HARBOR_USERNAME (a Harbor administrator)',
  ].filter((x): x is string => x !== undefined);
  if (missing.length) throw new ConfigError(missing);
  return harborApi(config.harborUrl!, config.harborUsername, config.harborPassword!);
}

/**
 * `satellite harbor setup <group>`: registers this endpoint in Harbor (provider Docker
 * Registry), creates or corrects the group's replication rule (destination namespace = group,
 * No Flattening, event based, deletions replicated) and the private project for states.
 */
export async function harborSetup(config: Config, group: string, filters: string[], replicate: boolean): Promise<number> {
  if (!isRepositoryName(group) || group.includes('/')) {
    process.stderr.write(`${JSON.stringify(group)} is not a valid group name (one lower-case path component)\n`);
    return 2;
  }
  if (!config.endpointUrl) throw new ConfigError(['ENDPOINT_URL is not set: the URL at which Harbor reaches this endpoint']);
  const secret = requireEndpointPassword(config);
  const setup = harbor(config);
  const registryId = await setup.ensureRegistry({ name: 'satellite', url: config.endpointUrl, accessKey: config.endpointUsername, accessSecret: secret, insecure: config.endpointUrl.startsWith('http://') });
  const policyId = await setup.ensureGroupPolicy({
    group,
    registryId,
    filters: filters.map((value) => ({ type: 'name', value })),
  });
  const project = await setup.ensureProject(config.stateProject);
  out(`registry endpoint "satellite" (id ${registryId}) -> ${config.endpointUrl}`);
  out(`replication rule "${setup.policyName(group)}" (id ${policyId}): destination namespace ${group}, No Flattening, event based${filters.length ? `, names ${filters.join(', ')}` : ', all repositories'}`);
  out(`state project "${config.stateProject}": ${project}`);
  if (replicate) out(`replication started (execution ${await setup.startReplication(policyId)})`);
  return 0;
}

/**
 * `satellite harbor robot <name> --group <g>...`: a robot account for satellites of those
 * groups, by the same rule as a registered satellite's (robots.ts): pull on the state project
 * and on the project of every image the groups list now, nothing else. Unlike a registered
 * satellite's, nothing keeps it in step afterwards: run it again, or use `satellites create`.
 */
export async function harborRobot(config: Config, name: string, groups: string[]): Promise<number> {
  if (!SATELLITE_NAME.test(name) || name.length > 63) {
    process.stderr.write(`${JSON.stringify(name)} is not a valid robot name (lower-case letters and digits, with ".", "_" or "-" between them)\n`);
    return 2;
  }
  if (groups.length === 0) {
    process.stderr.write('usage: satellite harbor robot <name> --group <group>...: the groups whose states and images it pulls\n');
    return 2;
  }
  const setup = harbor(config);
  await migrate(config.databaseUrl);
  const pool = createPool(config.databaseUrl, 2);
  try {
    const store = new GroupStore(pool);
    for (const g of groups) {
      if (!(await store.isLive(g))) {
        process.stderr.write(`no group ${g}: create it first (satellite groups create ${g} --filter …)\n`);
        return 2;
      }
    }
    const ctx = await harborContext(config, pool, createLogger('warn'));
    const robots = new RobotService(ctx);
    const projects = await robots.neededProjects(groups);
    const names = [...new Set(groups)].sort().join(', ');
    const robot = await setup.createRobot(name, `Satellites of ${names}: pull their states and images (satellite harbor robot)`,
      HarborSetup.projectPermissions(projects, robots.access()));
    out(`robot account for satellites of ${names} (pull only, projects ${projects.join(', ')}):`);
    out(`  username: ${robot.name}`);
    out(`  secret:   ${robot.secret}`);
    out('it is not kept in step when the groups list images from new projects; satellites registered with `satellites create` are');
    return 0;
  } finally {
    await pool.end();
  }
}
