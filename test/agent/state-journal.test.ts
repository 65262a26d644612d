import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse } from 'yaml';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { ContentStore } from '../../agent/store/content-store.js';
import { AgentStateFiles, type AgentStateDoc, type ImageRecord } from '../../agent/store/state-files.js';
import { BUNDLE, pushImage, readAgentState, runBundle, useAgentWorld } from '../support/agent.js';
import { image } from '../support/oci.js';

// The agent's own state is written incrementally (a journal of what changed after a compact
// snapshot) and must survive a crash at any point: a journal cut at any byte of its last
// record gives the state before that record, and the agent goes on from it; a real agent
// killed (SIGKILL) again and again during a sync starts each time from what it left.

const clone = <T>(v: T): T => JSON.parse(JSON.stringify(v)) as T;

function img(n: number, status: ImageRecord['status']): ImageRecord {
  return { repository: `library/i${n}`, digest: `sha256:${String(n).padStart(64, '0')}`, status, at: `2026-01-01T00:00:0${n}Z`, manifests: [`sha256:${String(n).padStart(64, 'a')}`] };
}

describe('the edge agent: its own state on disk', function () {
  this.timeout(120_000);
  const dirs: string[] = [];
  afterEach(async () => {
    for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
  });
  const dir = async () => {
    const d = await mkdtemp(join(tmpdir(), 'satellite-journal-'));
    dirs.push(d);
    return d;
  };

  it('when a pass changes one image of many, then only that change is appended (not the whole document), compact', async () => {
    const root = await dir();
    const files = new AgentStateFiles(root);
    await files.init();
    const doc: AgentStateDoc = { agentVersion: 't', groups: { edge: { highestVersion: 1, images: {} } } };
    for (let i = 0; i < 500; i++) doc.groups.edge!.images[`k${i}`] = img(i % 10, 'present');
    await files.save(doc);
    const snapshot = (await stat(join(root, 'agent-state.json'))).size;
    const journal = (await stat(join(root, 'agent-state.journal'))).size;
    doc.groups.edge!.images.k7 = img(7, 'failed');
    await files.save(doc);
    const grew = (await stat(join(root, 'agent-state.journal'))).size - journal;
    expect((await stat(join(root, 'agent-state.json'))).size, 'the snapshot is not rewritten').to.equal(snapshot);
    expect(grew, `appended ${grew} bytes for one image (the document is ${snapshot})`).to.be.above(0).and.below(600);
    expect(await readFile(join(root, 'agent-state.json'), 'utf8'), 'compact').to.not.include('\n');
    expect((await readAgentState(root)).groups.edge!.images.k7!.status).to.equal('failed');
  });

  it('when a pass changes more than the journal may hold (a first sync of thousands of images), then the snapshot is rewritten and the journal starts again, and every change reads back', async () => {
    const root = await dir();
    const files = new AgentStateFiles(root);
    await files.init();
    const doc: AgentStateDoc = { agentVersion: 't', groups: { edge: { highestVersion: 1, images: {} } } };
    await files.save(doc);
    const header = (await stat(join(root, 'agent-state.journal'))).size;
    // 3,000 records of ~200 bytes: a line of ~600 KB, past the journal's 256 KB and the snapshot.
    for (let i = 0; i < 3000; i++) doc.groups.edge!.images[`k${i}`] = img(i % 10, 'present');
    await files.save(doc);
    expect((await stat(join(root, 'agent-state.journal'))).size, 'the journal is a new header only').to.be.at.most(header + 2);
    const snapshot = JSON.parse(await readFile(join(root, 'agent-state.json'), 'utf8')) as AgentStateDoc;
    expect(Object.keys(snapshot.groups.edge!.images), 'the snapshot holds every record').to.have.length(3000);
    expect(Object.keys((await readAgentState(root)).groups.edge!.images)).to.have.length(3000);
  });

  it('when the journal is cut at any byte of its last record (or that record has a byte changed), then the state before it is read, and the agent goes on from it', async () => {
    const root = await dir();
    const files = new AgentStateFiles(root);
    await files.init();
    const doc: AgentStateDoc = { agentVersion: 't', groups: { edge: { highestVersion: 1, images: { a: img(1, 'present'), b: img(2, 'pending') } } } };
    await files.save(doc); // snapshot
    doc.groups.edge!.images.c = img(3, 'pending');
    await files.save(doc);
    doc.groups.edge!.images.b = img(2, 'present');
    doc.groups.other = { highestVersion: 4, images: { d: img(4, 'present') } };
    await files.save(doc);
    const before = clone(doc);
    // The last record: an image failed, one gone, a group gone, a top-level field set.
    doc.groups.edge!.images.c = img(3, 'failed');
    delete doc.groups.edge!.images.a;
    delete doc.groups.other;
    doc.startedAt = '2026-01-02T00:00:00Z';
    await files.save(doc);
    const after = clone(doc);

    const journalPath = join(root, 'agent-state.journal');
    const full = await readFile(journalPath);
    const snapshotOf = await readFile(join(root, 'agent-state.json'));
    const lastStart = full.subarray(0, full.length - 1).lastIndexOf(0x0a) + 1;
    expect((await readAgentState(root))).to.deep.equal({ ...after, agentVersion: 'test' });
    for (let cut = lastStart; cut <= full.length; cut++) {
      await writeFile(journalPath, full.subarray(0, cut));
      const expected = cut === full.length ? after : before;
      const read = await new AgentStateFiles(root).load('t');
      expect(read, `journal cut at ${cut} of ${full.length}`).to.deep.equal(expected);
      // The agent goes on: its next change is kept, whatever the torn tail held.
      const next = new AgentStateFiles(root);
      const doc2 = await next.load('t');
      doc2.groups.edge!.images.e = img(5, 'present');
      await next.save(doc2);
      doc2.groups.edge!.images.f = img(6, 'present');
      await next.save(doc2);
      expect(await new AgentStateFiles(root).load('t'), `after going on from the cut at ${cut}`).to.deep.equal(doc2);
      // Back to the files as they were before this round (the round compacted them).
      await writeFile(journalPath, full);
      await writeFile(join(root, 'agent-state.json'), snapshotOf);
    }
    for (let at = lastStart; at < full.length - 1; at++) {
      const flipped = Buffer.from(full);
      flipped[at] = flipped[at] === 0x30 ? 0x31 : 0x30;
      await writeFile(journalPath, flipped);
      expect(await new AgentStateFiles(root).load('t'), `a byte changed at ${at}`).to.deep.equal(before);
    }
  });

  it('when a compaction is cut between the new snapshot and the new journal, then the journal of the older snapshot is ignored and nothing is lost', async () => {
    const root = await dir();
    const files = new AgentStateFiles(root);
    await files.init();
    const doc: AgentStateDoc = { agentVersion: 't', groups: { edge: { highestVersion: 1, images: { a: img(1, 'pending') } } } };
    await files.save(doc);
    doc.groups.edge!.images.a = img(1, 'failed');
    await files.save(doc);
    const oldJournal = await readFile(join(root, 'agent-state.journal'));
    // A new process compacts at its first save: snapshot (next generation), then journal.
    const next = new AgentStateFiles(root);
    const doc2 = await next.load('t');
    doc2.groups.edge!.images.a = img(1, 'present');
    await next.save(doc2);
    await writeFile(join(root, 'agent-state.journal'), oldJournal); // as if the crash came before the new journal
    expect((await new AgentStateFiles(root).load('t')).groups.edge!.images.a!.status, 'the newer snapshot, not the older journal replayed on it').to.equal('present');
  });

  it('when the agent was killed after the last byte of a blob but before keeping it, then the next pull keeps it without a request, or fetches it again when it is not the blob', async () => {
    const root = await dir();
    const store = new ContentStore(root);
    await store.init();
    const bytes = randomBytes(4096);
    const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
    await mkdir(join(root, 'ingest'), { recursive: true });
    const partial = join(root, 'ingest', `sha256-${digest.slice(7)}.partial`);
    const asked: number[] = [];
    const source = async (offset: number) => {
      asked.push(offset);
      return offset >= bytes.length ? new Response('', { status: 416 }) : new Response(bytes.subarray(offset), { status: offset ? 206 : 200, headers: offset ? { 'content-range': `bytes ${offset}-${bytes.length - 1}/${bytes.length}` } : {} });
    };
    await writeFile(partial, bytes);
    await store.ingest(digest, bytes.length, source);
    expect(asked, 'no request for a blob whose every byte is there').to.deep.equal([]);
    expect((await store.read(digest)).equals(bytes)).to.equal(true);

    await store.remove(digest);
    await writeFile(partial, randomBytes(4096));
    await store.ingest(digest, bytes.length, source);
    expect(asked, 'other bytes of the same size: fetched again from the start').to.deep.equal([0]);
    expect((await store.read(digest)).equals(bytes)).to.equal(true);
  });

  describe('with a real agent', () => {
    const world = useAgentWorld();

    it('when the agent is killed (SIGKILL) at many points of a sync, then each restart starts from what was left and the last one ends with every image present', async () => {
      const imgs = Array.from({ length: 12 }, () => image());
      for (const [i, m] of imgs.entries()) {
        await pushImage(world.client(), `library/k${i}`, m);
        await world.record('edge', `library/k${i}`, m, '1');
      }
      await world.publish('edge');
      const file = await world.configFile({ concurrency: 2 });
      const store = parse(await readFile(file, 'utf8')).store as string;
      const kills: string[] = [];
      for (const delay of [120, 200, 280, 360, 440, 520, 600, 700, 800, 1000]) {
        const child = spawn(process.execPath, [BUNDLE, 'run', '--once', '--config', file], { stdio: 'ignore' });
        const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
        await new Promise((r) => setTimeout(r, delay));
        child.kill('SIGKILL');
        const code = await exited;
        const doc = await readAgentState(store); // a status that reads: never torn
        const present = Object.values(doc.groups.edge?.images ?? {}).filter((i) => i.status === 'present').length;
        kills.push(`${delay} ms: ${code === null ? 'killed' : `exited ${code}`}, ${present} present`);
      }
      const last = await runBundle(['run', '--once', '--config', file]);
      expect(last.code, `${kills.join('; ')}\n${last.out.slice(-2000)}\n${(await runBundle(['status', '--config', file])).out}`).to.equal(0);
      const status = await runBundle(['status', '--json', '--config', file]);
      const group = JSON.parse(status.out).groups[0] as { images: { present: number; failed: number; pending: number } };
      expect(group.images, kills.join('; ')).to.include({ present: 12, failed: 0, pending: 0 });
    });
  });
});
