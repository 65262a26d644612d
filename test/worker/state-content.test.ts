import { expect } from 'chai';
import { createHash, randomInt } from 'node:crypto';
import { gunzipSync, gzipSync } from 'node:zlib';
import { gzipMembersOf, swapInChunk } from '../support/state-layer.js';
import { createPool } from '../../core/db/pool.js';
import { diffStates, renderDelta, type VersionedState } from '../../core/state/delta.js';
import { buildState, contentDigest } from '../../core/state/render.js';
import { ArtifactStore } from '../../core/store/artifact-store.js';
import { HarborStore } from '../../core/store/harbor-store.js';
import { StateCache, StateContent, UnusableContentError } from '../../worker/state-content.js';
import { createTestDatabase, type TestDatabase } from '../support/db.js';
import { artifact, cosignSignature, image, index, randomLayer, signatureTag, type Image } from '../support/oci.js';
import { record } from '../support/worker.js';
import { seedGroup } from '../../bench/seed.js';

// Issue 11 item 1: a build after a change reads and compresses only what changed. Whatever
// happened in between, the state it gives must be byte for byte the one a build reading the
// whole group gives, and its delta the one delta.ts computes.

const REGISTRY = 'https://harbor.example.com';
const sha256 = (b: Buffer | string) => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const pick = <T>(xs: readonly T[]): T => xs[randomInt(xs.length)]!;

