import { expect } from 'chai';
import { execa } from 'execa';
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

// The satellite-agent Debian package (make deb → deploy/debian/build.sh), built here with
// dpkg-deb, read back with dpkg-deb --info/--contents, its unit checked by systemd-analyze,
// and installed into a throwaway root (dpkg --root, maintainer scripts chrootless with
// DPKG_ROOT): this machine's /etc, users and services are never touched.

const which = async (bin: string) => (await execa('sh', ['-c', `command -v ${bin}`], { reject: false })).exitCode === 0;

describe('the satellite-agent Debian package', function () {
  this.timeout(120_000);
  let dir: string;
  let deb: string;
  before(async function () {
    for (const bin of ['dpkg-deb', 'dpkg', 'systemd-analyze', 'systemd-sysusers']) {
      if (!(await which(bin))) {
        this.test!.parent!.title += ` [skipped: ${bin} not installed]`;
        this.skip();
      }
    }
    dir = await mkdtemp(join(tmpdir(), 'satellite-deb-'));
    deb = (await execa('deploy/debian/build.sh', [join(dir, 'out')])).stdout.trim();
  });
  after(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('when built, then dpkg-deb shows the bundle, the command, the unit, the sysusers entry, agent.yaml as a conffile and Depends nodejs (>= 20)', async () => {
    const info = (await execa('dpkg-deb', ['--info', deb])).stdout;
    expect(info).to.match(/Package: satellite-agent\n/);
    expect(info).to.match(/Architecture: all\n/);
    expect(info).to.match(/Depends: nodejs \(>= 20\), systemd\n/);
    expect((await execa('dpkg-deb', ['--field', deb, 'Version'])).stdout).to.equal(JSON.parse(await readFile('package.json', 'utf8')).version);
    const conffiles = (await execa('sh', ['-c', 'dpkg-deb --ctrl-tarfile "$0" | tar -xO ./conffiles', deb])).stdout;
    expect(conffiles.trim()).to.equal('/etc/satellite/agent.yaml');
    const contents = (await execa('dpkg-deb', ['--contents', deb])).stdout;
    for (const path of ['./usr/bin/satellite-agent', './usr/lib/satellite-agent/satellite-agent.cjs', './lib/systemd/system/satellite-agent.service', './usr/lib/sysusers.d/satellite-agent.conf', './etc/satellite/agent.yaml']) {
      expect(contents, path).to.include(` ${path}\n`);
    }
    expect(contents).to.match(/-rwxr-xr-x root\/root +\d+ [\d-]+ [\d:]+ \.\/usr\/bin\/satellite-agent\n/);
  });

  it('when installed into a throwaway root, then the user exists, the command runs, the unconfigured agent is not started, systemd-analyze accepts the unit, and dpkg -r removes the package but leaves the store', async () => {
    const root = join(dir, 'root');
    await mkdir(join(root, 'var/lib/dpkg/info'), { recursive: true });
    await mkdir(join(root, 'var/lib/dpkg/updates'), { recursive: true });
    await writeFile(join(root, 'var/lib/dpkg/status'), '');
    // What an earlier run of the agent left in its store.
    await mkdir(join(root, 'var/lib/satellite-agent/blobs'), { recursive: true });
    await writeFile(join(root, 'var/lib/satellite-agent/agent-state.json'), '{"groups":{}}');
    // nodejs and systemd are this machine's, not the empty root's: --force-depends.
    const dpkg = (args: string[]) => execa('dpkg', [`--root=${root}`, '--force-script-chrootless', '--force-depends', '--log=/dev/null', ...args], { reject: false, all: true });

    const installed = await dpkg(['-i', deb]);
    expect(installed.exitCode, installed.all).to.equal(0);
    expect(installed.all, 'postinst says why nothing started').to.include('satellite-agent: not started: fill in /etc/satellite/agent.yaml');
    expect(await readFile(join(root, 'etc/passwd'), 'utf8')).to.match(/^satellite-agent:x:\d+:\d+:Satellite for Harbor edge agent:\/var\/lib\/satellite-agent:/m);
    expect((await stat(join(root, 'etc/satellite/agent.yaml'))).mode & 0o777, 'the configuration (which will hold the credential) is root\'s only').to.equal(0o600);

    const cmd = join(root, 'usr/bin/satellite-agent');
    expect((await execa(cmd, ['--version'])).stdout).to.equal(JSON.parse(await readFile('package.json', 'utf8')).version);
    const unconfigured = await execa(cmd, ['status', '--config', join(root, 'etc/satellite/agent.yaml')], { reject: false, all: true });
    expect(unconfigured.exitCode, 'the shipped template is not a configuration').to.equal(2);
    expect(unconfigured.all).to.include('registry: required');

    // The unit as installed, with ExecStart pointing into the throwaway root (systemd-analyze
    // checks that the command exists on this machine).
    const unit = (await readFile(join(root, 'lib/systemd/system/satellite-agent.service'), 'utf8')).replace('ExecStart=/usr/bin/satellite-agent', `ExecStart=${cmd}`);
    for (const line of ['LoadCredential=agent.yaml:/etc/satellite/agent.yaml\n', `ExecStart=${cmd} run --config %d/agent.yaml\n`, 'User=satellite-agent', 'StateDirectory=satellite-agent', 'ProtectSystem=strict', 'ReadWritePaths=-/etc/containerd/certs.d -/etc/containers/registries.conf.d', 'NoNewPrivileges=yes', 'CapabilityBoundingSet=\n']) {
      expect(unit, line).to.include(line);
    }
    await mkdir(join(dir, 'units'), { recursive: true });
    await writeFile(join(dir, 'units', 'satellite-agent.service'), unit);
    const verify = await execa('systemd-analyze', ['verify', '--man=no', join(dir, 'units', 'satellite-agent.service')], { reject: false, all: true });
    expect(verify.exitCode, verify.all).to.equal(0);
    expect(verify.all, 'no warning about the unit').to.not.match(/satellite-agent\.service:/);

    const removed = await dpkg(['-r', 'satellite-agent']);
    expect(removed.exitCode, removed.all).to.equal(0);
    expect(await stat(cmd).then(() => 'present', () => 'gone')).to.equal('gone');
    expect(await readFile(join(root, 'var/lib/satellite-agent/agent-state.json'), 'utf8'), 'the store is left').to.equal('{"groups":{}}');
    expect(await stat(join(root, 'etc/satellite/agent.yaml')).then(() => 'kept', () => 'gone'), 'a conffile stays until purge').to.equal('kept');
  });
});
