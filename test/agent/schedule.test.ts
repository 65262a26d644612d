import { expect } from 'chai';
import { nextDelay } from '../../agent/run.js';

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
