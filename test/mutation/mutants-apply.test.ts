import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { BLIND_MUTANTS } from './blind-mutants.js';

// The mutation run is too slow for every CI run (about 11 minutes); that each of its
// breakages still applies to the code is not: a change that moves code under a mutant
// turns this red, instead of `npm run mutate` silently testing nothing.
describe('the mutation check', () => {
  it('when the code is as committed, then every mutant of npm run mutate still applies to it', () => {
    const script = fileURLToPath(new URL('./mutate.js', import.meta.url));
    const r = spawnSync(process.execPath, [script, '--check'], { encoding: 'utf8' });
    expect(r.stderr).to.equal('');
    expect(r.status).to.equal(0);
    expect(r.stdout).to.match(/^every one of \d+ mutants applies/);
  });

  it('when the code is as committed, then every blind mutant (issue 22) is checked and still applies', () => {
    const script = fileURLToPath(new URL('./mutate.js', import.meta.url));
    const r = spawnSync(process.execPath, [script, '--check', '--blind'], { encoding: 'utf8' });
    expect(r.stderr).to.equal('');
    expect(r.status).to.equal(0);
    const m = /^every one of (\d+) mutants applies \(0 designer, (\d+) blind\)/.exec(r.stdout);
    expect(m, r.stdout).to.not.equal(null);
    expect(Number(m![2])).to.equal(BLIND_MUTANTS.length);
    expect(BLIND_MUTANTS.length).to.be.greaterThan(0);
  });
});
