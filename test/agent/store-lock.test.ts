import { expect } from 'chai';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, readFile, stat, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parse } from 'yaml';
import { lockStore, procFacts, runningAgent, selfRecord, StoreLockedError, type ProcessFacts } from '../../agent/store/lock.js';
import { BUNDLE, runBundle, useAgentWorld } from '../support/agent.js';
import { until } from '../support/process.js';

// The store lock after power cuts and kills, with real agent bundles on real stores: a
// lock whose PID now belongs to another live process must not block a start; a running
// agent must.

describe('the edge agent: one agent per store, and a lock that outlives no power cut', function () {
  this.timeout(60_000);
  const world = useAgentWorld();
  const children: ChildProcess[] = [];
  afterEach(() => {
    for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  });

  /** A live process that is not an agent: what a reused PID points at after a reboot. */
  const unrelated = async (): Promise<ChildProcess> => {
    const child = spawn('sleep', ['60'], { stdio: 'ignore' });
    children.push(child);
    await until('the sleep process running', async () => (procFacts.startTime(child.pid!) ? true : undefined));
    return child;
  };
  const storeOf = async (file: string) => {
    const store = parse(await readFile(file, 'utf8')).store as string;
    await mkdir(store, { recursive: true });
    return store;
  };
  /** Starts a long-running agent bundle and resolves once it holds its store. */
  const startBundle = async (file: string, store: string): Promise<ChildProcess> => {
    const child = spawn(process.execPath, [BUNDLE, 'run', '--config', file], { stdio: 'ignore' });
    children.push(child);
    await until('the agent holding its store', async () => ((await runningAgent(store)) === child.pid ? true : undefined));
    return child;
  };

  it('when the lock names a live process from before a reboot (another boot id), then the agent starts', async () => {
    const file = await world.configFile();
    const store = await storeOf(file);
    const other = await unrelated();
    const lock = { pid: other.pid, bootId: '00000000-0000-0000-0000-000000000000', startTime: procFacts.startTime(other.pid!), nonce: 'before-the-power-cut' };
    await writeFile(join(store, 'agent.lock'), JSON.stringify(lock));
    const run = await runBundle(['--once', '--config', file]);
    expect(run.out).to.not.include('another agent');
    expect(run.code, run.out).to.equal(1); // it ran: the group has no state yet, so 'missing'
    expect(other.exitCode, 'the unrelated process is left alone').to.equal(null);
  });

  it('when the lock names a live process of this boot that started after the lock was taken (a reused PID), then the agent starts', async () => {
    const file = await world.configFile();
    const store = await storeOf(file);
    const other = await unrelated();
    const started = Number(procFacts.startTime(other.pid!));
    const lock = { pid: other.pid, bootId: procFacts.bootId(), startTime: String(started - 1), nonce: 'an-agent-long-gone' };
    await writeFile(join(store, 'agent.lock'), JSON.stringify(lock));
    expect(await runningAgent(store), 'status and pin see no agent either').to.equal(undefined);
    const run = await runBundle(['--once', '--config', file]);
    expect(run.out).to.not.include('another agent');
    expect(run.code, run.out).to.equal(1);
  });

  it('when the lock is a bare PID (an older agent\'s) of a live process, written before the last boot, then the agent starts', async () => {
    const file = await world.configFile();
    const store = await storeOf(file);
    const other = await unrelated();
    const path = join(store, 'agent.lock');
    await writeFile(path, String(other.pid));
    const beforeBoot = new Date(Date.now() - (await import('node:os')).uptime() * 1000 - 3_600_000);
    await utimes(path, beforeBoot, beforeBoot);
    const run = await runBundle(['--once', '--config', file]);
    expect(run.out).to.not.include('another agent');
    expect(run.code, run.out).to.equal(1);
  });

  it('when an agent runs on a store, then a second one refuses with exit status 4 naming it, status says it runs, and once it stops the store is free', async () => {
    const file = await world.configFile();
    const store = await storeOf(file);
    const first = await startBundle(file, store);
    const second = await runBundle(['--once', '--config', file]);
    expect(second.code, second.out).to.equal(4);
    expect(second.out).to.include(`another agent (pid ${first.pid}) is running on the store ${store}`);
    const another = await runBundle(['run', '--config', file]);
    expect(another.code, 'nor does a second long-running one start').to.equal(4);
    const status = JSON.parse((await runBundle(['status', '--json', '--config', file])).out);
    expect(status.running).to.deep.equal({ pid: first.pid });
    expect((await runBundle(['status', '--config', file])).out).to.include(`running (pid ${first.pid})`);

    first.kill('SIGTERM');
    await new Promise((r) => first.once('exit', r));
    expect(JSON.parse((await runBundle(['status', '--json', '--config', file])).out).running).to.equal(null);
    expect((await runBundle(['--once', '--config', file])).code).to.equal(1);
  });

  it('when the agent was killed with SIGKILL, then the lock it left does not block the next start', async () => {
    const file = await world.configFile();
    const store = await storeOf(file);
    const first = await startBundle(file, store);
    first.kill('SIGKILL');
    await new Promise((r) => first.once('exit', r));
    expect((await stat(join(store, 'agent.lock'))).isFile(), 'the lock is left behind').to.equal(true);
    const run = await runBundle(['--once', '--config', file]);
    expect(run.out).to.not.include('another agent');
    expect(run.code, run.out).to.equal(1);
  });

  it('when several agents take a stale lock at the same moment, then exactly one gets it', async () => {
    const store = await world.dir();
    const other = await unrelated();
    // Staggered by up to a few milliseconds, so that each step of one taker falls between
    // the steps of the others in some round.
    for (let round = 0; round < 20; round++) {
      await writeFile(join(store, 'agent.lock'), JSON.stringify({ pid: other.pid, bootId: 'another-boot', startTime: '1', nonce: `stale-${round}` }));
      const takers = Array.from({ length: 8 }, (_, i) => new Promise((r) => setTimeout(r, (i * round) % 5)).then(() => lockStore(store, selfRecord())));
      const results = await Promise.allSettled(takers);
      const won = results.filter((r) => r.status === 'fulfilled') as PromiseFulfilledResult<() => Promise<void>>[];
      expect(won.length, `round ${round}: winners`).to.equal(1);
      for (const r of results) if (r.status === 'rejected') expect(r.reason).to.be.instanceOf(StoreLockedError);
      await won[0]!.value();
    }
  });

  it('when /proc is absent, then a lock is held while its PID runs and it was written during this boot', async () => {
    const noProc: ProcessFacts = { bootId: () => undefined, startTime: () => undefined };
    const store = await world.dir();
    const other = await unrelated();
    const path = join(store, 'agent.lock');
    await writeFile(path, JSON.stringify({ pid: other.pid, nonce: 'no-proc' }));
    await lockStore(store, selfRecord(noProc), noProc).then(() => expect.fail('taken from a running holder'), (err: Error) => expect(err).to.be.instanceOf(StoreLockedError));
    const beforeBoot = new Date(Date.now() - (await import('node:os')).uptime() * 1000 - 3_600_000);
    await utimes(path, beforeBoot, beforeBoot);
    const unlock = await lockStore(store, selfRecord(noProc), noProc);
    expect(await runningAgent(store, noProc)).to.equal(process.pid);
    await unlock();
    other.kill();
  });
});
