import { expect } from 'chai';
import { previewState } from '../../core/state/preview.js';
import { createTestDatabase, type TestDatabase } from '../support/db.js';
import { image, index } from '../support/oci.js';
import { record } from '../support/worker.js';

describe('the state JSON is canonical', function () {
  this.timeout(30_000);
  let a: TestDatabase;
  let b: TestDatabase;
  before(async () => {
    [a, b] = await Promise.all([createTestDatabase(), createTestDatabase()]);
  });
  after(async () => {
    await Promise.all([a?.drop(), b?.drop()]);
  });

  it('when many artifacts are recorded in opposite orders in two databases, then both give the same bytes, sorted by repository then digest', async () => {
    const entries = Array.from({ length: 30 }, (_, i) => ({ repository: `library/app${i % 7}`, img: image(), tags: [`t${i}`, `a${i}`] }));
    const idx = index([{ architecture: 'amd64', os: 'linux' }, { architecture: 'arm64', os: 'linux' }]);
    for (const [db, order] of [[a, entries], [b, [...entries].reverse()]] as const) {
      for (const e of order) for (const t of db === a ? e.tags : [...e.tags].reverse()) await record(db.pool, 'edge-s', e.repository, e.img, t);
      for (const c of idx.children) await record(db.pool, 'edge-s', 'library/multi', c, null);
      await record(db.pool, 'edge-s', 'library/multi', { manifest: idx.manifest, config: idx.manifest, layers: [] }, '1');
    }
    // With statistics the planner reads such a small table in physical order, which is the
    // order of recording: only the renderer's own sort makes the two agree.
    for (const db of [a, b]) await db.pool.query('ANALYZE');
    const [ja, jb] = await Promise.all([a, b].map((db) => previewState(db.pool, 'edge-s', 'https://harbor.example.com', 24)));
    expect(ja).to.equal(jb);
    const keys = (JSON.parse(ja!).artifacts as { repository: string; digest: string; tag: string[] }[]);
    expect(keys).to.have.length(31);
    const sorted = [...keys].sort((x, y) => (x.repository < y.repository ? -1 : x.repository > y.repository ? 1 : x.digest < y.digest ? -1 : 1));
    expect(keys.map((k) => `${k.repository}@${k.digest}`)).to.deep.equal(sorted.map((k) => `${k.repository}@${k.digest}`));
    for (const k of keys) expect(k.tag).to.deep.equal([...k.tag].sort());
  });
});
