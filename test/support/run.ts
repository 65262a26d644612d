import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const exec = promisify(execFile);

export async function skopeoCopy(src: string, dest: string, creds: string, extra: string[] = []): Promise<void> {
  await exec('skopeo', [
    '--insecure-policy', 'copy', '--all', '--preserve-digests', '--retry-times', '0',
    '--dest-tls-verify=false', '--dest-creds', creds, ...extra, src, dest,
  ], { maxBuffer: 16 * 1024 * 1024 });
}

/** Runs the built CLI (dist/cli/main.js) with extra environment. */
export async function satellite(args: string[], env: Record<string, string>): Promise<{ stdout: string; stderr: string }> {
  return exec(process.execPath, ['dist/cli/main.js', ...args], { env: { ...process.env, ...env } });
}
