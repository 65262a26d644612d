import { SatelliteStore } from '../core/store/satellite-store.js';
import { ApiError } from './errors.js';
import type { HarborSatelliteHeartbeat } from './fleet.js';
import { HarborSatelliteStates } from './harbor-satellite-states.js';
import type { SatelliteService } from './satellite-service.js';
import { sha256 } from './tokens.js';
import type { HarborContext } from './context.js';

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
