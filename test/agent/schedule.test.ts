import { expect } from 'chai';
import { nextDelay } from '../../agent/run.js';
import { useAgentWorld, pushImage } from '../support/agent.js';
import { startFaultProxy, type FaultProxy } from '../support/fault-proxy.js';
import { image } from '../support/oci.js';
import { until } from '../support/process.js';

const STATE = 'satellite/group-state/edge/state';

describe('the edge agent: when it polls', () => {
  it('when the registry answers, then the next poll is the interval, spread ±10 % across a fleet', () => {
    expect(nextDelay(30_000, 0, 0)).to.equal(27_000);
    expect(nextDelay(30_000, 0, 1)).to.equal(33_000);
    expect(nextDelay(30_000, 0, 0.5)).to.equal(30_000);
  });

  it('when the registry stays unreachable, then the wait doubles each pass up to ten minutes, and drops back once it answers', () => {
    const waits = [1, 2, 3, 4, 5, 6].map((n) => nextDelay(30_000, n, 0.5));
    expect(waits).to.deep.equal([60_000, 120_000, 240_000, 480_000, 600_000, 600_000]);
    expect(nextDelay(30_000, 0, 0.5)).to.equal(30_000);
    expect(nextDelay(900_000, 3, 0.5), 'never shorter than the interval itself').to.equal(900_000);
  });
});

describe('the edge agent: the poll loop as it runs', function () {
  this.timeout(45_000);
  const world = useAgentWorld();
  let proxy: FaultProxy;
  beforeEach(async () => {
    proxy = await startFaultProxy(world.registryUrl);
  });
  afterEach(async () => proxy?.close());

  it('when the registry is unreachable, then polls back off exponentially with the jitter drawn, and come back to the interval once it answers', async () => {
    const img = image();
    await pushImage(world.client(), 'library/app', img);
    await world.record('edge', 'library/app', img, '1');
    await world.publish('edge');
    const latest = `HEAD /v2/${STATE}/manifests/latest`;
    proxy.rules.push({ method: 'HEAD', path: /\/manifests\/latest$/, fault: 'reset', times: 3 }); // three polls fail
    // Long enough that a loaded machine's pass times stay small beside the jitter's 10 %.
    const interval = 600;
    // Every jitter draw is 0: the lowest spread, 0.9 × the wait (0.5 would be the wait itself).
    const agent = await world.start(await world.config({ registry: proxy.url, interval: `${interval}ms` }, { identity: `${world.registryHost}/${STATE}` }), { random: () => 0 });
    expect((await agent.firstSync).groups.edge).to.equal('unreachable');
    const polls = await until('five polls', async () => {
      const at = proxy.timeline.filter((t) => t.request === latest).map((t) => t.at);
      return at.length >= 5 ? at : undefined;
    }, 30_000);
    await agent.stop();
    const gaps = polls.slice(1, 5).map((t, i) => t - polls[i]!);
    const expected = [1, 2, 3, 0].map((failures) => nextDelay(interval, failures, 0)); // 1080, 2160, 4320, 540
    const backoff = gaps.slice(0, 3).reduce((a, b) => a + b, 0);
    const wanted = expected.slice(0, 3).reduce((a, b) => a + b, 0);
    expect(backoff, `waits ${gaps.join(', ')} ms; jittered ${expected.join(', ')} ms expected (unjittered: 1200, 2400, 4800)`).to.be.within(wanted - 15, wanted + 400);
    for (let i = 1; i < 3; i++) expect(gaps[i]! / gaps[i - 1]!, `wait ${i + 1} doubles wait ${i}`).to.be.within(1.8, 2.2);
    // That poll applied the state: the pass's own time comes before the next wait.
    expect(gaps[3], 'back to the interval once the registry answered').to.be.within(expected[3]! - 15, 2 * interval);
    expect(agent.agent.doc.groups.edge!.applied, 'the poll that got through applied the state').to.not.equal(undefined);
  });
});
