import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { promisify } from 'node:util';

// Runs a built image's entrypoint on this machine, where no container engine can start a
// container (runc and crun fail to set rlimits here): with `buildah run --isolation chroot`
// (host network), or, for a read-only root file system, which buildah run cannot give, in a
// mount namespace of our own that chroots into the container's root mounted read-only.
// Either way the image's own config decides the command, user, working directory and
// environment.

const exec = promisify(execFile);

export interface ImageConfig {
  entrypoint: string[];
  cmd: string[];
  env: Record<string, string>;
  user: string;
  workingDir: string;
  labels: Record<string, string>;
  stopSignal: string | undefined;
  /** The HEALTHCHECK's test, e.g. ["CMD", "node", "-e", "…"] (docker format only). */
  healthcheck: string[] | undefined;
  exposedPorts: string[];
}

export async function buildah(args: string[]): Promise<string> {
  const { stdout } = await exec('buildah', args, { maxBuffer: 64 * 1024 * 1024 });
  return stdout.trim();
}

export async function inspectImage(ref: string): Promise<ImageConfig> {
  const info = JSON.parse(await buildah(['inspect', '--type', 'image', ref]));
  const oci = info.OCIv1.config ?? {};
  const docker = info.Docker?.config ?? {};
  return {
    entrypoint: oci.Entrypoint ?? [],
    cmd: oci.Cmd ?? [],
    env: Object.fromEntries((oci.Env ?? []).map((e: string) => [e.slice(0, e.indexOf('=')), e.slice(e.indexOf('=') + 1)])),
    user: oci.User ?? '',
    workingDir: oci.WorkingDir ?? '/',
    labels: oci.Labels ?? {},
    stopSignal: oci.StopSignal ?? docker.StopSignal,
    healthcheck: docker.Healthcheck?.Test,
    exposedPorts: Object.keys(oci.ExposedPorts ?? {}),
  };
}

export interface Mount {
  source: string;
  target: string;
  readOnly?: boolean;
}

export interface RunOptions {
  env?: Record<string, string>;
  mounts?: Mount[];
  /** The root file system read-only, a fresh tmpfs on /tmp: what readOnlyRootFilesystem gives. */
  readOnlyRoot?: boolean;
}

export interface RunningContainer {
  /** The working container (buildah from) the process runs in. */
  name: string;
  output(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Sends a signal to the image's entrypoint process itself (buildah run does not pass signals on). */
  signal(sig: NodeJS.Signals): void;
  /** Runs another command in the same container and root (e.g. the health check); its exit code. */
  exec(command: string[], env?: Record<string, string>): Promise<number>;
  /** Kills what still runs and removes the working container. */
  remove(): Promise<void>;
}

/** Starts `ref`'s entrypoint with `args` in place of its CMD. */
export async function runImage(ref: string, args: string[] | undefined, opts: RunOptions = {}): Promise<RunningContainer> {
  const config = await inspectImage(ref);
  const name = `satellite-test-${randomBytes(4).toString('hex')}`;
  await buildah(['from', '--name', name, ref]);
  const root = opts.readOnlyRoot ? await buildah(['mount', name]) : undefined;
  const command = [...config.entrypoint, ...(args ?? config.cmd)];
  const start = (cmd: string[], env: Record<string, string>): ChildProcess =>
    root === undefined
      ? spawn('buildah', ['run', '--isolation', 'chroot', '--network', 'host',
        ...Object.entries(env).flatMap(([k, v]) => ['--env', `${k}=${v}`]),
        ...(opts.mounts ?? []).flatMap((m) => ['--volume', `${m.source}:${m.target}${m.readOnly ? ':ro' : ''}`]),
        name, '--', ...cmd], { stdio: ['ignore', 'pipe', 'pipe'] })
      : spawn('unshare', ['-m', '--propagation', 'private', 'sh', '-c', READ_ONLY_ROOT, 'read-only-root', root, config.user || '0:0', config.workingDir,
        ...(opts.mounts ?? []).map((m) => `${m.source}|${m.target}|${m.readOnly ? 'ro' : 'rw'}`), '--',
        ...Object.entries({ ...config.env, ...env }).map(([k, v]) => `${k}=${v}`), ...cmd],
      { stdio: ['ignore', 'pipe', 'pipe'] });

  const env = opts.env ?? {};
  const child = start(command, env);
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal })));
  const others: ChildProcess[] = [];
  return {
    name,
    output: () => out,
    exited,
    signal(sig) {
      // With unshare, sh and chroot exec one another: the spawned pid is the entrypoint's.
      const pid = root === undefined ? entrypointPid(child.pid!, command[0]!) : child.pid!;
      process.kill(pid, sig);
    },
    async exec(cmd, extraEnv = {}) {
      const c = start(cmd, { ...env, ...extraEnv });
      others.push(c);
      c.stdout!.resume();
      c.stderr!.resume();
      return new Promise((resolve) => c.on('exit', (code) => resolve(code ?? 128)));
    },
    async remove() {
      for (const c of [child, ...others]) {
        if (c.exitCode === null && c.signalCode === null) {
          // buildah run killed leaves its chroot-exec and the entrypoint running: they go first.
          for (const pid of descendants(c.pid!)) {
            try {
              process.kill(pid, 'SIGKILL');
            } catch {
              // gone meanwhile
            }
          }
          const gone = new Promise((r) => c.once('exit', r));
          c.kill('SIGKILL');
          await gone;
        }
      }
      if (root !== undefined) await buildah(['umount', name]).catch(() => '');
      await buildah(['rm', name]).catch(() => '');
    },
  };
}

