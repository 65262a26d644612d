import { createPublicKey } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createHarborClient, HarborSetup } from '@harbor-api/client';
import { isPem, stateRegistryCredentials, type Config } from '../core/config.js';
import { loadPrivateKey, loadPublicKey } from '../core/cosign/keys.js';
import { cappedFetch, HARBOR_API_LIMIT } from '../core/http/bounded-body.js';
import type { Pool } from '../core/db/pool.js';
import type { Logger } from '../core/logger.js';
import { RegistryClient } from '../core/registry/registry-client.js';
import { layoutNamed, type StateLayout } from '../core/state/layouts/index.js';
import { stateRepository } from '../core/state/artifact.js';
import { ApiError } from './errors.js';

/** What the Harbor-facing services need to know, read once from the configuration. */
export interface HarborSettings {
  stateProject: string;
  /** Where states are published (Harbor's registry), with its scheme. */
  stateRegistry: string;
  /** Where satellites pull images from (Harbor's registry), with its scheme. */
  imageRegistry: string;
  /** The URL Harbor and satellites reach this service at (ENDPOINT_URL). */
  endpointUrl: string | undefined;
  endpointUsername: string;
  endpointPassword: string | undefined;
  layout: StateLayout;
  registrationTokenHours: number;
  /** PEM of the key states are verified with; undefined when neither COSIGN_PUBLIC_KEY nor COSIGN_KEY is set. */
  publicKeyPem: string | undefined;
  /** The config document published for Harbor Satellite satellites (raw JSON). */
  harborSatelliteConfig: Buffer | undefined;
}

export interface HarborContext {
  pool: Pool;
  log: Logger;
  /** Undefined when HARBOR_URL / HARBOR_PASSWORD are not set. */
  harbor: HarborSetup | undefined;
  /** The state registry, for publishing satellite and config states. */
  stateRegistry: RegistryClient;
  settings: HarborSettings;
}

/** The public key handed to satellites: COSIGN_PUBLIC_KEY, else derived from COSIGN_KEY. */
async function publicKeyPem(config: Config): Promise<string | undefined> {
  if (config.cosignPublicKey) {
    const pem = await readFile(config.cosignPublicKey, 'utf8');
    loadPublicKey(pem); // refuse a file that is not a public key at start-up
    return pem;
  }
  if (config.cosignKey) {
    const key = loadPrivateKey(isPem(config.cosignKey) ? config.cosignKey : await readFile(config.cosignKey, 'utf8'), config.cosignPassword);
    return createPublicKey(key).export({ type: 'spki', format: 'pem' }).toString();
  }
  return undefined;
}

/**
 * The Harbor API client every side uses (endpoint, worker, CLI): each answer is read under
 * HARBOR_API_LIMIT, so a Harbor (or whatever answers in its name) cannot fill our memory.
 */
export function harborApi(url: string, username: string, password: string): HarborSetup {
  return new HarborSetup(createHarborClient({ url, username, password, fetch: cappedFetch(HARBOR_API_LIMIT, 'a Harbor API answer') }));
}

export async function harborContext(config: Config, pool: Pool, log: Logger): Promise<HarborContext> {
  const harbor = config.harborUrl && config.harborPassword ? harborApi(config.harborUrl, config.harborUsername, config.harborPassword) : undefined;
  return {
    pool,
    log,
    harbor,
    stateRegistry: new RegistryClient(config.stateRegistry, stateRegistryCredentials(config), config.registryTimeoutMs),
    settings: {
      stateProject: config.stateProject,
      stateRegistry: config.stateRegistry,
      imageRegistry: config.imageRegistry,
      endpointUrl: config.endpointUrl,
      endpointUsername: config.endpointUsername,
      endpointPassword: config.endpointPassword,
      layout: layoutNamed(config.stateLayout),
      registrationTokenHours: config.registrationTokenHours,
      publicKeyPem: await publicKeyPem(config),
      harborSatelliteConfig: config.harborSatelliteConfig ? await readFile(config.harborSatelliteConfig) : undefined,
    },
  };
}

export function requireHarbor(ctx: HarborContext): HarborSetup {
  if (!ctx.harbor) throw new ApiError('UNAVAILABLE', 'Harbor is not configured: set HARBOR_URL and HARBOR_PASSWORD (and HARBOR_USERNAME)');
  return ctx.harbor;
}

export function requireEndpointUrl(ctx: HarborContext): string {
  if (!ctx.settings.endpointUrl) throw new ApiError('UNAVAILABLE', 'ENDPOINT_URL is not set: the URL at which Harbor reaches this service');
  return ctx.settings.endpointUrl;
}

/** Where a group's state lives: <project>/group-state/<group>/state. */
export function groupStateRepository(ctx: HarborContext, group: string): string {
  return stateRepository(ctx.settings.stateProject, group);
}
