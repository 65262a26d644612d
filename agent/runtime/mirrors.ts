import { mkdir, readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { parse as parseToml, stringify as stringifyToml } from 'smol-toml';
import { isRegistryHost } from '../../core/oci/names.js';
import { writeAtomic } from '../store/state-files.js';
import type { AgentConfig } from '../config/config.js';

// The runtime side: mirror entries that send the device's pulls from Harbor's registry host
// to the agent's local server.
//   containerd: <certs.d>/<host>/hosts.toml (docs/hosts.md): the local server as a host
//               with the capabilities pullFromMirror allows (below); containerd reads these only when its
//               CRI plugin's registry config_path names the directory, which is checked, not
//               written (the operator's config.toml is theirs).
//   CRI-O, podman, skopeo: a registries.conf.d drop-in (containers-registries.conf(5)): the
//               registry with the local server as a [[registry.mirror]].
// Files are replaced atomically and only when their content changes.

/** "http://127.0.0.1:8585" → what the runtime connects to. */
export interface MirrorTarget {
  url: string;
  /** host:port, as registries.conf names a location. */
  location: string;
  insecure: boolean;
}

/**
 * containerd's capabilities (docs/hosts.md) that mean what `pull-from-mirror` means to
 * containers/image: `pull` fetches manifests and blobs by digest, `resolve` turns a tag into
 * a digest. digest-only grants `pull` alone, so a pull by tag is resolved by the registry, as
 * CRI-O and podman do. containerd has no "tags only": after resolving a tag it fetches the
 * content by digest from the hosts with `pull`, so tag-only has to grant both, and containerd
 * then also sends pulls by digest to the agent (which CRI-O and podman do not).
 */
export function containerdCapabilities(pullFromMirror: AgentConfig['mirrors']['pullFromMirror']): string[] {
  return pullFromMirror === 'digest-only' ? ['pull'] : ['pull', 'resolve'];
}

/** `registry` is an origin such as https://harbor.example.com: pulls the mirror cannot serve go there. */
export function hostsToml(registry: string, mirror: MirrorTarget, pullFromMirror: AgentConfig['mirrors']['pullFromMirror']): string {
  const { host, origin } = new URL(registry);
  return `# Written by satellite agent: pulls of ${host} go to the local satellite first.\n${stringifyToml({
    server: origin,
    host: { [mirror.url]: { capabilities: containerdCapabilities(pullFromMirror) } },
  })}\n`;
}

/** `registries` are origins; a plain-http one is marked insecure, as its own entry would be. */
export function registriesConf(registries: readonly string[], mirror: MirrorTarget, pullFromMirror: AgentConfig['mirrors']['pullFromMirror']): string {
  return `# Written by satellite agent: pulls of these registries go to the local satellite first.\n${stringifyToml({
    registry: registries.map((registry) => new URL(registry)).map(({ host, protocol }) => ({
      prefix: host,
      location: host,
      ...(protocol === 'http:' ? { insecure: true } : {}),
      mirror: [{ location: mirror.location, insecure: mirror.insecure, 'pull-from-mirror': pullFromMirror }],
    })),
  })}\n`;
}

async function replaceIfChanged(path: string, content: string): Promise<boolean> {
  const current = await readFile(path, 'utf8').catch(() => undefined);
  if (current === content) return false;
  await mkdir(dirname(path), { recursive: true });
  await writeAtomic(path, content);
  return true;
}

/** Writes the configured mirror files for `registries` (origins); returns the paths that changed. */
export async function writeMirrorFiles(config: AgentConfig, registries: readonly string[], mirror: MirrorTarget): Promise<string[]> {
  const changed: string[] = [];
  if (registries.length === 0) return changed;
  // Each host names a directory under certs.d (and an entry of registries.conf): only a
  // registry host may (never "..", a slash or an escape), whatever a state said. States are
  // checked when read; this holds even for one that was not.
  const bad = registries.filter((r) => !isRegistryHost(new URL(r).host));
  if (bad.length) throw new Error(`no mirror file written: ${bad.map((r) => JSON.stringify(r)).join(', ')} ${bad.length === 1 ? 'does' : 'do'} not name a registry host`);
  if (config.mirrors.containerd) {
    for (const registry of registries) {
      const path = join(config.mirrors.containerd, new URL(registry).host, 'hosts.toml');
      if (await replaceIfChanged(path, hostsToml(registry, mirror, config.mirrors.pullFromMirror))) changed.push(path);
    }
  }
  if (config.mirrors.registriesConf) {
    const path = config.mirrors.registriesConf;
    if (await replaceIfChanged(path, registriesConf(registries, mirror, config.mirrors.pullFromMirror))) changed.push(path);
  }
  return changed;
}

/**
 * Whether containerd will read the hosts directory: its CRI registry config_path must name
 * it (plugin io.containerd.grpc.v1.cri on 1.x, io.containerd.cri.v1.images on 2.x).
 * Returns undefined when it does, else what to tell the operator.
 */
export async function checkContainerdConfig(configPath: string, certsDir: string): Promise<string | undefined> {
  let text: string;
  try {
    text = await readFile(configPath, 'utf8');
  } catch {
    return `containerd's ${configPath} was not found; if containerd runs here, set config_path = "${certsDir}" under the CRI plugin's registry section so it reads the mirror entries`;
  }
  let doc: Record<string, unknown>;
  try {
    doc = parseToml(text) as Record<string, unknown>;
  } catch (err) {
    return `containerd's ${configPath} is not valid TOML (${(err as Error).message})`;
  }
  const plugins = (doc.plugins ?? {}) as Record<string, { registry?: { config_path?: unknown } }>;
  const v1 = plugins['io.containerd.grpc.v1.cri']?.registry?.config_path;
  const v2 = plugins['io.containerd.cri.v1.images']?.registry?.config_path;
  const paths = [v1, v2].filter((p): p is string => typeof p === 'string').flatMap((p) => p.split(':'));
  if (paths.includes(certsDir)) return undefined;
  const section = doc.version === 3 ? '[plugins."io.containerd.cri.v1.images".registry]' : '[plugins."io.containerd.grpc.v1.cri".registry]';
  return `containerd (${configPath}) does not read ${certsDir}: set config_path = "${certsDir}" under ${section} (replacing any config_path there) and restart containerd`;
}