describe('a state kept between builds', function () {
  this.timeout(120_000);
  let db: TestDatabase;
  let store: ArtifactStore;
  beforeEach(async () => {
    db = await createTestDatabase();
    store = new ArtifactStore(db.pool);
  });
  afterEach(async () => db?.drop());

  const cold = async (group: string): Promise<StateContent> => {
    const c = new StateContent(group, REGISTRY);
    c.loadFull(await store.snapshot(group, 24, 'tombstone'));
    return c;
  };
  const refresh = async (warm: StateContent) => {
    // The version expected next (its layer digest computed with the content digest) is 7,
    // the one expectSame packs, or a guess that missed.
    warm.expectVersion(pick([7, 8, undefined]));
    warm.apply(await store.snapshot(warm.group, 24, 'tombstone', warm.xmin));
  };
  /** The warm content is what a full read gives: entries, digests, and the full layer's bytes. */
  const expectSame = async (warm: StateContent, step: string) => {
    const full = await cold(warm.group);
    expect(warm.jsons, step).to.deep.equal(full.jsons);
    const reference = contentDigest(buildState(warm.group, REGISTRY, await store.listGroup(warm.group, 24)));
    expect(warm.contentDigest(), `${step}: content digest as render.ts computes it`).to.equal(reference);
    const [a, b] = [await warm.fullLayer(7), await full.fullLayer(7)];
    expect(a.gzip.equals(b.gzip), `${step}: the same full layer bytes`).to.equal(true);
    const doc = full.document(7);
    expect(gunzipSync(a.gzip).equals(doc), `${step}: the layer unzips to the document`).to.equal(true);
    expect(a.digest).to.equal(sha256(doc));
  };

  it('when manifests are put, tagged, moved, signed, indexed, untagged and deleted at random, then every build from the kept state equals a full read, and so does its delta', async () => {
    const group = 'edge';
    const repos = ['library/a', 'library/b', 'team/c'];
    const tags = ['1', '2', 'latest', 'stable'];
    const live: { repo: string; img: Image }[] = [];
    const warm = new StateContent(group, REGISTRY);
    warm.loadFull(await store.snapshot(group, 24, 'tombstone'));
    let published: { version: number; text: string; digest: string } | undefined;
    let version = 0;
    // What a worker that kept nothing builds on: the last published layer, taken up, then
    // the changes since (first with the tombstones it lists read again).
    let restored: { content: StateContent; reread?: { repository: string; digest: string }[] } | undefined;
    for (let step = 0; step < 160; step++) {
      const roll = randomInt(100);
      const repo = pick(repos);
      let what = '';
      if (roll < 35 || live.length === 0) {
        const img = image({ layers: [randomLayer(8)] });
        const tag = randomInt(4) === 0 ? null : pick(tags);
        await record(db.pool, group, repo, img, tag);
        live.push({ repo, img });
        what = `put ${repo}:${tag ?? '(digest)'}`;
      } else if (roll < 45) {
        const idx = index([{ architecture: 'amd64', os: 'linux' }, { architecture: 'arm64', os: 'linux', variant: 'v8' }]);
        for (const child of idx.children) await record(db.pool, group, repo, child, null);
        await record(db.pool, group, repo, { manifest: idx.manifest, config: idx.manifest, layers: [] }, pick(tags));
        live.push({ repo, img: { manifest: idx.manifest, config: idx.manifest, layers: [] } });
        what = 'put index';
      } else if (roll < 55) {
        const target = pick(live);
        await record(db.pool, group, target.repo, cosignSignature(target.img.manifest, `harbor/${target.repo}`), signatureTag(target.img.manifest.digest));
        what = 'cosign signature';
      } else if (roll < 62) {
        const target = pick(live);
        const bundle = artifact('application/vnd.dev.sigstore.bundle.v0.3+json', Buffer.from(`{"n":${step}}`), 'application/vnd.dev.sigstore.bundle.v0.3+json', target.img.manifest);
        await record(db.pool, group, target.repo, bundle, null);
        live.push({ repo: target.repo, img: bundle });
        what = 'signature referrer';
      } else if (roll < 72) {
        const target = pick(live);
        await store.deleteManifest({ group, repository: target.repo }, target.img.manifest.digest);
        what = 'delete';
      } else if (roll < 80) {
        const { rows } = await db.pool.query<{ repository: string; tag: string }>('SELECT repository, tag FROM tags WHERE group_name = $1', [group]);
        if (rows.length > 0) {
          const t = pick(rows);
          await store.untag({ group, repository: t.repository }, t.tag);
        }
        what = 'untag';
      } else if (roll < 88) {
        const target = pick(live);
        await record(db.pool, group, target.repo, target.img, pick(tags)); // re-tag, maybe revive
        what = 're-tag';
      } else {
        what = 'nothing';
      }
      if (randomInt(3) === 0) continue; // several changes per build, sometimes
      await refresh(warm);
      await expectSame(warm, `step ${step} (${what})`);
      if (restored) {
        const r = restored.content;
        r.apply(await store.snapshot(group, 24, 'tombstone', r.xmin, undefined, restored.reread));
        restored.reread = undefined;
        await expectSame(r, `step ${step} (${what}), built on the published layer taken up`);
      }
      if (randomInt(4) === 0) {
        // Publish: the next delta is computed from what changed since.
        version++;
        const next = warm.document(version).toString();
        if (published) {
          const expected = renderDelta(diffStates(JSON.parse(published.text) as VersionedState, published.digest, JSON.parse(next) as VersionedState));
          const base = { version: published.version, digest: published.digest };
          expect(warm.deltaFrom(base, version), `step ${step}: delta from the kept changes`).to.equal(expected);
          expect(warm.deltaFromText(published.text, base, version), `step ${step}: delta from the base's text`).to.equal(expected);
        }
        if (published && restored) {
          const base = { version: published.version, digest: published.digest };
          expect(restored.content.deltaFrom(base, version), `step ${step}: delta from the published layer taken up`).to.equal(warm.deltaFrom(base, version));
        }
        const layer = await warm.fullLayer(version);
        warm.markPublished(version, layer.digest);
        published = { version, text: next, digest: layer.digest };
        const content = new StateContent(group, REGISTRY);
        const reread = content.restore(version, layer.gzip, layer.digest, warm.xmin, new Date(warm.readAt));
        expect(reread, `step ${step}: the published layer can be taken up`).to.not.equal(undefined);
        expect(content.jsons, `step ${step}: taken up as published`).to.deep.equal(warm.jsons);
        expect(reread!.map((k) => `${k.repository}@${k.digest}`), 'the tombstones it lists are read again').to.deep.equal(
          warm.jsons.filter((j) => j.includes('"deleted":true,')).map((j) => `${JSON.parse(j).repository}@${JSON.parse(j).digest}`));
        restored = { content, reread };
      }
    }
  });

  it('when what names a manifest changes in a later build than the manifest, then the kept state follows', async () => {
    const group = 'named';
    const repo = 'library/a';
    const warm = await cold(group);
    const step = async (what: string, change: () => Promise<unknown>) => {
      await change();
      await refresh(warm);
      await expectSame(warm, what);
    };
    // Children pushed by digest are entries until their index arrives.
    const idx = index([{ architecture: 'amd64', os: 'linux' }, { architecture: 'arm64', os: 'linux' }]);
    await step('children by digest', async () => { for (const c of idx.children) await record(db.pool, group, repo, c, null); });
    expect(warm.count).to.equal(2);
    await step('their index', () => record(db.pool, group, repo, { manifest: idx.manifest, config: idx.manifest, layers: [] }, 'multi'));
    expect(warm.count).to.equal(1);
    // A superseded manifest is listed as long as a signature names it.
    const x = image({ layers: [randomLayer(8)] });
    const y = image({ layers: [randomLayer(8)] });
    const sig = cosignSignature(x.manifest, `harbor/${repo}`);
    const bundle = artifact('application/vnd.dev.sigstore.bundle.v0.3+json', Buffer.from('{}'), 'application/vnd.dev.sigstore.bundle.v0.3+json', x.manifest);
    await step('x tagged', () => record(db.pool, group, repo, x, '1'));
    await step('x signed by tag', () => record(db.pool, group, repo, sig, signatureTag(x.manifest.digest)));
    await step('x signed by a referrer', () => record(db.pool, group, repo, bundle, null));
    await step('its tag moved to y', () => record(db.pool, group, repo, y, '1'));
    const live = () => warm.jsons.some((j) => j.includes(x.manifest.digest) && j.includes('"deleted":false') && !j.includes('"subject"'));
    expect(live(), 'signed: still listed').to.equal(true);
    await step('the referrer deleted', () => store.deleteManifest({ group, repository: repo }, bundle.manifest.digest));
    expect(live(), 'the cosign signature still names it').to.equal(true);
    await step('the cosign signature deleted', () => store.deleteManifest({ group, repository: repo }, sig.manifest.digest));
    expect(live(), 'nothing names it: a tombstone').to.equal(false);
    await step('signed by tag again', () => record(db.pool, group, repo, sig, signatureTag(x.manifest.digest)));
    expect(live(), 'signed again').to.equal(true);
    await step('the signature tag removed', () => store.untag({ group, repository: repo }, signatureTag(x.manifest.digest)));
    expect(live()).to.equal(false);
  });

  it('when reconciliation with Harbor sets or changes the labels or platform of an artifact, then the kept state follows', async () => {
    const group = 'labelled';
    const img = image({ layers: [randomLayer(8)] });
    await record(db.pool, group, 'library/a', img, '1');
    const warm = await cold(group);
    const harbor = new HarborStore(db.pool);
    const meta = (labels: string[] | null) => [{ repository: 'library/a', digest: img.manifest.digest, labels, platform: { os: 'linux', architecture: 'arm64' } }];
    await harbor.apply(meta(['prod', 'edge']), [], [group]);
    await refresh(warm);
    await expectSame(warm, 'labels set');
    expect(warm.jsons[0]).to.include('"labels":["edge","prod"]').and.include('"platform":{"os":"linux","architecture":"arm64"}');
    await harbor.apply(meta(['prod']), [], [group]);
    await refresh(warm);
    await expectSame(warm, 'a label removed');
    expect(warm.jsons[0]).to.include('"labels":["prod"]');
  });

  it('when a change commits after a later one was read, then the next build still reads it', async () => {
    const group = 'race';
    await record(db.pool, group, 'library/a', image({ layers: [randomLayer(8)] }), '1');
    const warm = await cold(group);
    // A PUT whose transaction stays open: its change gets the smaller id and commits last.
    const slow = createPool(db.url, 1);
    try {
      await slow.query('BEGIN');
      await new ArtifactStore(slow).recordManifest({ group, repository: 'library/slow' }, (await import('../../core/oci/manifest.js')).parseManifest(
        image({ layers: [randomLayer(8)] }).manifest.bytes, 'application/vnd.oci.image.manifest.v1+json'), 'late');
      await record(db.pool, group, 'library/b', image({ layers: [randomLayer(8)] }), '1');
      await refresh(warm); // sees the second change, not the first
      expect(warm.count).to.equal(2);
      await slow.query('COMMIT');
    } finally {
      await slow.end();
    }
    await refresh(warm);
    await expectSame(warm, 'after the slow change committed');
    expect(warm.count).to.equal(3);
  });

  it('when a worker takes up a published layer whose tombstone then reaches the end of its retention, then its next build drops it as a full read does', async () => {
    const group = 'retained';
    const gone = image({ layers: [randomLayer(8)] });
    await record(db.pool, group, 'library/a', gone, '1');
    await record(db.pool, group, 'library/a', image({ layers: [randomLayer(8)] }), '2');
    await store.deleteManifest({ group, repository: 'library/a' }, gone.manifest.digest);
    const warm = await cold(group);
    const layer = await warm.fullLayer(1);
    const content = new StateContent(group, REGISTRY);
    const reread = content.restore(1, layer.gzip, layer.digest, warm.xmin, new Date(warm.readAt))!;
    expect(reread.map((k) => k.digest)).to.deep.equal([gone.manifest.digest]);
    // The retention (24 h here) ends: no change is logged for it.
    await db.pool.query("UPDATE artifacts SET deleted_at = now() - interval '25 hours' WHERE digest = $1", [gone.manifest.digest]);
    content.apply(await store.snapshot(group, 24, 'tombstone', content.xmin, undefined, reread));
    await expectSame(content, 'the tombstone expired');
    expect(content.count).to.equal(1);
  });

  it('when a layer is not one this worker wrote for the group, then it is not taken up and the content is left as it was', async () => {
    const group = 'other';
    for (let i = 0; i < 300; i++) await record(db.pool, group, `library/r${i % 7}`, image({ layers: [randomLayer(4)] }), `t${i}`);
    const warm = await cold(group);
    const layer = await warm.fullLayer(3);
    const doc = warm.document(3);
    const take = (bytes: Buffer, version = 3, digest = layer.digest, into = new StateContent(group, REGISTRY)) =>
      into.restore(version, bytes, digest, warm.xmin, new Date(warm.readAt));
    expect(take(layer.gzip), 'the layer as written').to.not.equal(undefined);
    expect(take(gzipSync(doc)), 'one gzip stream, not chunked').to.equal(undefined);
    expect(take(layer.gzip.subarray(0, layer.gzip.length - 5)), 'truncated').to.equal(undefined);
    expect(take(layer.gzip, 4), 'another version').to.equal(undefined);
    expect(take(layer.gzip, 3, layer.digest, new StateContent('edge', REGISTRY)), 'another group').to.equal(undefined);
    expect(take(layer.gzip, 3, layer.digest, new StateContent(group, 'https://elsewhere.example.com')), 'another registry').to.equal(undefined);
    const held = await cold(group);
    const before = [...held.jsons];
    expect(take(layer.gzip, 4, layer.digest, held)).to.equal(undefined);
    expect(held.jsons, 'nothing changed').to.deep.equal(before);
  });

  it('when a worker takes up a published layer of many chunks, then its layer comes out as the same bytes, and after a change as those of a full read', async () => {
    const group = 'chunked';
    await seedGroup(db.pool, group, 3000); // digests fixed by the seed: 12 chunks
    const warm = await cold(group);
    const layer = await warm.fullLayer(1);
    const taken = new StateContent(group, REGISTRY);
    expect(taken.restore(1, layer.gzip, layer.digest, warm.xmin, new Date(warm.readAt))).to.deep.equal([]);
    expect((await taken.fullLayer(1)).gzip.equals(layer.gzip), 'the same bytes again').to.equal(true);
    await record(db.pool, group, 'library/app1', image({ layers: [randomLayer(8)] }), 'new');
    taken.apply(await store.snapshot(group, 24, 'tombstone', taken.xmin));
    await expectSame(taken, 'after a change');
  });

  it('when a full listing arrives in batches that end anywhere in a chunk, or out of order from the start or only at its end, then the content, its digest and its full layer are those of one batch', async () => {
    const group = 'batched';
    await seedGroup(db.pool, group, 3000); // 12 chunks
    const snapshot = await store.snapshot(group, 24, 'tombstone');
    const whole = new StateContent(group, REGISTRY);
    whole.loadFull(snapshot);
    const reference = await whole.fullLayer(1);
    const expected = contentDigest(buildState(group, REGISTRY, await store.listGroup(group, 24)));
    for (const [how, rows, expecting] of [['in order', snapshot.rows, 1], ['in order, another version expected', snapshot.rows, 2],
      // Every chunk spans batches, the first one included.
      ['in order, one row a batch', snapshot.rows, 1],
      ['out of order', [...snapshot.rows].reverse(), 1],
      // In order until the end: the chunks cut so far, and the one being filled across
      // batches, are read back into entries and sorted with the rest.
      ['out of order at the end', [...snapshot.rows.slice(0, -2), snapshot.rows.at(-1)!, snapshot.rows.at(-2)!], 1]] as const) {
      const batched = new StateContent(group, REGISTRY);
      batched.expectVersion(expecting);
      const load = batched.beginFull();
      for (let at = 0; at < rows.length;) {
        const n = how === 'in order, one row a batch' ? 1 : 1 + randomInt(700);
        load.add(rows.slice(at, at + n));
        at += n;
      }
      load.finish(snapshot);
      expect(batched.jsons, how).to.deep.equal(whole.jsons);
      expect(batched.contentDigest(), `${how}: content digest as render.ts computes it`).to.equal(expected);
      const layer = await batched.fullLayer(1);
      expect(layer.gzip.equals(reference.gzip), `${how}: the same full layer bytes`).to.equal(true);
      expect(layer.digest, how).to.equal(reference.digest);
      expect((await batched.fullLayer(2)).digest, `${how}: version 2`).to.equal(sha256(batched.document(2)));
      expect(gunzipSync(layer.gzip).equals(whole.document(1)), `${how}: the layer unzips to the document`).to.equal(true);
    }
  });

  it('when a group of several batches is read through the cursor as a build reads it, then its content is the one render.ts computes', async () => {
    const group = 'cursor';
    await seedGroup(db.pool, group, 12_000); // more than one batch of the store's listing
    const content = new StateContent(group, REGISTRY);
    const load = content.beginFull();
    let batches = 0;
    load.finish(await store.snapshot(group, 24, 'tombstone', undefined, (rows) => {
      batches++;
      load.add(rows);
    }));
    expect(batches, 'read in batches').to.be.greaterThan(1);
    expect(content.count).to.equal(12_000);
    const reference = contentDigest(buildState(group, REGISTRY, await store.listGroup(group, 24)));
    expect(content.contentDigest(), 'content digest as render.ts computes it').to.equal(reference);
    const full = await cold(group);
    expect((await content.fullLayer(2)).gzip.equals((await full.fullLayer(2)).gzip), 'the same full layer bytes').to.equal(true);
  });

  it('when entries that end a chunk come and go around the chunks a change touches, then the kept content, taken up or not, stays the bytes of a full read', async () => {
    // Synthetic entries, a third of them ending a chunk (a digest ending in "00"), so that
    // changes join chunks, split them, empty the first one and add before and after all.
    const t0 = new Date('2030-01-01T00:00:00Z');
    const universe = Array.from({ length: 90 }, (_, i) => ({
      repository: `library/${'abc'[i % 3]}`,
      digest: `sha256:${createHash('sha256').update(String(i)).digest('hex').slice(0, 62)}${i % 3 === 0 ? '00' : 'ab'}`,
    }));
    const row = (k: { repository: string; digest: string }, tag: string) => ({
      ...k, mediaType: 'application/vnd.oci.image.manifest.v1+json', kind: 'IMAGE' as const, size: 1, subject: null,
      deleted: false, tags: [tag], children: null, expiresAt: null,
    });
    const listed = new Map<string, ReturnType<typeof row>>();
    for (const k of universe) if (randomInt(2) === 0) listed.set(`${k.repository}@${k.digest}`, row(k, 'v0'));
    const all = () => [...listed.values()].sort((x, y) => (`${x.repository}\u0000${x.digest}` < `${y.repository}\u0000${y.digest}` ? -1 : 1));
    const warm = new StateContent('synthetic', REGISTRY);
    warm.loadFull({ xmin: '1', at: t0, changeId: 1, rows: all() });
    let taken: StateContent | undefined;
    let chunked = 0;
    for (let step = 0; step < 300; step++) {
      const touched: { repository: string; digest: string }[] = [];
      for (let n = 1 + randomInt(4); n > 0; n--) {
        const k = pick(universe);
        const id = `${k.repository}@${k.digest}`;
        if (listed.has(id) && randomInt(2) === 0) listed.delete(id);
        else listed.set(id, row(k, `v${step}`));
        touched.push(k);
      }
      if (randomInt(10) === 0) for (const id of [...listed.keys()].slice(0, 30)) { // the front of the list goes
        listed.delete(id);
        touched.push({ repository: id.split('@')[0]!, digest: id.split('@')[1]! });
      }
      const since = { xmin: '1', at: t0, changeId: step, keys: touched, rows: touched.flatMap((k) => listed.get(`${k.repository}@${k.digest}`) ?? []) };
      warm.apply(since);
      taken?.apply(since);
      const full = new StateContent('synthetic', REGISTRY);
      full.loadFull({ xmin: '1', at: t0, changeId: step, rows: all() });
      const reference = await full.fullLayer(3);
      chunked = Math.max(chunked, gzipMembersOf(reference.gzip));
      for (const [content, how] of [[warm, 'kept'], [taken, 'taken up']] as const) {
        if (!content) continue;
        expect(content.jsons, `step ${step}, ${how}`).to.deep.equal(full.jsons);
        expect(content.count, `step ${step}, ${how}`).to.equal(listed.size);
        expect(content.contentDigest(), `step ${step}, ${how}: content digest`).to.equal(full.contentDigest());
        const layer = await content.fullLayer(3);
        expect(layer.gzip.equals(reference.gzip), `step ${step}, ${how}: the same full layer bytes`).to.equal(true);
        expect(layer.digest, `step ${step}, ${how}`).to.equal(reference.digest);
      }
      if (randomInt(8) === 0) {
        taken = new StateContent('synthetic', REGISTRY);
        // Told how many entries the version lists (as a build is, from its state_versions row), or counting them.
        expect(taken.restore(3, reference.gzip, reference.digest, '1', t0, pick([listed.size, undefined])), `step ${step}: taken up`).to.deep.equal([]);
      }
    }
    expect(chunked, 'the layers had many chunks').to.be.greaterThan(10);
  });

  it('when a published layer taken up holds a chunk this worker would not have written so, then a change there is refused as unusable and nothing changes', async () => {
    const group = 'tampered';
    await seedGroup(db.pool, group, 3000); // 12 chunks
    const warm = await cold(group);
    const layer = await warm.fullLayer(1);
    const bad = swapInChunk(layer.gzip, 2);
    const taken = new StateContent(group, REGISTRY);
    expect(taken.restore(1, bad.gzip, bad.digest, warm.xmin, new Date(warm.readAt)), 'first and last entries of each chunk as written').to.deep.equal([]);
    // A change in another chunk is applied; one in the chunk laid out otherwise is refused.
    const keys = warm.keys;
    const chunkStarts = keys.map((k, i) => (i === 0 || keys[i - 1]!.endsWith('00') ? i : -1)).filter((i) => i >= 0);
    const entry = (i: number) => ({ repository: keys[i]!.split('\u0000')[0]!, digest: keys[i]!.split('\u0000')[1]! });
    const xmin = taken.xmin;
    expect(() => taken.apply({ xmin: '99', at: new Date(warm.readAt), changeId: 2, rows: [], keys: [entry(chunkStarts[2]! + 1)] })).to.throw(UnusableContentError);
    expect(taken.xmin, 'nothing changed').to.equal(xmin);
    expect(taken.count).to.equal(3000);
    expect(taken.apply({ xmin: '99', at: new Date(warm.readAt), changeId: 2, rows: [], keys: [entry(chunkStarts[5]! + 1)] })).to.equal(true);
    expect(taken.count).to.equal(2999);
  });

  it('when kept states outgrow STATE_CACHE_MB or age, then the least recently built is read in full again', () => {
    const t0 = new Date('2030-01-01T00:00:00Z');
    const content = (group: string, entries: number) => {
      const c = new StateContent(group, REGISTRY);
      c.loadFull({ xmin: '1', at: t0, changeId: 1, rows: Array.from({ length: entries }, (_, i) => ({
        repository: 'library/a', digest: `sha256:${String(i).padStart(64, '0')}`, mediaType: 'application/vnd.oci.image.manifest.v1+json',
        kind: 'IMAGE' as const, size: 1, subject: null, deleted: false, tags: [`t${i}`], children: null, expiresAt: null,
      })) });
      return c;
    };
    const a = content('a', 100);
    const cache = new StateCache({ maxBytes: a.bytes * 2.5, maxAgeMs: 60_000 });
    cache.put(a);
    cache.put(content('b', 100));
    cache.put(content('c', 100)); // over the budget: a, built least recently, goes
    const now = t0.getTime() + 1000;
    expect(cache.take('a', REGISTRY, now)).to.equal(undefined);
    expect(cache.take('b', REGISTRY, now)?.group).to.equal('b');
    expect(cache.take('c', REGISTRY, t0.getTime() + 61_000), 'too old: read in full').to.equal(undefined);
    cache.put(content('huge', 1000));
    expect(cache.take('huge', REGISTRY, now), 'alone beyond the budget: not kept').to.equal(undefined);
    expect(new StateCache({ maxBytes: 0, maxAgeMs: 60_000 }).take('a', REGISTRY, now)).to.equal(undefined);
    // A group built again and again (taken, then put back) holds its place in the budget once.
    const again = new StateCache({ maxBytes: a.bytes * 2.5, maxAgeMs: 60_000 });
    for (let i = 0; i < 5; i++) {
      again.put(content('x', 100));
      again.take('x', REGISTRY, now);
    }
    again.put(content('x', 100));
    again.put(content('x', 100)); // put again without a take: still once
    again.put(content('y', 100));
    expect(again.take('x', REGISTRY, now)?.group, 'x still kept').to.equal('x');
    expect(again.take('y', REGISTRY, now)?.group, 'y kept beside it').to.equal('y');
  });

  it('when a tombstone reaches the end of its retention, then the kept state drops it without a change', () => {
    const content = new StateContent('edge', REGISTRY);
    const row = (digest: string, expiresAt: Date | null) => ({
      repository: 'library/a', digest, mediaType: 'application/vnd.oci.image.manifest.v1+json', kind: 'IMAGE' as const,
      size: 1, subject: null, deleted: expiresAt !== null, tags: [], children: null, expiresAt,
    });
    const t0 = new Date('2030-01-01T00:00:00Z');
    content.loadFull({ xmin: '1', at: t0, changeId: 1, rows: [row('sha256:aa', new Date(t0.getTime() + 1000)), row('sha256:bb', null)] });
    expect(content.apply({ xmin: '1', at: new Date(t0.getTime() + 999), changeId: 1, rows: [], keys: [] }), 'not yet').to.equal(false);
    expect(content.apply({ xmin: '1', at: new Date(t0.getTime() + 1000), changeId: 1, rows: [], keys: [] }), 'expired').to.equal(true);
    expect(content.keys.map((k) => k.split('\u0000')[1])).to.deep.equal(['sha256:bb']);
  });
});
