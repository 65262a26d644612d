import { spawn, type ChildProcess } from 'node:child_process';
import { SERVICE_ENV, SERVICE_NODE_FLAGS } from '../../cli/runtime.js';
export { freePort } from '../../harbor-dev/docker-registry.js';

export interface Spawned {
  child: ChildProcess;
  output: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Starts `satellite <args>` from dist/ and resolves once it logs `readyMessage`. */
export async function spawnSatellite(args: string[], env: Record<string, string>, readyMessage: string): Promise<Spawned> {
  // Started as its launchers start it (cli/runtime.ts).
  const child = spawn(process.execPath, [...SERVICE_NODE_FLAGS, 'dist/cli/main.js', ...args], { env: { ...process.env, ...SERVICE_ENV, LOG_LEVEL: 'info', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  await new Promise<void>((resolve, reject) => {
    const onData = (d: Buffer) => {
      out += d.toString();
      if (out.includes(readyMessage)) resolve();
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    exited.then(({ code }) => reject(new Error(`satellite exited (${code}) before it was ready:\n${out}`)));
    setTimeout(() => reject(new Error(`satellite not ready after 20s:\n${out}`)), 20_000).unref();
  });
  return { child, output: () => out, exited };
}

/** Polls `fn` until it gives something other than undefined, or fails after `timeoutMs`. */
export async function until<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Stops a child still running with SIGTERM and waits for it to exit. */
export async function stopChild(child: ChildProcess | undefined): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  await exited;
}
