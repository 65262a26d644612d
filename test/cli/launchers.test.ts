import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { SERVICE_ENV, SERVICE_NODE_FLAGS } from '../../cli/runtime.js';

const exec = promisify(execFile);

// V8's young generation and glibc's arenas are set when a process starts, so each launcher
// of the service passes cli/runtime.ts's settings itself; the benches measure the worker
// with them. A launcher that drops them runs a worker that peaks higher than the README says.

const assignments = Object.entries(SERVICE_ENV).map(([k, v]) => `${k}=${v}`);

describe('the service\'s launchers', () => {
  it('when the built CLI runs by its #! line, then node starts with the V8 flags and the environment of cli/runtime.ts', async () => {
    const shebang = (await readFile('dist/cli/main.js', 'utf8')).split('\n')[0]!;
    expect(shebang).to.equal(`#!/usr/bin/env -S ${[...assignments, 'node', ...SERVICE_NODE_FLAGS].join(' ')}`);
    // The same line on a probe: what this system's env makes of it.
    const dir = await mkdtemp(join(tmpdir(), 'satellite-shebang-'));
    try {
      const probe = join(dir, 'probe.mjs');
      await writeFile(probe, `${shebang}\nconsole.log(JSON.stringify({ flags: process.execArgv, env: process.env }));\n`);
      await chmod(probe, 0o755);
      const { env: { PATH } } = process;
      const seen = JSON.parse((await exec(probe, [], { env: { PATH } })).stdout) as { flags: string[]; env: Record<string, string> };
      expect(seen.flags).to.deep.equal(SERVICE_NODE_FLAGS);
      expect(seen.env).to.include(SERVICE_ENV);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('when make install writes its wrapper, then the wrapper starts node with them', async () => {
    const prefix = await mkdtemp(join(tmpdir(), 'satellite-prefix-'));
    try {
      await exec('make', ['--no-print-directory', 'install', `PREFIX=${prefix}`], { env: { ...process.env, MAKEFLAGS: '' } });
      const wrapper = await readFile(join(prefix, 'bin', 'satellite'), 'utf8');
      const line = wrapper.split('\n').find((l) => l.includes('dist/cli/main.js'))!;
      expect(line).to.match(new RegExp(`^${assignments.join(' ')} exec "[^"]+" ${SERVICE_NODE_FLAGS.join(' ')} "[^"]+/dist/cli/main\\.js" "\\$@"$`));
    } finally {
      await rm(prefix, { recursive: true, force: true });
    }
  });

  it('when make run starts the service, or the service image does, then with them too', async () => {
    const run = (await readFile('harbor-dev/run.sh', 'utf8')).split('\n').filter((l) => l.includes('dist/cli/main.js serve'));
    expect(run).to.deep.equal([`${[...assignments, 'node', ...SERVICE_NODE_FLAGS].join(' ')} dist/cli/main.js serve &`]);
    const image = await readFile('deploy/images/service.Containerfile', 'utf8');
    const entrypoint = /^ENTRYPOINT (.*)$/m.exec(image)?.[1];
    expect(JSON.parse(entrypoint ?? 'null')).to.deep.equal(['node', ...SERVICE_NODE_FLAGS, '/app/dist/cli/main.js']);
    for (const a of assignments) expect(image).to.match(new RegExp(`^ENV ${a}$`, 'm'));
  });
});
