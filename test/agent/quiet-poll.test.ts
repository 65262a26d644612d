import { expect } from 'chai';
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AgentStateFiles, CHECKED_AT_FLUSH_MS, type AgentStateDoc } from '../../agent/store/state-files.js';
import { pushImage, useBundledAgent } from '../support/agent.js';
import { image } from '../support/oci.js';
import { freePort, until } from '../support/process.js';

// A device's flash wears with every write: once a state is applied and every image is in the
// store, a poll that finds `latest` unchanged must write nothing at all. The agent is the
// bundle, run as a device runs it, with a short interval; the registry is the real one behind
// a counting proxy (to count the polls).

const STATE = 'satellite/group-state/edge/state';

/** Every file and directory under `root`: its bytes' digest, size and mtime. */
async function snapshot(root: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const walk = async (dir: string): Promise<void> => {
    const s = await stat(dir);
    out.set(dir, `dir mtime=${s.mtimeMs}`);
    for (const e of await readdir(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory()) await walk(p);
      else {
        const f = await stat(p);
        out.set(p, `sha256=${createHash('sha256').update(await readFile(p)).digest('hex')} size=${f.size} mtime=${f.mtimeMs}`);
      }
    }
  };
  await walk(root);
  return out;
}

function differences(before: Map<string, string>, after: Map<string, string>): string[] {
  const diff: string[] = [];
  for (const [p, v] of before) if (after.get(p) !== v) diff.push(`${p}: ${v} -> ${after.get(p) ?? 'gone'}`);
  for (const [p, v] of after) if (!before.has(p)) diff.push(`${p}: new (${v})`);
  return diff;
}

describe('the edge agent: an unchanged poll', function () {
  this.timeout(120_000);
  const agent = useBundledAgent();
  const world = agent.world;

  it('when the state is unchanged and every image is in the store, then 10 polls leave every file of the store and the mirror files unchanged, byte for byte and by mtime', async () => {
    const proxy = agent.proxy();
    const a = image();
    const b = image();
    await pushImage(world.client(), 'library/a', a);
    await pushImage(world.client(), 'library/b', b);
    await world.record('edge', 'library/a', a, '1');
    await world.record('edge', 'library/b', b, '1');
    await world.publish('edge', proxy.url);

    const port = await freePort();
    const file = await world.configFile({
      registry: proxy.url,
      interval: '200ms',
      listen: `127.0.0.1:${port}`,
      logLevel: 'info',
      mirrors: { containerd: 'certs.d', registriesConf: 'registries.conf' },
    }, { identity: `${world.registryHost}/${STATE}` });
    const dir = join(file, '..');
    const running = agent.start(file);
    const url = `http://127.0.0.1:${port}`;
    const polls = () => proxy.log.filter((l) => l === `HEAD /v2/${STATE}/manifests/latest`).length;
    await until('both images present', async () => {
      const s = (await (await fetch(`${url}/status`).catch(() => undefined))?.json().catch(() => undefined)) as { groups?: Record<string, { images: Record<string, { status: string }> }> } | undefined;
      const images = Object.values(s?.groups?.edge?.images ?? {});
      return images.length === 2 && images.every((i) => i.status === 'present') ? true : undefined;
    }, 60_000);
    // The pass that applied the state may still be finishing its writes: one more poll first.
    const settled = polls() + 1;
    await until('one more poll', async () => (polls() > settled ? true : undefined));
    await new Promise((r) => setTimeout(r, 100));

    const before = await snapshot(dir);
    expect([...before.keys()].some((p) => p.endsWith('agent-state.json')), 'the status file is among what is watched').to.equal(true);
    expect([...before.keys()].some((p) => p.endsWith('hosts.toml')), 'the mirror files are among what is watched').to.equal(true);
    const from = polls();
    await until('10 more polls', async () => (polls() >= from + 10 ? true : undefined), 30_000);
    await new Promise((r) => setTimeout(r, 100));
    const after = await snapshot(dir);

    expect(differences(before, after), `files written over ${polls() - from} unchanged polls\n${running.log().slice(-2000)}`).to.deep.equal([]);
  });
});

describe('the edge agent: its status file', () => {
  it('when only the poll times changed, then nothing is written, until an hour passed or something else changed', async () => {
    const root = await mkdtemp(join(tmpdir(), 'satellite-state-'));
    try {
      let now = 1_000_000;
      const files = new AgentStateFiles(root, () => now);
      await files.init();
      const written = async () => (await snapshot(root));
      const read = async () => (await new AgentStateFiles(root).load('t')).groups.edge!;
      const doc: AgentStateDoc = { agentVersion: 't', groups: { edge: { highestVersion: 1, checkedAt: 'a', lastSuccessAt: 'a', images: {} } } };
      await files.save(doc);
      const first = await written();
      now += 1000;
      doc.groups.edge!.checkedAt = doc.groups.edge!.lastSuccessAt = 'b';
      await files.save(doc);
      expect(differences(first, await written()), 'not written for new poll times').to.deep.equal([]);
      expect((await read()).checkedAt).to.equal('a');
      doc.groups.edge!.error = 'registry unreachable';
      await files.save(doc);
      expect(await read(), 'written with the change, poll times too').to.include({ error: 'registry unreachable', checkedAt: 'b' });
      doc.groups.edge!.checkedAt = 'c';
      now += CHECKED_AT_FLUSH_MS - 1;
      await files.save(doc);
      expect((await read()).checkedAt).to.equal('b');
      now += 1;
      await files.save(doc);
      expect((await read()).checkedAt, 'an hour later the poll time is written').to.equal('c');
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });
});
