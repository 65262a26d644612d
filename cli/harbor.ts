import { createHarborClient, HarborSetup } from '@harbor-api/client';
import { ConfigError, requireEndpointPassword, type Config } from '../core/config.js';
import { isRepositoryName } from '../core/oci/names.js';

const out = (s: string) => process.stdout.write(`${s}\n`);

function harbor(config: Config): HarborSetup {
  const missing = [
    config.harborUrl ? undefined : 'HARBOR_URL is not set: the Harbor to configure, e.g. https://harbor.example.com',
    config.harborPassword ? undefined : 'HARBOR_PASSWORD is not set: the password of HARBOR_USERNAME (a Harbor administrator)',
  ].filter((x): x is string => x !== undefined);
  if (missing.length) throw new ConfigError(missing);
  return new HarborSetup(createHarborClient({ url: config.harborUrl!, username: config.harborUsername, password: config.harborPassword! }));
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

/** `satellite harbor robot <name>`: a robot account that may only pull from the state project. */
export async function harborRobot(config: Config, name: string): Promise<number> {
  const robot = await harbor(config).createPullRobot(config.stateProject, name);
  out(`robot account for satellites (pull only, project ${config.stateProject}):`);
  out(`  username: ${robot.name}`);
  out(`  secret:   ${robot.secret}`);
  return 0;
}
