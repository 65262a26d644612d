import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { BUNDLE, pushImage, runBundle, useAgentWorld } from '../support/agent.js';
import { startFaultProxy, type FaultProxy } from '../support/fault-proxy.js';
import { image, layer } from '../support/oci.js';
import { until } from '../support/process.js';

// Pull progress, as a user watching a long first sync sees it: the running agent's log and
// `satellite agent status`, while a 2 MiB layer arrives at 256 KiB/s through a proxy.

interface Pulling {
  group: string;
  repository: string;
  digest: string;
  bytesDone: number;
  bytesTotal: number;
}

describe('the edge agent: pull progress during a long sync', function () {
  this.timeout(90_000);
  const world = useAgentWorld();
  let proxy: FaultProxy;
  beforeEach(async () => {
    proxy = await startFaultProxy(world.registryUrl);
  });
  afterEach(async () => proxy?.close());

  it('when a large image is being pulled, then the running agent logs and status show its bytes done against its total, growing, and nothing once it is present', async () => {
    const big = layer([{ name: 'big.bin', content: randomBytes(2 * 1024 * 1024) }]);
    const img = image({ layers: [big] });
    await pushImage(world.client(), 'library/big', img);
    await world.record('edge', 'library/big', img, '1');
    await world.publish('edge', proxy.url);
    proxy.rules.push({ method: 'GET', path: new RegExp(`/blobs/${big.digest}$`), fault: 'throttle', times: 1, bytesPerSecond: 256 * 1024 });
    // interval 2s: docker-registry behind the throttling proxy now and then closes the
    // connection mid-body ("other side closed"); the next pass resumes the download.
    const file = await world.configFile({ logLevel: 'info', progressInterval: '300ms', interval: '2s' });
    const total = img.config.size + big.size;

    const child = spawn(process.execPath, [BUNDLE, 'run', '--config', file], { stdio: ['ignore', 'pipe', 'pipe'] });
    let log = '';
    child.stdout!.on('data', (d: Buffer) => (log += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (log += d.toString()));
    try {
      const status = async () => JSON.parse((await runBundle(['status', '--json', '--config', file])).out) as { pulling: Pulling[]; groups: { version: number | null; images: { present: number } }[] };
      const seen: number[] = [];
      await until('status to show the image part-way, twice', async () => {
        const p = (await status()).pulling.find((i) => i.digest === img.manifest.digest);
        // The total grows as the manifests name blobs (the config first, then the layers):
        // wait for the layer to be known.
        if (p && p.bytesTotal === total && p.bytesDone > 0 && p.bytesDone < total) {
          expect(p).to.deep.include({ group: 'edge', repository: 'library/big' });
          if (seen.at(-1) !== p.bytesDone) seen.push(p.bytesDone);
        }
        return seen.length >= 2 ? true : undefined;
      }, 20_000);
      expect(seen[1]!, 'the bytes done grow').to.be.above(seen[0]!);

      const table = (await runBundle(['status', '--config', file])).out;
      expect(table).to.match(new RegExp(`edge: pulling library/big@${img.manifest.digest.slice(0, 19)}: [\\d.]+ (KiB|MiB) / 2\\.0 MiB \\(\\d+ %\\)`));

      const logged = log.split('\n').filter((l) => l.includes('"pull progress"')).map((l) => (JSON.parse(l) as { images: (Pulling & { percent: number })[] }).images[0]!);
      const whole = logged.find((l) => l.bytesTotal === total);
      expect(whole, log).to.not.equal(undefined);
      expect(whole).to.deep.include({ group: 'edge', repository: 'library/big', digest: img.manifest.digest, bytesTotal: total });
      expect(whole!.percent).to.be.within(0, 99);

      let last: unknown;
      await until('the image present', async () => {
        const s = await status();
        last = s;
        return s.groups[0]!.images.present === 1 ? true : undefined;
      }, 60_000).catch((e: Error) => {
        throw new Error(`${e.message}: ${JSON.stringify(last)}\n${log}`);
      });
      expect((await status()).pulling, 'nothing is being pulled any more').to.deep.equal([]);
    } finally {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
    }
  });
});
