import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { isDigest } from '../../core/oci/digest.js';
import { AgentStateFiles } from '../store/state-files.js';
import { AgentConfigError, configPath, DEFAULT_CONFIG_PATH, loadAgentConfig, type AgentConfig } from '../config/config.js';
import { configFromRegistration, register, RegistrationError, writeConfig } from './register.js';
import { agentLogger, startAgent } from '../run.js';
import { groupStatus, statusTable } from './status.js';
import { runningAgent, StoreLockedError } from '../store/lock.js';
import { AGENT_VERSION } from '../version.js';
import { CorruptContentError } from '../store/content-store.js';
import { normalizePlatform, parsePlatform } from '../sync/platform.js';
import type { Platform } from '../../core/oci/manifest.js';

export const AGENT_USAGE = `usage: satellite agent [command] [options]

commands:
  run [--once]                 sync every group's signed state and serve its images locally
                               (the default command); --once: one sync, then exit
  status [--json]              what is applied, per group: version, digest, when checked and
                               applied, images present / pending / failed, with reasons; while
                               the running agent pulls, each image's bytes done / total
  pin <group> <version|digest> apply an earlier signed state of a group and hold it
  unpin <group>                follow the group's latest state again
  register --url <service> --token <token> [--out agent.yaml] [--store D] [--listen H:P]
                               [--platform os/arch]... [--ca-file PEM]   trade a one-time token
                               for this device's credential and write its configuration
                               (--ca-file: CAs trusted besides the system's, for the
                               registration and, as caFile, for everything after)
  import <site.tar>            apply an air-gapped site's archive (satellite export) as a sync
                               would: signature, replay rule, every blob by digest; resumable
  export <group> -o <site.tar> [--platform os/arch]...
                               write that archive from this agent's store (a site gateway's):
                               the applied signed state and its images for the platforms
                               (default: the agent's own); fails naming a blob it lacks

options:
  --config <file>              the YAML configuration (or SATELLITE_AGENT_CONFIG; default
                               /etc/satellite/agent.yaml when it exists)

exit status of run --once: 0 every group applied with all its images; 1 a state was refused,
images failed or the store is full; 3 the registry could not be reached; 2 a configuration or usage error;
4 (run, pin, import) another agent is running on the store.`;

const out = (s: string) => process.stdout.write(`${s}\n`);
const err = (s: string) => process.stderr.write(`${s}\n`);

/** Runs an agent command; resolves with the exit code, or never for a long-running `run`. */
export async function agentCli(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        config: { type: 'string' },
        once: { type: 'boolean', default: false },
        json: { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
        url: { type: 'string' },
        token: { type: 'string' },
        out: { type: 'string', default: 'agent.yaml' },
        store: { type: 'string' },
        listen: { type: 'string' },
        platform: { type: 'string', multiple: true, default: [] },
        'ca-file': { type: 'string' },
        version: { type: 'boolean', default: false },
        output: { type: 'string', short: 'o' },
      },
    });
  } catch (e) {
    err(`satellite agent: ${(e as Error).message}\n\n${AGENT_USAGE}`);
    return 2;
  }
  const { positionals, values } = parsed;
  if (values.help) {
    out(AGENT_USAGE);
    return 0;
  }
  if (values.version) {
    out(AGENT_VERSION);
    return 0;
  }
  const [command = 'run', ...rest] = positionals;
  const load = (): AgentConfig => {
    const path = configPath(values.config);
    try {
      return loadAgentConfig(path);
    } catch (e) {
      // No file anywhere, and the environment alone is not a configuration: say where we looked.
      if (path === undefined && e instanceof AgentConfigError) {
        throw new AgentConfigError([`no configuration file: ${DEFAULT_CONFIG_PATH} does not exist and neither --config nor SATELLITE_AGENT_CONFIG names one`, ...e.problems]);
      }
      throw e;
    }
  };
  try {
    switch (command) {
      case 'run':
        return await run(load(), values.once!);
      case 'status':
        return await status(load(), values.json!);
      case 'pin':
      case 'unpin':
        return await pin(load(), command, rest);
      case 'register':
        return await doRegister(values);
      case 'import':
        if (rest.length !== 1) {
          err('usage: satellite agent import <site.tar> [--config agent.yaml]');
          return 2;
        }
        return await doImport(load(), rest[0]!);
      case 'export':
        if (rest.length !== 1 || !values.output) {
          err('usage: satellite agent export <group> -o <site.tar> [--platform os/arch[/variant]]... [--config agent.yaml]');
          return 2;
        }
        return await doExport(load(), rest[0]!, values.output, values.platform!);
      default:
        err(`satellite agent: unknown command ${JSON.stringify(command)}\n\n${AGENT_USAGE}`);
        return 2;
    }
  } catch (e) {
    if (e instanceof AgentConfigError) {
      err(`satellite agent: ${e.message}`);
      return 2;
    }
    if (e instanceof RegistrationError) {
      err(`satellite agent: ${e.message}`);
      return 1;
    }
    if (e instanceof StoreLockedError) {
      err(`satellite agent: ${e.message}`);
      return 4;
    }
    throw e;
  }
}

