import { expect } from 'chai';
import { createPool } from '../../core/db/pool.js';
import { ArtifactStore } from '../../core/store/artifact-store.js';
import { seedGroup } from '../../bench/seed.js';
import { createTestDatabase, type TestDatabase } from '../support/db.js';
import { image } from '../support/oci.js';
import { record } from '../support/worker.js';

// The listing reads an artifact's tags from its row (artifacts.live_tags), which triggers on
// tags keep (migration 72). Whatever writes tags, the row must say what the tags table says.
describe('the tags kept on each artifact', () => {
  let db: TestDatabase;
  beforeEach(async () => {
    db = await createTestDatabase();
  });
  afterEach(async () => db?.drop());

  /** Each artifact's live_tags and its rows in tags, both sorted, by "group repository digest". */
  const both = async () => {
    const { rows } = await db.pool.query<{ k: string; live: string[]; tags: string[] }>(
      `SELECT a.group_name || ' ' || a.repository || ' ' || a.digest AS k,
              ARRAY(SELECT x FROM unnest(a.live_tags) x ORDER BY x) AS live,
              ARRAY(SELECT tag FROM tags t WHERE t.group_name = a.group_name AND t.repository = a.repository AND t.digest = a.digest ORDER BY tag) AS tags
         FROM artifacts a ORDER BY 1`);
    return rows;
  };
  const expectInStep = async (step: string) => {
    const rows = await both();
    for (const r of rows) expect(r.live, `${step}: ${r.k}`).to.deep.equal(r.tags);
    return rows;
  };

  it('when tags are added, moved, removed, manifests deleted and revived, and many written at once, then each artifact carries exactly its tags', async () => {
    const store = new ArtifactStore(db.pool);
    const ref = { group: 'edge', repository: 'library/app' };
    const [d, e] = [image(), image()];
    await record(db.pool, 'edge', 'library/app', d, '1.0');
    await record(db.pool, 'edge', 'library/app', d, 'stable');
    await record(db.pool, 'edge', 'library/app', e, 'next');
    await record(db.pool, 'other', 'library/app', d, '1.0');
    let rows = await expectInStep('added');
    expect(rows.find((r) => r.k === `edge library/app ${d.manifest.digest}`)!.live).to.deep.equal(['1.0', 'stable']);
    await record(db.pool, 'edge', 'library/app', e, 'stable'); // moved from d to e
    rows = await expectInStep('moved');
    expect(rows.find((r) => r.k === `edge library/app ${e.manifest.digest}`)!.live).to.deep.equal(['next', 'stable']);
    await store.untag(ref, 'next');
    await expectInStep('untagged');
    await store.deleteManifest(ref, d.manifest.digest);
    rows = await expectInStep('deleted');
    expect(rows.find((r) => r.k === `edge library/app ${d.manifest.digest}`)!.live).to.deep.equal([]);
    await record(db.pool, 'edge', 'library/app', d, '2.0'); // revived, with a new tag
    rows = await expectInStep('revived');
    expect(rows.find((r) => r.k === `edge library/app ${d.manifest.digest}`)!.live).to.deep.equal(['2.0']);
    await seedGroup(db.pool, 'bulk', 30, 3); // many tags in one statement
    rows = await expectInStep('bulk');
    expect(rows.filter((r) => r.k.startsWith('bulk ') && r.live.length === 1)).to.have.length(30);
    expect(rows.find((r) => r.k.startsWith('other '))!.live, 'another group untouched').to.deep.equal(['1.0']);
  });

  it('when two transactions tag the same manifest at once, then it carries both tags', async () => {
    const d = image();
    await record(db.pool, 'edge', 'library/app', d, '1.0');
    const slow = createPool(db.url, 1);
    try {
      await slow.query('BEGIN');
      await record(slow, 'edge', 'library/app', d, 'a');
      const other = record(db.pool, 'edge', 'library/app', d, 'b');
      await new Promise((r) => setTimeout(r, 200)); // it waits for the first one's lock on the artifact
      await slow.query('COMMIT');
      await other;
    } finally {
      await slow.end();
    }
    const rows = await expectInStep('concurrent');
    expect(rows[0]!.live).to.deep.equal(['1.0', 'a', 'b']);
  });
});
