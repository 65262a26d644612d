import { RegistryRequestError } from '../core/registry/registry-client.js';
import { harborSatelliteLayout } from '../core/state/layouts/harbor-satellite.js';
import { groupStateRepository, type HarborContext } from './context.js';
import { ApiError } from './errors.js';

// The states Harbor Satellite's satellites read besides their groups' (harbor-satellite.ts
// tells where each comes from): a satellite's own state, naming its groups' states and its
// config, and the config document. Apart from harbor-satellite.ts so that satellite-service.ts,
// which republishes a satellite's state when its groups change, and the registration there,
// which calls satellite-service.ts, need not import each other.

/** The config every satellite gets unless HARBOR_SATELLITE_CONFIG names another. */
export const CONFIG_NAME = 'default';

export function defaultSatelliteConfig(groundControlUrl: string | undefined): Buffer {
  return Buffer.from(JSON.stringify({
    app_config: {
      ...(groundControlUrl ? { ground_control_url: groundControlUrl } : {}),
      log_level: 'info',
      state_replication_interval: '@every 00h00m30s',
      register_satellite_interval: '@every 00h00m05s',
      heartbeat_interval: '@every 00h00m30s',
      local_registry: { url: 'http://127.0.0.1:8585' },
    },
    zot_config: {
      distSpecVersion: '1.1.0',
      storage: { rootDirectory: './zot' },
      http: { address: '0.0.0.0', port: '8585' },
      log: { level: 'info' },
    },
  }));
}

/** A fixed creation time: the same document always packs into the same digest, so an unchanged one is not pushed again. */
const EPOCH = new Date(0);

export class HarborSatelliteStates {
  constructor(private readonly ctx: HarborContext) {}

  satelliteRepository(name: string): string {
    return `${this.ctx.settings.stateProject}/satellite-state/${name}/state`;
  }

  configRepository(): string {
    return `${this.ctx.settings.stateProject}/config-state/${CONFIG_NAME}/state`;
  }

  /**
   * A full reference as their satellites take it: the registry URL with its scheme, then
   * repository:latest. The registry is IMAGE_REGISTRY, the one the satellite is given as
   * auth.url and pulls its images from: it reads every state with that same Harbor robot
   * credential, so the states must be named at that registry too. STATE_REGISTRY is where
   * this service pushes them (the same Harbor, perhaps by an address only it reaches), as
   * our own agent's registration names one registry for states and images.
   */
  ref(repository: string): string {
    return `${this.ctx.settings.imageRegistry}/${repository}:latest`;
  }

  /**
   * Pushes a document in the harbor-satellite packaging, unless `latest` already names it;
   * tags it with the unix time and `latest`, as their ground control does.
   */
  private async publish(repository: string, json: Buffer): Promise<string> {
    const client = this.ctx.stateRegistry;
    const pkg = harborSatelliteLayout.package(json, EPOCH);
    try {
      const current = await client.headManifest(repository, 'latest');
      if (current?.digest === pkg.digest) return pkg.digest;
      for (const b of pkg.blobs) await client.pushBlob(repository, b.bytes);
      await client.putManifest(repository, pkg.digest, pkg.manifest, pkg.mediaType);
      await client.putManifest(repository, String(Math.floor(Date.now() / 1000)), pkg.manifest, pkg.mediaType);
      await client.putManifest(repository, 'latest', pkg.manifest, pkg.mediaType);
    } catch (err) {
      if (err instanceof RegistryRequestError) throw new ApiError('UNAVAILABLE', `cannot publish ${repository}: ${err.message}`);
      throw err;
    }
    return pkg.digest;
  }

  async publishConfig(): Promise<string> {
    const doc = this.ctx.settings.harborSatelliteConfig ?? defaultSatelliteConfig(this.ctx.settings.endpointUrl);
    return this.publish(this.configRepository(), doc);
  }

  /** The satellite's own state: the references of its groups' states and of its config. */
  async publishSatellite(name: string, groups: readonly string[]): Promise<string> {
    const doc = { states: groups.map((g) => this.ref(groupStateRepository(this.ctx, g))), config: this.ref(this.configRepository()) };
    return this.publish(this.satelliteRepository(name), Buffer.from(JSON.stringify(doc)));
  }
}