async function run(config: AgentConfig, once: boolean): Promise<number> {
  const log = agentLogger(config);
  const agent = await startAgent(config, log, { once });
  if (once) {
    try {
      const summary = await agent.firstSync;
      const outcomes = Object.values(summary.groups);
      if (outcomes.some((o) => o === 'refused' || o === 'missing' || o === 'full') || summary.failedImages > 0 || summary.storeFull) return 1;
      if (outcomes.some((o) => o === 'unreachable')) return 3;
      return 0;
    } finally {
      await agent.stop();
    }
  }
  agent.firstSync.catch(() => undefined);
  const stop = (signal: string) => {
    log.info({ signal }, 'stopping');
    void agent.stop().then(() => process.exit(0), () => process.exit(1));
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
  return new Promise<number>(() => undefined);
}

async function status(config: AgentConfig, json: boolean): Promise<number> {
  const files = new AgentStateFiles(config.store);
  const doc = await files.load(AGENT_VERSION);
  const pins = await files.pins();
  const groups = config.groups.map((g) => groupStatus(g.name, doc.groups[g.name], pins[g.name] !== undefined));
  const pid = (await runningAgent(config.store)) ?? null;
  // Progress is the running agent's: a file left by one that was killed means nothing.
  const pulling = pid === null ? [] : ((await files.progress())?.images ?? []);
  if (json) out(JSON.stringify({ agentVersion: doc.agentVersion, startedAt: doc.startedAt ?? null, running: pid === null ? null : { pid }, store: { full: doc.store?.full ?? null }, runtime: doc.runtime ?? {}, upstreams: doc.upstreams ?? {}, groups, pulling }, null, 2));
  else out(statusTable(doc, groups, pid, pulling));
  return groups.every((g) => g.version !== null && !g.error && !g.staleSince) && !doc.store?.full ? 0 : 1;
}

async function pin(config: AgentConfig, command: 'pin' | 'unpin', rest: string[]): Promise<number> {
  const [group, ref] = rest;
  if (!group || (command === 'pin' ? rest.length !== 2 : rest.length !== 1)) {
    err(command === 'pin' ? 'usage: satellite agent pin <group> <version|digest>' : 'usage: satellite agent unpin <group>');
    return 2;
  }
  if (!config.groups.some((g) => g.name === group)) {
    err(`satellite agent: group ${JSON.stringify(group)} is not in the configuration`);
    return 2;
  }
  const files = new AgentStateFiles(config.store);
  await files.init();
  const pins = await files.pins();
  if (command === 'pin') {
    const version = /^v?(\d+)$/.exec(ref!)?.[1];
    if (version === undefined && !isDigest(ref!)) {
      err(`satellite agent: ${JSON.stringify(ref)} is neither a version (3 or v3) nor a digest`);
      return 2;
    }
    pins[group] = version !== undefined ? { version: Number(version) } : { digest: ref! };
  } else {
    delete pins[group];
  }
  await files.savePins(pins);
  const pid = await runningAgent(config.store);
  if (pid !== undefined) {
    process.kill(pid, 'SIGHUP');
    out(`${command === 'pin' ? `group ${group} pinned to ${ref}` : `group ${group} unpinned`}; the running agent (pid ${pid}) syncs now`);
    return 0;
  }
  const agent = await startAgent(config, agentLogger(config), { once: true, only: group });
  try {
    const summary = await agent.firstSync;
    const outcome = summary.groups[group];
    out(`${command === 'pin' ? `group ${group} pinned to ${ref}` : `group ${group} unpinned`}: ${outcome}`);
    return outcome === 'applied' || outcome === 'unchanged' || outcome === 'retried' ? 0 : 1;
  } finally {
    await agent.stop();
  }
}

async function doRegister(values: { url?: string; token?: string; out?: string; store?: string; listen?: string; platform?: string[]; 'ca-file'?: string }): Promise<number> {
  if (!values.url || !values.token) {
    err('usage: satellite agent register --url <service> --token <token> [--out agent.yaml]');
    return 2;
  }
  let ca: { path: string; pem: string } | undefined;
  if (values['ca-file'] !== undefined) {
    const path = resolve(values['ca-file']);
    try {
      const pem = readFileSync(path, 'utf8');
      new X509Certificate(pem); // the first certificate of the bundle parses
      ca = { path, pem };
    } catch (e) {
      err(`satellite agent register: --ca-file ${values['ca-file']} is not a readable PEM certificate bundle: ${(e as Error).message}`);
      return 2;
    }
  }
  const r = await register(values.url, values.token, ca?.pem);
  await writeConfig(values.out!, configFromRegistration(r, { store: values.store, listen: values.listen, platforms: values.platform, caFile: ca?.path }));
  out(`registered as ${r.name}: groups ${r.groups.map((g) => g.name).join(', ')}; configuration written to ${values.out}`);
  return 0;
}

/** `satellite agent import site.tar`: exit 0 applied (or already), 1 refused, corrupt or incomplete. */
async function doImport(config: AgentConfig, path: string): Promise<number> {
  // Loaded for this command only: a running agent never needs the archive reader (tar-stream).
  const { importArchive, ImportError } = await import('./import.js');
  try {
    const r = await importArchive(config, path);
    out(`${path}: group ${r.group} version ${r.version ?? '?'} ${r.outcome} (${r.ingested} blobs stored, ${r.skipped} already held${r.resumed ? `, ${r.resumed} bytes resumed` : ''})`);
    for (const f of r.failed) err(`  not applied: ${f.image}: ${f.reason}`);
    return r.failed.length ? 1 : 0;
  } catch (e) {
    if (e instanceof ImportError) {
      err(`satellite agent import: ${e.message}`);
      return 1;
    }
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
      err(`satellite agent import: ${(e as Error).message}`);
      return 2;
    }
    throw e;
  }
}