// $1 root, $2 uid:gid, $3 working directory, then one "source|target|rw-or-ro" per volume,
// "--", NAME=value…, and the command. The root is bind-mounted onto itself and made
// read-only; /proc, /dev and a tmpfs /tmp are mounted as a runtime would, and each volume
// (its mount point made first, as a runtime does). chroot and env exec the command, so it
// keeps the pid this script started with.
const READ_ONLY_ROOT = `
set -e
root=$1 user=$2 workdir=$3
shift 3
volumes=""
while [ "$1" != "--" ]; do volumes="$volumes $1"; shift; done
shift
for v in $volumes; do mkdir -p "$root$(echo "$v" | cut -d'|' -f2)"; done
mount --bind "$root" "$root"
mount -o remount,bind,ro "$root"
mount -t proc proc "$root/proc"
mount --rbind /dev "$root/dev"
mount -t tmpfs -o mode=1777 tmpfs "$root/tmp"
for v in $volumes; do
  src=$(echo "$v" | cut -d'|' -f1) dst=$(echo "$v" | cut -d'|' -f2) mode=$(echo "$v" | cut -d'|' -f3)
  mount --bind "$src" "$root$dst"
  [ "$mode" = rw ] || mount -o remount,bind,ro "$root$dst"
done
exec chroot --userspec="$user" "$root" /usr/bin/env -i -C "$workdir" "$@"
`;

/** Every process under `parent`, nearest first, from /proc. */
function descendants(parent: number): number[] {
  const children = new Map<number, number[]>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      children.set(ppid, [...(children.get(ppid) ?? []), Number(entry)]);
    } catch {
      // gone meanwhile
    }
  }
  const found: number[] = [];
  const queue = [...(children.get(parent) ?? [])];
  while (queue.length) {
    const pid = queue.shift()!;
    found.push(pid);
    queue.push(...(children.get(pid) ?? []));
  }
  return found;
}

/** The process, under `parent`, whose command is `program` (the image's entrypoint under buildah run). */
function entrypointPid(parent: number, program: string): number {
  for (const pid of descendants(parent)) {
    try {
      const argv0 = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')[0]!;
      if (argv0 === program || argv0.endsWith(`/${program}`)) return pid;
    } catch {
      // gone meanwhile
    }
  }
  throw new Error(`no ${program} process under ${parent}`);
}
