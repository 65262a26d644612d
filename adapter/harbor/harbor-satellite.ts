import { RegistryRequestError } from '../../core/registry/registry-client.js';
import { SatelliteStore } from '../../core/store/satellite-store.js';
import { packageState } from '../../worker/state-artifact.js';
import { groupStateRepository, type HarborContext } from './context.js';
import { ApiError } from './errors.js';
import type { HarborSatelliteHeartbeat } from './fleet.js';
import type { SatelliteService } from './satellite-service.js';
import { sha256 } from './tokens.js';

// Compatibility with the satellites of the open-source Harbor Satellite project
// (container-registry/harbor-satellite), STATE_LAYOUT=harbor-satellite. Read from its source:
// - zero-touch registration: GET /satellites/ztr/{token}, no other credential, single use,
//   answers {"auth":{"url","username","password"},"state":"<registry>/<project>/satellite-state/<name>/state:latest"};
//   the satellite takes auth.url as the registry it pulls images from;
// - <project>/satellite-state/<name>/state: {"states":[<group state refs>],"config":"<config state ref>"};
//   <project>/config-state/<config>/state: its config document ({"app_config":…,"zot_config":…});
//   both, like group states, one-layer images whose gzip'd tar layer holds artifacts.json,
//   tagged with a unix timestamp and latest (it reads latest);
// - heartbeats: POST /satellites/sync, HTTP Basic with its robot credential, JSON
//   {name, activity, latest_state_digest, latest_config_digest, image_count, cached_images, …},
//   and anything but 200 is a failure to it.

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
    const pkg = packageState('harbor-satellite', json, EPOCH);
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

export interface ZeroTouchAnswer {
  auth: { url: string; username: string; password: string };
  state: string;
}

/** Zero-touch registration and heartbeats of Harbor Satellite satellites. */
export class HarborSatelliteCompat {
  readonly states: HarborSatelliteStates;

  constructor(private readonly ctx: HarborContext, private readonly satellites: SatelliteService) {
    this.states = new HarborSatelliteStates(ctx);
  }

  /**
   * GET /satellites/ztr/{token}: the token is used once, as for our own agent; the robot is
   * created and the satellite's config and satellite states published before the answer.
   */
  async register(token: string): Promise<ZeroTouchAnswer> {
    const store = new SatelliteStore(this.ctx.pool);
    const result = await store.claimToken(sha256(token), async (s) => {
      const { robot, secret } = await this.satellites.robots.issue(s);
      await this.states.publishConfig();
      await this.states.publishSatellite(s.name, s.groups);
      return {
        robot,
        answer: { auth: { url: this.ctx.settings.imageRegistry, username: robot.name, password: secret }, state: this.states.ref(this.states.satelliteRepository(s.name)) },
      };
    });
    if (!result.ok) throw new ApiError('UNAUTHORIZED', 'the registration token is unknown, used, expired or revoked');
    this.ctx.log.info({ robot: result.answer.auth.username }, 'satellite registered (zero-touch)');
    return result.answer;
  }

  /** POST /satellites/sync: a heartbeat feeding the fleet view. */
  async heartbeat(caller: string, body: Omit<HarborSatelliteHeartbeat, 'kind'> & { name: string }): Promise<void> {
    await this.satellites.report(body.name, caller, { ...body, kind: 'harbor-satellite' });
  }
}