/** `satellite agent export <group> -o site.tar`: exit 0 written, 1 the store lacks (or holds a corrupt) blob, 2 usage. */
async function doExport(config: AgentConfig, group: string, output: string, platformTexts: string[]): Promise<number> {
  const platforms: Platform[] = [];
  for (const text of platformTexts) {
    const p = parsePlatform(text);
    if (!p) {
      err(`satellite agent export: --platform ${JSON.stringify(text)} is not os/architecture[/variant]`);
      return 2;
    }
    platforms.push(normalizePlatform(p));
  }
  if (!config.groups.some((g) => g.name === group)) {
    err(`satellite agent export: group ${JSON.stringify(group)} is not in the configuration`);
    return 2;
  }
  // Loaded only for this command, as import's is (its archive writer is not for a running agent).
  const { AgentExportError, exportFromStore } = await import('./export.js');
  const { ArchiveContentError } = await import('../../core/oci/layout-archive.js');
  try {
    const s = await exportFromStore(config, group, platforms, output);
    out(`${output}: group ${group} version ${s.version} (${s.stateDigest}), ${s.images} images, ${s.blobs} blobs, ${s.bytes} bytes`);
    return 0;
  } catch (e) {
    // CorruptContentError: a stored blob no longer matches its digest (it is removed; the next sync fetches it again).
    if (e instanceof AgentExportError || e instanceof ArchiveContentError || e instanceof CorruptContentError) {
      err(`satellite agent export: ${e.message}`);
      return 1;
    }
    throw e;
  }
}
