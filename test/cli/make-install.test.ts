import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const exec = promisify(execFile);

// The documented install step, `make install PREFIX=…`, into a prefix of the test's own:
// afterwards `satellite` is a command found on PATH, run from any directory.

describe('make install', function () {
  this.timeout(120_000);
  let prefix: string;
  let elsewhere: string;
  before(async () => {
    prefix = await mkdtemp(join(tmpdir(), 'satellite-prefix-'));
    elsewhere = await mkdtemp(join(tmpdir(), 'satellite-cwd-'));
  });
  after(async () => {
    await rm(prefix, { recursive: true, force: true });
    await rm(elsewhere, { recursive: true, force: true });
  });

  it('when run with a PREFIX, then `satellite` is on PATH with PREFIX/bin and works from another directory, and make uninstall removes it', async () => {
    await exec('make', ['--no-print-directory', 'install', `PREFIX=${prefix}`], { env: { ...process.env, MAKEFLAGS: '' } });
    // A PATH with PREFIX/bin and the system's directories only: not this checkout's, nor npm's.
    const env = { ...process.env, PATH: `${join(prefix, 'bin')}:/usr/local/bin:/usr/bin:/bin`, COSIGN_PASSWORD: 'install-test-password' };
    const { stdout: which } = await exec('sh', ['-c', 'command -v satellite'], { env, cwd: elsewhere });
    expect(which.trim()).to.equal(join(prefix, 'bin', 'satellite'));
    const { stdout: usage } = await exec('satellite', ['help'], { env, cwd: elsewhere });
    expect(usage).to.match(/^usage: satellite <command>/);
    await exec('satellite', ['keys', 'generate', '--dir', elsewhere], { env, cwd: elsewhere });
    expect(existsSync(join(elsewhere, 'cosign.key')) && existsSync(join(elsewhere, 'cosign.pub')), 'keys written where asked').to.equal(true);

    await exec('make', ['--no-print-directory', 'uninstall', `PREFIX=${prefix}`], { env: { ...process.env, MAKEFLAGS: '' } });
    expect(existsSync(join(prefix, 'bin', 'satellite'))).to.equal(false);
  });
});
