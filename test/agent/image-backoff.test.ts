import { expect } from 'chai';
import { pushImage, useBundledAgent } from '../support/agent.js';
import { image } from '../support/oci.js';
import { freePort, until } from '../support/process.js';

// An image the registry cannot serve must not cost a request (nor a log line) on every pass
// of a device that polls every few seconds for weeks: it is retried after a backoff of its
// own, logged once per reason, while the rest of the group is served.

const STATE = 'satellite/group-state/edge/state';

interface Status {
  groups?: Record<string, { images: Record<string, { repository: string; status: string }> }>;
}

describe('the edge agent: an image that keeps failing', function () {
  this.timeout(120_000);
  const agent = useBundledAgent();
  const world = agent.world;

  it('when the registry cannot serve one blob of an image, then over 16 polls that blob is asked for a few times with growing gaps, not on every pass, its failure is logged once, and once the blob is served the image is present and logged available again', async () => {
    const proxy = agent.proxy();
    const good = image();
    const bad = image();
    const badLayer = bad.layers[0]!;
    await pushImage(world.client(), 'library/good', good);
    await pushImage(world.client(), 'library/bad', bad);
    await world.record('edge', 'library/good', good, '1');
    await world.record('edge', 'library/bad', bad, '1');
    await world.publish('edge', proxy.url);
    const blobPath = `/v2/library/bad/blobs/${badLayer.digest}`;
    proxy.rules.push({ method: 'GET', path: new RegExp(`${blobPath}$`), fault: 'error500', times: 1_000_000 });

    const port = await freePort();
    const intervalMs = 200;
    const file = await world.configFile({ registry: proxy.url, interval: `${intervalMs}ms`, listen: `127.0.0.1:${port}`, logLevel: 'info' }, { identity: `${world.registryHost}/${STATE}` });
    const running = agent.start(file);
    const url = `http://127.0.0.1:${port}`;
    const status = async () => (await (await fetch(`${url}/status`).catch(() => undefined))?.json().catch(() => undefined)) as Status | undefined;
    const statusOf = (s: Status | undefined, repo: string) => Object.values(s?.groups?.edge?.images ?? {}).find((i) => i.repository === repo)?.status;
    const polls = () => proxy.log.filter((l) => l === `HEAD /v2/${STATE}/manifests/latest`).length;
    const tries = () => proxy.log.filter((l) => l === `GET ${blobPath}`).length;
    const lines = (msg: string) => running.log().split('\n').filter((l) => l.includes('"library/bad"') && l.includes(msg)).length;

    await until('the good image present, the bad one failed', async () => {
      const s = await status();
      return statusOf(s, 'library/good') === 'present' && statusOf(s, 'library/bad') === 'failed' ? true : undefined;
    }, 60_000);
    const from = polls();
    await until('16 more polls', async () => (polls() >= from + 16 ? true : undefined), 30_000);
    const passes = polls();
    const asked = tries();

    expect(asked, `requests for the blob over ${passes} passes`).to.be.at.least(2).and.at.most(6);
    expect(lines('image not made available'), `one log line for one failure\n${running.log().slice(-3000)}`).to.equal(1);
    expect(statusOf(await status(), 'library/good'), 'the rest of the group is served meanwhile').to.equal('present');
    const res = await fetch(`${url}/v2/library/good/manifests/${good.manifest.digest}`);
    expect(res.status).to.equal(200);

    proxy.rules.length = 0;
    await until('the bad image present once its blob is served', async () => (statusOf(await status(), 'library/bad') === 'present' ? true : undefined), 60_000);
    await until('its recovery logged', async () => (lines('image available again') === 1 ? true : undefined), 5_000);
    expect(lines('image not made available'), 'no more failure lines').to.equal(1);
  });
});
